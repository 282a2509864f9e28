//! What a run will cost before it starts, from a per-point model calibrated by running a few
//! short points of the spec with this code on this machine; and the refusal of a run whose
//! memory the machine does not have.
//!
//! A point's cost is linear in its length T once its network is drawn: time, the heap it holds
//! while measured and the heap its rows keep afterwards are each a + b·T. For every (cell, hidden)
//! of the spec one point (of the cell's first init; inits change the numbers, not the work) is run
//! on one thread at two short lengths, which fixes a and b;
//! states wider than [`CALIBRATION_STATE`] are run at that width and scaled, time by the cube of
//! the width (the probes multiply n × n matrices) and memory by its square. Heap bytes are counted
//! by the binary's allocator ([`crate::heap`]).
//!
//! A training point (the trainability experiment) is calibrated the same way, on its task at the
//! lags closest to those lengths and for [`CALIBRATION_UPDATES`] updates; its time and kept rows
//! scale with the updates of the spec.
//!
//! Time: the makespan of the runner's own schedule (costliest first, each to the first free
//! thread). Memory: the process as it is now, plus the larger of its two phases: the largest
//! points in flight (one per thread) beside the rows all points keep, and those rows times
//! [`ASSEMBLY_FACTOR`] while the outputs are written from them.

use super::grid::{Point, expand};
use super::spec::Spec;
use crate::cell::CellKind;
use crate::error::{Error, Result};
use crate::heap;
use crate::train::tasks::Task;
use std::collections::HashMap;
use std::fmt;

/// States wider than this (n = H, or 2H for the LSTM) are run at this width and scaled.
pub const CALIBRATION_STATE: usize = 256;
/// The two lengths a point is run at.
const CALIBRATION_STEPS: [usize; 2] = [16, 48];
/// The Adam updates a training point is calibrated with.
const CALIBRATION_UPDATES: usize = 20;
/// Resident memory of the output phase over the heap the kept rows hold: the rows, the vectors
/// they are appended into (which grow by doubling), their CSV text, with the allocator's slack.
/// Chosen from `VmHWM` of row-heavy specs of every kind (BENCHMARKS.md, "Run estimates").
pub const ASSEMBLY_FACTOR: f64 = 3.0;
/// Resident memory a worker thread adds (its stack and allocator arena), and what drawing the
/// charts takes (the bitmap, the font, the SVG text): measured with `VmHWM` on tiny runs.
const THREAD_BYTES: f64 = 2.0 * 1048576.0;
const CHARTS_BYTES: f64 = 4.0 * 1048576.0;

/// What one calibration run of a point cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub seconds: f64,
    /// Peak heap bytes above the start while the point was measured.
    pub in_flight: f64,
    /// Heap bytes its measurement holds afterwards.
    pub kept: f64,
}

/// Runs the one point of a calibration spec on one thread and samples its cost.
pub type Sampler<'a> = dyn FnMut(&Spec) -> Result<Sample> + 'a;

/// The estimate of one run.
#[derive(Clone, Debug)]
pub struct Estimate {
    pub threads: usize,
    /// Wall-clock seconds of the sweep.
    pub seconds: f64,
    /// Seconds the longest point takes alone.
    pub longest_point: f64,
    pub memory: Memory,
    /// Seconds spent calibrating.
    pub calibration_seconds: f64,
}

/// The memory part of an estimate, bytes.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// The process before the run (resident), with its worker threads.
    pub baseline: f64,
    /// The largest points in flight together, one per thread (heap).
    pub in_flight: f64,
    /// The rows every point keeps until the outputs are written (heap).
    pub kept: f64,
    /// Memory the machine has available now (Linux `MemAvailable`).
    pub available: Option<f64>,
}

impl Memory {
    /// The larger of the two phases: the last points in flight beside the rows of all others,
    /// and the rows with their copies and the charts while the outputs are written.
    pub fn peak(&self) -> f64 {
        self.baseline + (self.in_flight + self.kept).max(self.kept * ASSEMBLY_FACTOR + CHARTS_BYTES)
    }

    /// Whether the machine has too little memory for it.
    pub fn exceeds_available(&self) -> bool {
        self.available.is_some_and(|a| self.peak() > a)
    }
}

/// Bytes as MiB or GiB, for messages.
pub fn human_bytes(b: f64) -> String {
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", b / (1u64 << 20) as f64)
    }
}

pub fn human_seconds(s: f64) -> String {
    match s {
        s if s < 60.0 => format!("{s:.1} s"),
        s if s < 3600.0 => format!("{:.1} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "time: about {} on {} thread(s) (the longest point {}; calibrated on this machine in {:.1} s)",
            human_seconds(self.seconds),
            self.threads,
            human_seconds(self.longest_point),
            self.calibration_seconds
        )?;
        write!(f, "{}", self.memory)
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let available = self.available.map_or(String::new(), |a| format!("; {} available now", human_bytes(a)));
        write!(
            f,
            "peak memory: about {} (process {}, points in flight {}, rows kept for the outputs {} and {} while \
             they are written){available}",
            human_bytes(self.peak()),
            human_bytes(self.baseline),
            human_bytes(self.in_flight),
            human_bytes(self.kept),
            human_bytes(self.kept * ASSEMBLY_FACTOR)
        )
    }
}

/// A value of `/proc` in bytes: `field` (in kB) of `file`, on Linux.
fn proc_kib(file: &str, field: &str) -> Option<f64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024.0)
}

/// Memory available to a new process now (`MemAvailable`), bytes; `None` off Linux.
pub fn available_memory() -> Option<f64> {
    proc_kib("/proc/meminfo", "MemAvailable:")
}

/// This process's resident memory now, bytes.
pub fn resident_memory() -> Option<f64> {
    proc_kib("/proc/self/status", "VmRSS:")
}

/// This process's peak resident memory so far, bytes.
pub fn peak_resident_memory() -> Option<f64> {
    proc_kib("/proc/self/status", "VmHWM:")
}

/// A cost a + b·T fitted to two samples at the calibration lengths.
#[derive(Clone, Copy, Debug)]
struct Line {
    a: f64,
    b: f64,
}

impl Line {
    /// The line through the two samples (lengths `t`, costs `y`). With `noisy` (timings), a pair
    /// that does not rise is read as cost proportional to T through the longer sample; heap
    /// counts are exact.
    fn through(t: [usize; 2], y: [f64; 2], noisy: bool) -> Line {
        let (t1, t2) = (t[0] as f64, t[1] as f64);
        let b = (y[1] - y[0]) / (t2 - t1);
        match b {
            b if b > 0.0 => Line { a: (y[1] - b * t2).max(0.0), b },
            _ if noisy => Line { a: 0.0, b: y[1] / t2 },
            _ => Line { a: y[1], b: 0.0 },
        }
    }

    fn at(self, t: usize) -> f64 {
        self.a + self.b * t as f64
    }
}

/// The calibrated costs of every point of a spec.
struct Calibration {
    /// (cell, calibration width) → fitted (seconds, in flight, kept).
    fits: HashMap<(CellKind, usize), [Line; 3]>,
    /// What a point does over what its calibration did: the updates of a training point over
    /// [`CALIBRATION_UPDATES`], else 1.
    repeats: f64,
}

impl Calibration {
    /// Runs one point per (cell, width) of `points` (the first init of the cell) at the two
    /// calibration lengths; with `timed`, each the fastest of a few runs.
    fn run(spec: &Spec, points: &[Point], timed: bool, sample: &mut Sampler<'_>) -> Result<Calibration> {
        let mut fits = HashMap::new();
        for p in points {
            let key = Self::key(p);
            if fits.contains_key(&key) {
                continue;
            }
            let mut samples = [Sample::default(); 2];
            let mut lengths = CALIBRATION_STEPS;
            for ((s, t), &steps) in samples.iter_mut().zip(&mut lengths).zip(&CALIBRATION_STEPS) {
                let cal = calibration_spec(spec, p, key.1, steps);
                *t = cal.seq_len[0];
                *s = if timed { best_of(|| sample(&cal))? } else { sample(&cal)? };
            }
            let line = |f: fn(&Sample) -> f64, floor| Line::through(lengths, [f(&samples[0]), f(&samples[1])], floor);
            fits.insert(key, [line(|s| s.seconds, true), line(|s| s.in_flight, false), line(|s| s.kept, false)]);
        }
        let repeats = spec.train.as_ref().map_or(1.0, |t| t.steps as f64 / CALIBRATION_UPDATES as f64);
        Ok(Calibration { fits, repeats })
    }

    fn key(p: &Point) -> (CellKind, usize) {
        let per_cell = if p.cell.has_cell_state() { 2 } else { 1 };
        (p.cell, p.hidden.min(CALIBRATION_STATE / per_cell).max(1))
    }

    /// (seconds, in flight, kept) of point `p`.
    fn cost(&self, p: &Point) -> (f64, f64, f64) {
        let key = Self::key(p);
        let [time, flight, kept] = self.fits[&key];
        let ratio = p.hidden as f64 / key.1 as f64;
        let r = self.repeats;
        (time.at(p.seq_len) * ratio.powi(3) * r, flight.at(p.seq_len) * ratio.powi(2), kept.at(p.seq_len) * r)
    }

    fn memory(&self, points: &[Point], threads: usize) -> Memory {
        let mut flight: Vec<f64> = points.iter().map(|p| self.cost(p).1).collect();
        flight.sort_by(|a, b| b.total_cmp(a));
        Memory {
            baseline: resident_memory().unwrap_or(0.0) + threads as f64 * THREAD_BYTES,
            in_flight: flight.iter().take(threads).sum(),
            kept: points.iter().map(|p| self.cost(p).2).sum::<f64>(),
            available: available_memory(),
        }
    }
}

/// What every run does before it starts: a quick calibration (one sample per (cell, width) at
/// each calibration length), refusing the run when its peak memory exceeds what the machine has
/// available (naming both numbers and the keys that size it), and returning its estimated
/// seconds on `threads`. Without the counting allocator (the library outside the binary) memory
/// is not measured and not checked.
pub fn preflight(spec: &Spec, threads: usize, sample: &mut Sampler<'_>) -> Result<f64> {
    let points = expand(spec);
    let calibration = Calibration::run(spec, &points, false, sample)?;
    let memory = calibration.memory(&points, threads);
    if heap::installed() && memory.exceeds_available() {
        return Err(memory_error(spec, &memory, threads));
    }
    Ok(makespan(&points.iter().map(|p| calibration.cost(p).0).collect::<Vec<_>>(), threads))
}

/// The one-line refusal of a run that does not fit in memory.
pub fn memory_error(spec: &Spec, m: &Memory, threads: usize) -> Error {
    let fix = if m.kept * ASSEMBLY_FACTOR >= m.in_flight + m.kept {
        format!(
            "the rows kept for the outputs ({}) grow with `seq_len`, `batch`, `seeds` and the other axes; shrink one, \
             or split the grid into several specs",
            human_bytes(m.kept)
        )
    } else {
        format!(
            "the {threads} point(s) in flight ({}) grow with `hidden`, `seq_len` and `batch`; shrink one, or run \
             fewer at once with --threads",
            human_bytes(m.in_flight)
        )
    };
    Error::Usage(format!(
        "{}: a run needs about {} of memory, but {} is available; {fix}",
        spec.name,
        human_bytes(m.peak()),
        human_bytes(m.available.unwrap_or(0.0))
    ))
}

/// The full estimate: time and memory calibrated per (cell, init, width) of the spec.
pub fn estimate(spec: &Spec, threads: usize, sample: &mut Sampler<'_>) -> Result<Estimate> {
    let started = std::time::Instant::now();
    let points = expand(spec);
    let calibration = Calibration::run(spec, &points, true, sample)?;
    let seconds: Vec<f64> = points.iter().map(|p| calibration.cost(p).0).collect();
    Ok(Estimate {
        threads,
        seconds: makespan(&seconds, threads),
        longest_point: seconds.iter().copied().fold(0.0, f64::max),
        memory: calibration.memory(&points, threads),
        calibration_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The fastest of a few samples (at least 2, until 20 ms are spent): the least disturbed one.
fn best_of(mut f: impl FnMut() -> Result<Sample>) -> Result<Sample> {
    let mut best = f()?;
    let (mut spent, mut runs) = (best.seconds, 1);
    while (runs < 2 || spent < 0.02) && runs < 20 {
        let s = f()?;
        spent += s.seconds;
        runs += 1;
        if s.seconds < best.seconds {
            best = s;
        }
    }
    Ok(best)
}

/// The spec of one point like `p` at width `hidden` and length `steps`, with no Lyapunov burn-in
/// (its steps cost what measured steps cost) and no more exponents than the state has. A
/// training point trains [`CALIBRATION_UPDATES`] updates (probed at the first and the last) on
/// its task at the lag whose length is closest to `steps`; its `seq_len` is that length.
fn calibration_spec(spec: &Spec, p: &Point, hidden: usize, steps: usize) -> Spec {
    let mut cal = spec.clone();
    cal.cells = vec![p.cell];
    cal.inits = vec![spec.inits[p.init].clone()];
    cal.hidden = vec![hidden];
    cal.seq_len = vec![steps];
    cal.seeds = vec![p.seed];
    if let (Some(t), Some(run)) = (&mut cal.train, p.train) {
        let task = Task::of_length(run.task.kind, steps);
        t.tasks = vec![task.kind];
        t.lags = vec![task.lag];
        t.clips = vec![run.clip];
        t.steps = CALIBRATION_UPDATES;
        t.probe_every = CALIBRATION_UPDATES;
        t.log_every = t.log_every.min(CALIBRATION_UPDATES);
        cal.seq_len = vec![task.steps()];
    }
    cal.probes.lyapunov_burn_in = 0;
    let n = if p.cell.has_cell_state() { 2 * hidden } else { hidden };
    cal.probes.lyapunov = cal.probes.lyapunov.min(n);
    cal
}

/// The wall time of the runner's schedule: costliest first, each to the thread free first.
fn makespan(seconds: &[f64], threads: usize) -> f64 {
    let mut order = seconds.to_vec();
    order.sort_by(|a, b| b.total_cmp(a));
    let mut free = vec![0.0f64; threads.max(1)];
    for s in order {
        let first = free.iter_mut().min_by(|a, b| a.total_cmp(b)).expect("at least one thread");
        *first += s;
    }
    free.into_iter().fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_makespan_follows_the_runners_schedule() {
        // Costliest first to the first free thread: 3+2+2 and 3+2 (the best split, 6, is not
        // what the runner does).
        assert_eq!(makespan(&[3.0, 3.0, 2.0, 2.0, 2.0], 2), 7.0);
        assert_eq!(makespan(&[5.0, 1.0, 1.0], 2), 5.0);
        assert_eq!(makespan(&[1.0, 2.0], 1), 3.0);
        assert_eq!(makespan(&[], 4), 0.0);
    }

    #[test]
    fn a_line_through_two_samples_recovers_a_linear_cost() {
        let (t1, t2) = (CALIBRATION_STEPS[0] as f64, CALIBRATION_STEPS[1] as f64);
        let l = Line::through(CALIBRATION_STEPS, [0.5 + 0.01 * t1, 0.5 + 0.01 * t2], true);
        assert!((l.a - 0.5).abs() < 1e-12 && (l.b - 0.01).abs() < 1e-12, "{l:?}");
        assert!((l.at(1000) - 10.5).abs() < 1e-9);
        // A noisy, falling pair of timings: proportional to T through the longer one.
        let l = Line::through(CALIBRATION_STEPS, [2.0, 1.0], true);
        assert_eq!((l.a, l.b), (0.0, 1.0 / t2));
        // Heap counts are exact: a constant stays constant.
        let l = Line::through(CALIBRATION_STEPS, [4096.0, 4096.0], false);
        assert_eq!((l.a, l.b), (4096.0, 0.0));
    }

    /// A sampler whose costs follow a known law: seconds = 1e-3·T·(H/8)³ + 0.01 for the LSTM and
    /// half that for the RNN, in flight 1000·H² + 10·T bytes, kept 100·T bytes.
    fn law(cal: &Spec) -> Result<Sample> {
        let (t, h) = (cal.seq_len[0] as f64, cal.hidden[0] as f64);
        let cell = if cal.cells[0] == CellKind::Lstm { 1.0 } else { 0.5 };
        Ok(Sample {
            seconds: cell * (1e-3 * t * (h / 8.0).powi(3) + 0.01),
            in_flight: 1000.0 * h * h + 10.0 * t,
            kept: 100.0 * t,
        })
    }

    #[test]
    fn the_estimate_extrapolates_a_known_cost_law() {
        let spec = Spec::parse(
            r#"
kind = "vanishing"
name = "law"
seed = 1
cells = ["rnn", "lstm"]
inits = ["a"]
hidden = [8, 512]
seq_len = [100, 1000]
seeds = [0, 1]
input_size = 2
[init.a]
"#,
        )
        .unwrap();
        let mut calls = 0;
        let e = estimate(&spec, 3, &mut |cal| {
            calls += 1;
            law(cal)
        })
        .unwrap();
        // Every point's seconds: the law, exactly where H is calibrated as is; at H = 512 the
        // state is wider than CALIBRATION_STATE, so it is run narrower and scaled by the cube.
        let points = expand(&spec);
        let expected: Vec<f64> = points
            .iter()
            .map(|p| {
                let cal = calibration_spec(
                    &spec,
                    p,
                    p.hidden.min(CALIBRATION_STATE / if p.cell == CellKind::Lstm { 2 } else { 1 }),
                    p.seq_len,
                );
                let narrow = law(&cal).unwrap().seconds;
                narrow * (p.hidden as f64 / cal.hidden[0] as f64).powi(3)
            })
            .collect();
        assert!(
            (e.seconds - makespan(&expected, 3)).abs() < 1e-9 * e.seconds,
            "{} vs {}",
            e.seconds,
            makespan(&expected, 3)
        );
        let longest = expected.iter().copied().fold(0.0, f64::max);
        assert!((e.longest_point - longest).abs() < 1e-9 * longest);
        // The law is exact at the calibration width, so the scaled 512 is (512/128)³ or (512/256)³
        // times the calibrated one: the LSTM at 512 runs at 128 (state 256).
        let lstm_512 = law(&calibration_spec(&spec, &points[points.len() - 1], 128, 1000)).unwrap().seconds * 64.0;
        assert!((longest - lstm_512).abs() < 1e-9 * longest);
        // Memory: kept is 100·T per point; in flight the three largest points.
        let kept: f64 = points.iter().map(|p| 100.0 * p.seq_len as f64).sum();
        assert!((e.memory.kept - kept).abs() < 1e-6, "{} vs {kept}", e.memory.kept);
        // Each (cell, width) is calibrated once: rnn 8, rnn 256, lstm 8, lstm 128.
        assert!(calls >= 4 * 2 * 2, "{calls} samples");
    }

    #[test]
    fn proc_values_are_read_in_bytes() {
        if std::path::Path::new("/proc/self/status").exists() {
            let rss = resident_memory().expect("VmRSS on Linux");
            let peak = peak_resident_memory().expect("VmHWM on Linux");
            assert!(rss > 1e6 && peak >= rss, "rss {rss}, peak {peak}");
        }
    }
}
