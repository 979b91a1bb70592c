//! What the benchmarks share: a closed-loop load driver with latency
//! percentiles, the machine's CPU time per call (every process: client,
//! servers, proxies, PostgreSQL; steadier from run to run than requests per
//! second when they all share the cores) and PostgreSQL's share of it, and
//! the CPU time the hypervisor stole while it ran (on a shared virtual
//! machine that share says how far to trust the figures), and the share it
//! stood idle (every part waiting on another, though calls were in flight).

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
        self.share(self.steal)
    }

    /// The share of a span of CPU time that was idle or waiting for I/O,
    /// as `12%`.
    fn idle_share(self) -> String {
        self.share(self.total - self.busy - self.steal)
    }

    fn share(self, part: u64) -> String {
        if self.total == 0 {
            return "n/a".to_owned();
        }
        format!("{:.0}%", 100.0 * part as f64 / self.total as f64)
    }
}

/// A process's or thread's command and the fields after it, from its
/// `/proc/…/stat` (Linux). The command may hold spaces, so the fields are
/// counted after its `)`: index 1 is the parent's pid, 11 and 12 the user
/// and system time in clock ticks.
fn stat_of(path: &std::path::Path) -> Option<(String, Vec<u64>)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let (_, command) = head.split_once('(')?;
    // Field 0 is the state (a letter): keep the places, not the value.
    let fields = rest.split_whitespace().map(|field| field.parse().unwrap_or(0)).collect();
    Some((command.to_owned(), fields))
}

fn ticks(fields: &[u64]) -> u64 {
    fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)
}

/// How many of the processes or threads listed in `directory` (`/proc`,
/// `/proc/self/task`) `matches` picks by command and stat fields, and their
/// CPU time in clock ticks. One that ends between two readings takes its
/// time with it.
fn ticks_in(directory: &str, matches: impl Fn(&str, &[u64]) -> bool) -> Option<(usize, u64)> {
    let mut found = (0, 0);
    for entry in std::fs::read_dir(directory).ok()?.flatten() {
        if let Some((command, fields)) = stat_of(&entry.path().join("stat"))
            && matches(&command, &fields)
        {
            found = (found.0 + 1, found.1 + ticks(&fields));
        }
    }
    Some(found)
}

/// CPU time (user and system, clock ticks) of every running process whose
/// command is `command`: PostgreSQL's server processes, say.
pub fn process_ticks(command: &str) -> Option<u64> {
    ticks_in("/proc", |name, _| name == command).map(|(_, ticks)| ticks)
}

/// CPU time (clock ticks) of the processes whose parent is `parent`: the
/// workers of an nginx master, say.
pub fn children_ticks(parent: u32) -> Option<u64> {
    ticks_in("/proc", |_, fields| fields.get(1) == Some(&u64::from(parent))).map(|(_, ticks)| ticks)
}

/// CPU time (clock ticks) of one process.
pub fn pid_ticks(pid: u32) -> Option<u64> {
    stat_of(&std::path::Path::new("/proc").join(pid.to_string()).join("stat")).map(|(_, fields)| ticks(&fields))
}

/// CPU time (clock ticks) of this process's threads whose name starts with
/// `prefix` (a server's serving threads, say); `None` when there is none.
pub fn thread_ticks(prefix: &str) -> Option<u64> {
    let (threads, ticks) = ticks_in("/proc/self/task", |name, _| name.starts_with(prefix))?;
    (threads > 0).then_some(ticks)
}

/// Clock ticks as microseconds per call.
pub fn micros_per_call(ticks: u64, calls: usize) -> Option<f64> {
    (calls > 0).then(|| ticks as f64 / TICKS_PER_SECOND * 1e6 / calls as f64)
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
    /// The machine's idle share while the runs went.
    pub idle: String,
}

impl Measured {
    /// A Markdown table row: label, requests, per second, p50, p99, CPU per
    /// call (the machine's, and PostgreSQL's), errors, steal, idle.
    pub fn row(&self, label: &str) -> String {
        let micros = |value: Option<f64>| value.map_or_else(|| "n/a".to_owned(), |micros| format!("{micros:.0}"));
        let (cpu, postgres) = (micros(self.cpu_us_per_call), micros(self.postgres_us_per_call));
        format!(
            "| {label:<50} | {:>9} | {:>9.0} | {:>7.2} | {:>7.2} | {cpu:>11} | {postgres:>14} | {:>6} | {:>5} | {:>4} |",
            self.requests, self.per_second, self.p50_ms, self.p99_ms, self.errors, self.steal, self.idle
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
const COLUMNS: [(&str, usize); 10] = [
    ("workload", 50),
    ("requests", 9),
    ("req/s", 9),
    ("p50 ms", 7),
    ("p99 ms", 7),
    ("CPU µs/call", 11),
    ("of which PG µs", 14),
    ("errors", 6),
    ("steal", 5),
    ("idle", 4),
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

    /// Every call so far, warm-up ones and failures included.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// The figures of every run so far.
    pub fn measured(mut self) -> Measured {
        self.latencies.sort_unstable();
        let calls = self.calls;
        let per_call = |ticks: u64| micros_per_call(ticks, calls);
        Measured {
            requests: self.latencies.len(),
            errors: self.errors,
            per_second: self.latencies.len() as f64 / self.measured_for.as_secs_f64().max(f64::MIN_POSITIVE),
            p50_ms: percentile(&self.latencies, 0.50),
            p99_ms: percentile(&self.latencies, 0.99),
            cpu_us_per_call: self.cpu.and_then(|cpu| per_call(cpu.busy)),
            postgres_us_per_call: self.postgres_ticks.and_then(per_call),
            steal: self.cpu.map_or_else(|| "n/a".to_owned(), CpuTimes::steal_share),
            idle: self.cpu.map_or_else(|| "n/a".to_owned(), CpuTimes::idle_share),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Spends about `busy` of CPU time on this thread.
    fn spin(busy: Duration) {
        let until = Instant::now() + busy;
        let mut counter = 0u64;
        while Instant::now() < until {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }

    #[test]
    fn a_named_thread_s_cpu_time_is_read_and_an_unknown_name_reads_none() {
        let (started, ready) = std::sync::mpsc::channel();
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-spin-0".to_owned())
            .spawn(move || {
                spin(Duration::from_millis(300));
                started.send(()).expect("test waits");
                let _ = finished.recv();
            })
            .expect("thread");
        ready.recv().expect("spun");
        let ticks = thread_ticks("bench-spin-").expect("the thread is there");
        finish.send(()).expect("thread waits");
        thread.join().expect("joined");
        // 300 ms is 30 ticks; scheduling may cost some of them.
        assert!(ticks >= 10, "{ticks} ticks for 300 ms of spinning");
        assert_eq!(thread_ticks("no-such-thread-"), None);
        // The kernel rounds user and system time down to ticks apart, for the
        // thread and for the process, so the process may show up to two
        // ticks fewer than one of its threads.
        let process = pid_ticks(std::process::id()).expect("this process");
        assert!(process + 2 >= ticks, "process {process} ticks, thread {ticks} ticks");
    }

    #[test]
    fn a_child_process_s_cpu_time_counts_for_its_parent() {
        let before = children_ticks(std::process::id()).expect("/proc");
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; sleep 5")
            .spawn()
            .expect("sh");
        // Wait until the loop is done and the child sleeps.
        let started = Instant::now();
        let mut ticks = 0;
        while started.elapsed() < Duration::from_secs(4) {
            std::thread::sleep(Duration::from_millis(100));
            ticks = children_ticks(std::process::id()).expect("/proc").saturating_sub(before);
            if pid_ticks(child.id()) == Some(ticks) && ticks > 0 {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(ticks > 0, "the child's loop used no CPU time");
    }
}
