//! What the benchmarks share: a closed-loop load driver with latency
//! percentiles, and the CPU time the hypervisor stole while it ran (on a
//! shared virtual machine that share says how far to trust the figures).

#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::future::Future;
use std::time::{Duration, Instant};

/// Total and stolen CPU time so far, from `/proc/stat` (Linux).
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    total: u64,
    steal: u64,
}

impl CpuTimes {
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> =
            stat.lines().next()?.split_whitespace().skip(1).filter_map(|field| field.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal …
        Some(Self { total: fields.iter().take(8).sum(), steal: *fields.get(7)? })
    }
}

/// The stolen share of CPU time between two readings, as `12%`.
pub fn steal_percent(before: Option<CpuTimes>, after: Option<CpuTimes>) -> String {
    match (before, after) {
        (Some(before), Some(after)) if after.total > before.total => {
            format!("{:.0}%", 100.0 * (after.steal - before.steal) as f64 / (after.total - before.total) as f64)
        }
        _ => "n/a".to_owned(),
    }
}

/// A number from the environment, or the default.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.replace('_', "").parse().ok()).unwrap_or(default)
}

/// The value at `fraction` (0..=1) of sorted microseconds, in milliseconds.
pub fn percentile(sorted_micros: &[u64], fraction: f64) -> f64 {
    if sorted_micros.is_empty() {
        return 0.0;
    }
    let index = ((sorted_micros.len() as f64 - 1.0) * fraction).round() as usize;
    sorted_micros[index] as f64 / 1000.0
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    pub requests: usize,
    pub errors: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub steal: String,
}

impl Measured {
    /// A Markdown table row: label, requests, per second, p50, p99, errors, steal.
    pub fn row(&self, label: &str) -> String {
        format!(
            "| {label:<38} | {:>9} | {:>9.0} | {:>7.2} | {:>7.2} | {:>6} | {:>5} |",
            self.requests, self.per_second, self.p50_ms, self.p99_ms, self.errors, self.steal
        )
    }

    pub fn header() -> String {
        format!(
            "| {:<38} | {:>9} | {:>9} | {:>7} | {:>7} | {:>6} | {:>5} |\n| {:-<38} | {:->9} | {:->9} | {:->7} | {:->7} | {:->6} | {:->5} |",
            "workload", "requests", "req/s", "p50 ms", "p99 ms", "errors", "steal", "", "", "", "", "", "", ""
        )
    }
}

/// Runs `concurrency` workers calling `call(worker, turn)` back to back for
/// a half-second warm-up and then `duration`; `call` answers whether the
/// request succeeded.
pub async fn drive<Call, Fut>(concurrency: usize, duration: Duration, call: Call) -> Measured
where
    Call: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let cpu_before = CpuTimes::now();
    let warm_up_until = Instant::now() + Duration::from_millis(500);
    let stop_at = warm_up_until + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut turn = worker;
            loop {
                let started = Instant::now();
                if started >= stop_at {
                    break;
                }
                let succeeded = call(worker, turn).await;
                turn += concurrency;
                if started < warm_up_until {
                    continue;
                }
                if succeeded {
                    latencies.push(started.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((mut worker_latencies, worker_errors)) = task.await {
            latencies.append(&mut worker_latencies);
            errors += worker_errors;
        }
    }
    let steal = steal_percent(cpu_before, CpuTimes::now());
    latencies.sort_unstable();
    Measured {
        requests: latencies.len(),
        errors,
        per_second: latencies.len() as f64 / duration.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        steal,
    }
}
