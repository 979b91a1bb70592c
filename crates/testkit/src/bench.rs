//! What the benchmarks share: a closed-loop load driver with latency
//! percentiles, the machine's CPU time per call (every process: client,
//! servers, proxies, PostgreSQL; steadier from run to run than requests per
//! second when they all share the cores), and the CPU time the hypervisor
//! stole while it ran (on a shared virtual machine that share says how far to
//! trust the figures).

#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::future::Future;
use std::time::{Duration, Instant};

/// Total, busy and stolen CPU time so far, in clock ticks, from `/proc/stat`
/// (Linux).
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    total: u64,
    /// Neither idle, waiting for I/O nor stolen.
    busy: u64,
    steal: u64,
}

/// Clock ticks per second of `/proc/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

impl CpuTimes {
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> =
            stat.lines().next()?.split_whitespace().skip(1).filter_map(|field| field.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal …
        let total: u64 = fields.iter().take(8).sum();
        let steal = *fields.get(7)?;
        let busy = total - fields.get(3)? - fields.get(4)? - steal;
        Some(Self { total, busy, steal })
    }
}

/// The machine's busy CPU time between two readings per call, in microseconds.
pub fn cpu_micros_per_call(before: Option<CpuTimes>, after: Option<CpuTimes>, calls: usize) -> Option<f64> {
    let (before, after) = (before?, after?);
    (calls > 0).then(|| (after.busy - before.busy) as f64 / TICKS_PER_SECOND * 1e6 / calls as f64)
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
    /// The machine's busy CPU time per call (warm-up calls included).
    pub cpu_us_per_call: Option<f64>,
    pub steal: String,
}

impl Measured {
    /// A Markdown table row: label, requests, per second, p50, p99, CPU per
    /// call, errors, steal.
    pub fn row(&self, label: &str) -> String {
        let cpu = self.cpu_us_per_call.map_or_else(|| "n/a".to_owned(), |micros| format!("{micros:.0}"));
        format!(
            "| {label:<38} | {:>9} | {:>9.0} | {:>7.2} | {:>7.2} | {cpu:>11} | {:>6} | {:>5} |",
            self.requests, self.per_second, self.p50_ms, self.p99_ms, self.errors, self.steal
        )
    }

    pub fn header() -> String {
        format!(
            "| {:<38} | {:>9} | {:>9} | {:>7} | {:>7} | {:>11} | {:>6} | {:>5} |\n| {:-<38} | {:->9} | {:->9} | {:->7} | {:->7} | {:->11} | {:->6} | {:->5} |",
            "workload",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "CPU µs/call",
            "errors",
            "steal",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            ""
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
            let mut calls = 0usize;
            let mut turn = worker;
            loop {
                let started = Instant::now();
                if started >= stop_at {
                    break;
                }
                let succeeded = call(worker, turn).await;
                calls += 1;
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
            (latencies, errors, calls)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut calls = 0;
    for task in tasks {
        if let Ok((mut worker_latencies, worker_errors, worker_calls)) = task.await {
            latencies.append(&mut worker_latencies);
            errors += worker_errors;
            calls += worker_calls;
        }
    }
    let cpu_after = CpuTimes::now();
    let steal = steal_percent(cpu_before, cpu_after);
    latencies.sort_unstable();
    Measured {
        requests: latencies.len(),
        errors,
        per_second: latencies.len() as f64 / duration.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        cpu_us_per_call: cpu_micros_per_call(cpu_before, cpu_after, calls),
        steal,
    }
}
