//! What the benchmarks share: a closed-loop load driver with latency
//! percentiles, the machine's CPU time per call (every process: client,
//! servers, proxies, PostgreSQL; steadier from run to run than requests per
//! second when they all share the cores) and PostgreSQL's share of it, and
//! the CPU time the hypervisor stole while it ran (on a shared virtual
//! machine that share says how far to trust the figures).

#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::future::Future;
use std::time::{Duration, Instant};

/// Total, busy and stolen CPU time so far, in clock ticks, from `/proc/stat`
/// (Linux).
#[derive(Debug, Clone, Copy, Default)]
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

    /// What was spent between `before` and this reading.
    fn since(self, before: Self) -> Self {
        Self {
            total: self.total.saturating_sub(before.total),
            busy: self.busy.saturating_sub(before.busy),
            steal: self.steal.saturating_sub(before.steal),
        }
    }

    fn plus(self, other: Self) -> Self {
        Self { total: self.total + other.total, busy: self.busy + other.busy, steal: self.steal + other.steal }
    }

    /// The stolen share of a span of CPU time, as `12%`.
    fn steal_share(self) -> String {
        if self.total == 0 {
            return "n/a".to_owned();
        }
        format!("{:.0}%", 100.0 * self.steal as f64 / self.total as f64)
    }
}

/// CPU time (user and system, clock ticks) of every running process whose
/// command is `command`, from `/proc/<pid>/stat` (Linux): PostgreSQL's
/// server processes, say. A process that ends between two readings takes its
/// time with it.
pub fn process_ticks(command: &str) -> Option<u64> {
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid … utime stime: fields 14 and 15, counted
        // from 1; the command may hold spaces, so count after its `)`.
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        if head.split_once('(').is_none_or(|(_, comm)| comm != command) {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |index: usize| fields.get(index).and_then(|value| value.parse::<u64>().ok()).unwrap_or(0);
        ticks += field(11) + field(12);
    }
    Some(ticks)
}

/// The stolen share of CPU time between two readings, as `12%`.
pub fn steal_percent(before: Option<CpuTimes>, after: Option<CpuTimes>) -> String {
    before.zip(after).map_or_else(|| "n/a".to_owned(), |(before, after)| after.since(before).steal_share())
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
    /// Of that, PostgreSQL's server processes'.
    pub postgres_us_per_call: Option<f64>,
    pub steal: String,
}

impl Measured {
    /// A Markdown table row: label, requests, per second, p50, p99, CPU per
    /// call (the machine's, and PostgreSQL's), errors, steal.
    pub fn row(&self, label: &str) -> String {
        let micros = |value: Option<f64>| value.map_or_else(|| "n/a".to_owned(), |micros| format!("{micros:.0}"));
        let (cpu, postgres) = (micros(self.cpu_us_per_call), micros(self.postgres_us_per_call));
        format!(
            "| {label:<38} | {:>9} | {:>9.0} | {:>7.2} | {:>7.2} | {cpu:>11} | {postgres:>14} | {:>6} | {:>5} |",
            self.requests, self.per_second, self.p50_ms, self.p99_ms, self.errors, self.steal
        )
    }

    pub fn header() -> String {
        let cell = |(index, (name, width)): (usize, &(&str, usize))| {
            if index == 0 { format!(" {name:<width$} ") } else { format!(" {name:>width$} ") }
        };
        let names: Vec<String> = COLUMNS.iter().enumerate().map(cell).collect();
        let rules: Vec<String> = COLUMNS.iter().map(|(_, width)| format!(" {} ", "-".repeat(*width))).collect();
        format!("|{}|\n|{}|", names.join("|"), rules.join("|"))
    }
}

/// The columns of [`Measured::row`], with their widths.
const COLUMNS: [(&str, usize); 9] = [
    ("workload", 38),
    ("requests", 9),
    ("req/s", 9),
    ("p50 ms", 7),
    ("p99 ms", 7),
    ("CPU µs/call", 11),
    ("of which PG µs", 14),
    ("errors", 6),
    ("steal", 5),
];

/// What load runs of one workload gathered; several runs (of one path,
/// interleaved with the runs of other paths, so that a machine whose speed
/// drifts favours none of them) merge into one [`Measured`].
#[derive(Debug)]
pub struct Samples {
    /// Successful calls' latencies, in microseconds.
    latencies: Vec<u64>,
    errors: u64,
    /// Every call, warm-up ones included (they used the CPU too).
    calls: usize,
    measured_for: Duration,
    /// The machine's CPU time while the runs went; `None` once a reading
    /// failed.
    cpu: Option<CpuTimes>,
    /// PostgreSQL's server processes' clock ticks while the runs went.
    postgres_ticks: Option<u64>,
}

impl Default for Samples {
    fn default() -> Self {
        Self {
            latencies: Vec::new(),
            errors: 0,
            calls: 0,
            measured_for: Duration::ZERO,
            cpu: Some(CpuTimes::default()),
            postgres_ticks: Some(0),
        }
    }
}

impl Samples {
    /// Successful calls so far.
    pub fn successes(&self) -> usize {
        self.latencies.len()
    }

    /// The figures of every run so far.
    pub fn measured(mut self) -> Measured {
        self.latencies.sort_unstable();
        let calls = self.calls;
        let per_call = |ticks: u64| (calls > 0).then(|| ticks as f64 / TICKS_PER_SECOND * 1e6 / calls as f64);
        Measured {
            requests: self.latencies.len(),
            errors: self.errors,
            per_second: self.latencies.len() as f64 / self.measured_for.as_secs_f64().max(f64::MIN_POSITIVE),
            p50_ms: percentile(&self.latencies, 0.50),
            p99_ms: percentile(&self.latencies, 0.99),
            cpu_us_per_call: self.cpu.and_then(|cpu| per_call(cpu.busy)),
            postgres_us_per_call: self.postgres_ticks.and_then(per_call),
            steal: self.cpu.map_or_else(|| "n/a".to_owned(), CpuTimes::steal_share),
        }
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
    let mut samples = Samples::default();
    drive_into(&mut samples, concurrency, duration, call).await;
    samples.measured()
}

/// [`drive`], adding what the run gathers to `samples`.
pub async fn drive_into<Call, Fut>(samples: &mut Samples, concurrency: usize, duration: Duration, call: Call)
where
    Call: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let cpu_before = CpuTimes::now();
    let postgres_before = process_ticks("postgres");
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
    for task in tasks {
        if let Ok((mut worker_latencies, worker_errors, worker_calls)) = task.await {
            samples.latencies.append(&mut worker_latencies);
            samples.errors += worker_errors;
            samples.calls += worker_calls;
        }
    }
    let (cpu_after, postgres_after) = (CpuTimes::now(), process_ticks("postgres"));
    samples.cpu =
        samples.cpu.zip(cpu_before.zip(cpu_after)).map(|(sum, (before, after))| sum.plus(after.since(before)));
    samples.postgres_ticks = samples
        .postgres_ticks
        .zip(postgres_before.zip(postgres_after))
        .map(|(sum, (before, after))| sum + after.saturating_sub(before));
    samples.measured_for += duration;
}
