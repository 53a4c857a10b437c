//! Latency histograms (log-linear, ~3% precision, lock-free recording) and process CPU/RSS from `/proc`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

const SUB: u32 = 32; // sub-buckets per power of two
const LINEAR: u64 = 64; // values below this get one bucket each
const BUCKETS: usize = 64 + 40 * SUB as usize;

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= 6
    let sub = (v >> (e - 5)) & (SUB as u64 - 1);
    (LINEAR as usize + (e as usize - 6) * SUB as usize + sub as usize).min(BUCKETS - 1)
}

/// The midpoint of bucket `i`.
fn value(i: usize) -> u64 {
    if (i as u64) < LINEAR {
        return i as u64;
    }
    let k = i - LINEAR as usize;
    let e = (k / SUB as usize) as u32 + 6;
    let sub = (k % SUB as usize) as u64;
    let lo = (1u64 << e) + (sub << (e - 5));
    lo + (1u64 << (e - 5)) / 2
}

/// Shards of the shared counters: the generator's worker threads each record into their own, so a
/// delivery's counting doesn't bounce a cache line between the cores it shares with the server.
const SHARDS: usize = 4;

fn shard() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
    SHARD.with(|s| *s)
}

/// Shared between tasks; recording is one relaxed atomic add, into the recording thread's shard.
pub struct AtomicHist {
    shards: Vec<Box<[AtomicU64]>>,
}

impl Default for AtomicHist {
    fn default() -> Self {
        AtomicHist { shards: (0..SHARDS).map(|_| (0..BUCKETS).map(|_| AtomicU64::new(0)).collect()).collect() }
    }
}

impl AtomicHist {
    pub fn record(&self, micros: u64) {
        self.shards[shard()][index(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the counts out, leaving zeros.
    pub fn take(&self) -> Hist {
        let mut counts = vec![0; BUCKETS];
        for shard in &self.shards {
            for (c, b) in counts.iter_mut().zip(shard.iter()) {
                *c += b.swap(0, Ordering::Relaxed);
            }
        }
        Hist { counts }
    }
}

/// A counter added to from many tasks, sharded like [`AtomicHist`].
#[derive(Default)]
pub struct Counter {
    shards: [Padded; SHARDS],
}

#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.shards[shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.shards.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }

    /// The count so far, leaving zero.
    pub fn take(&self) -> u64 {
        self.shards.iter().map(|s| s.0.swap(0, Ordering::Relaxed)).sum()
    }
}

#[derive(Clone)]
pub struct Hist {
    counts: Vec<u64>,
}

impl Default for Hist {
    fn default() -> Self {
        Hist { counts: vec![0; BUCKETS] }
    }
}

impl Hist {
    #[cfg(test)]
    pub fn record(&mut self, micros: u64) {
        self.counts[index(micros)] += 1;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// The value (µs) at quantile `q` in 0..=1.
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value(i);
            }
        }
        value(BUCKETS - 1)
    }

    /// `{count, p50_ms, p99_ms, p999_ms, max_ms}`.
    pub fn summary(&self) -> Value {
        let ms = |us: u64| (us as f64 / 10.0).round() / 100.0;
        let max = self.counts.iter().rposition(|&c| c > 0).map(value).unwrap_or(0);
        json!({
            "count": self.count(),
            "p50_ms": ms(self.quantile(0.50)),
            "p99_ms": ms(self.quantile(0.99)),
            "p999_ms": ms(self.quantile(0.999)),
            "max_ms": ms(max),
        })
    }

    /// Non-empty buckets as `[[index, count], ...]`, so that several generator processes can be merged.
    pub fn to_json(&self) -> Value {
        Value::Array(self.counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, c)| json!([i, c])).collect())
    }

    pub fn from_json(v: &Value) -> Hist {
        let mut h = Hist::default();
        for pair in v.as_array().into_iter().flatten() {
            if let (Some(i), Some(c)) = (pair[0].as_u64(), pair[1].as_u64())
                && (i as usize) < BUCKETS
            {
                h.counts[i as usize] += c;
            }
        }
        h
    }
}

/// CPU seconds (user + system) and resident memory of a set of processes and all their descendants.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    pub cpu_secs: f64,
    pub rss_bytes: u64,
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// `(ppid, utime + stime ticks)` from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state(0) ppid(1) ... utime(11) stime(12)
    Some((f.get(1)?.parse().ok()?, f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?))
}

fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// The given processes and their descendants (e.g. the workers of a Node cluster).
pub fn with_descendants(roots: &[u32]) -> Vec<u32> {
    let mut all: Vec<u32> = roots.to_vec();
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                && let Some((ppid, _)) = stat(pid)
            {
                parents.push((pid, ppid));
            }
        }
    }
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        for &(c, pp) in &parents {
            if pp == p && !all.contains(&c) {
                all.push(c);
            }
        }
        i += 1;
    }
    all
}

pub fn sample(pids: &[u32]) -> ProcSample {
    let mut s = ProcSample::default();
    for &p in pids {
        if let Some((_, ticks)) = stat(p) {
            s.cpu_secs += ticks as f64 / clock_ticks();
        }
        s.rss_bytes += rss(p);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_counts_add_up_across_threads() {
        let (hist, counter) = (AtomicHist::default(), Counter::default());
        std::thread::scope(|s| {
            for t in 0..6u64 {
                let (hist, counter) = (&hist, &counter);
                s.spawn(move || {
                    for i in 0..1000 {
                        hist.record(100 * (t + 1) + i % 3);
                        counter.add(2);
                    }
                });
            }
        });
        assert_eq!(counter.get(), 12_000);
        assert_eq!(counter.take(), 12_000);
        assert_eq!(counter.get(), 0);
        let h = hist.take();
        assert_eq!(h.count(), 6000);
        assert!((95..=105).contains(&h.quantile(0.1)), "{}", h.quantile(0.1));
        assert!((580..=620).contains(&h.quantile(0.99)), "{}", h.quantile(0.99));
        assert_eq!(hist.take().count(), 0);
    }

    #[test]
    fn buckets_are_monotonic_and_close() {
        let mut last = 0;
        for v in [0u64, 1, 63, 64, 65, 100, 1000, 12_345, 1_000_000, 50_000_000] {
            let i = index(v);
            assert!(i >= last);
            last = i;
            let back = value(i);
            assert!((back as f64 - v as f64).abs() <= v as f64 * 0.04 + 1.0, "{v} -> {back}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Hist::default();
        for v in 1..=1000 {
            h.record(v * 10);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 5000.0).abs() < 200.0, "{p50}");
        let merged = Hist::from_json(&h.to_json());
        assert_eq!(merged.count(), 1000);
    }
}
