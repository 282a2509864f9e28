//! Experiments. A TOML [`spec::Spec`] names its [`Kind`] and expands to a [`grid`] of points;
//! the generic [`runner`] measures the points in parallel (each from its own random stream) and
//! writes what the experiment makes of them. One file per experiment holds its measurement per
//! point, its rows, its charts and its printed summary; a new experiment is one file, one
//! [`Kind`] variant with its question, and its line in [`dispatch`] (plus a spec in
//! `experiments/` and a line in [`BUILT_IN`] to make it built in, and a subcommand in `cli.rs`).

pub mod budget;
pub mod charts;
pub mod edge_of_chaos;
pub mod findings;
pub mod gates;
pub mod grid;
pub mod memory;
pub mod precision;
pub mod runner;
pub mod spec;
pub mod store;
pub mod trainability;
pub mod vanishing;

use crate::error::Result;
use crate::output::plot::Format;
use runner::RunOptions;
use serde::Deserialize;
use spec::Spec;
use std::path::{Path, PathBuf};

/// What an experiment measures: the spec's `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// ‖∂h_T/∂h_s‖ (and the LSTM's state map) against distance: decay rates, horizons, λ_1.
    Vanishing,
    /// Where the forget gate dominates ∂c_t/∂c_{t-1} and where it does not.
    Gates,
    /// Whether ∂c_T/∂c_s is the product of forget gates.
    Memory,
    /// The tanh RNN's measured decay against the mean-field ½ ln χ across gains.
    EdgeOfChaos,
    /// Where plain f32/f64 BPTT loses the gradient to underflow.
    Precision,
    /// Which lags each cell and initialisation learns, beside its gradient horizon.
    Trainability,
}

impl Kind {
    /// The question the experiment asks, for the report.
    pub fn question(self) -> &'static str {
        match self {
            Kind::Vanishing => "How far back does the gradient reach in a tanh or ReLU RNN, an LSTM and a GRU?",
            Kind::Gates => "Does the forget gate dominate the LSTM's dc_t/dc_(t-1), and where does it not?",
            Kind::Memory => "Is the LSTM's dc_T/dc_s the product of its forget gates?",
            Kind::EdgeOfChaos => "Does a wide random tanh RNN decay at the mean-field rate ½ ln χ?",
            Kind::Precision => "Where does plain f32 or f64 BPTT lose the gradient to underflow?",
            Kind::Trainability => {
                "Up to which lag does each cell and initialisation learn, and does its gradient horizon at \
                 initialisation predict it?"
            }
        }
    }
}

/// The stems of the charts the spec's experiment writes, in its order.
pub fn charts(spec: &Spec) -> Result<Vec<&'static str>> {
    struct Charts;
    impl WithExperiment for Charts {
        type Output = Vec<&'static str>;
        fn with<E: runner::Experiment>(self, exp: &E, _: &Spec) -> Result<Self::Output> {
            Ok(exp.charts())
        }
    }
    dispatch(spec, Charts)
}

/// Redraws the charts of the experiment in `dir` from its `spec.toml` and CSVs into `out`
/// (`force`: replace existing charts); returns the paths written.
pub fn plot(dir: &Path, out: &Path, force: bool, formats: &[Format], size: Option<(u32, u32)>) -> Result<Vec<PathBuf>> {
    struct Redraw<'a> {
        dir: &'a Path,
        out: &'a Path,
        force: bool,
        formats: &'a [Format],
        size: Option<(u32, u32)>,
    }
    impl WithExperiment for Redraw<'_> {
        type Output = Vec<PathBuf>;
        fn with<E: runner::Experiment>(self, exp: &E, _: &Spec) -> Result<Vec<PathBuf>> {
            let all = exp.read(self.dir)?;
            let mut written = Vec::new();
            for (stem, fig) in exp.figures(&all) {
                let stem = self.out.join(stem);
                written.extend(crate::output::plot::save_with(&fig, &stem, self.force, self.formats, self.size)?);
            }
            Ok(written)
        }
    }
    let spec = Spec::read(&dir.join("spec.toml"))?;
    dispatch(&spec, Redraw { dir, out, force, formats, size })
}

/// The experiments compiled into the binary: (name, spec text). Each is run by
/// `gradlab experiment <name>`.
pub const BUILT_IN: [(&str, &str); 6] = [
    ("vanishing", include_str!("../../experiments/vanishing.toml")),
    ("gates", include_str!("../../experiments/gates.toml")),
    ("memory", include_str!("../../experiments/memory.toml")),
    ("edge-of-chaos", include_str!("../../experiments/edge-of-chaos.toml")),
    ("precision", include_str!("../../experiments/precision.toml")),
    ("trainability", include_str!("../../experiments/trainability.toml")),
];

/// Something to do with an experiment of any kind: implemented by [`run`], [`charts`] and
/// [`plot`], so that [`dispatch`] is the one place the kinds are listed.
trait WithExperiment {
    type Output;
    fn with<E: runner::Experiment>(self, exp: &E, spec: &Spec) -> Result<Self::Output>;
}

/// The registry: builds the spec's experiment (checking what its kind needs) and hands it on.
fn dispatch<V: WithExperiment>(spec: &Spec, v: V) -> Result<V::Output> {
    match spec.kind {
        Kind::Vanishing => v.with(&vanishing::Vanishing::new(spec)?, spec),
        Kind::Gates => v.with(&gates::Gates::new(spec)?, spec),
        Kind::Memory => v.with(&memory::Memory::new(spec)?, spec),
        Kind::EdgeOfChaos => v.with(&edge_of_chaos::EdgeOfChaos::new(spec)?, spec),
        Kind::Precision => v.with(&precision::Precision::new(spec)?, spec),
        Kind::Trainability => v.with(&trainability::Trainability::new(spec)?, spec),
    }
}

/// Samples the cost of the one point of a calibration spec on a one-thread pool: its seconds,
/// and the heap it holds while measured and keeps afterwards (`crate::heap`).
fn sample_point(one: &rayon::ThreadPool, spec: &Spec) -> Result<budget::Sample> {
    struct SamplePoint<'a>(&'a rayon::ThreadPool);
    impl WithExperiment for SamplePoint<'_> {
        type Output = budget::Sample;
        fn with<E: runner::Experiment>(self, exp: &E, spec: &Spec) -> Result<budget::Sample> {
            let p = &grid::expand(spec)[0];
            self.0.install(|| {
                let start = std::time::Instant::now();
                let (measured, in_flight, kept) =
                    crate::heap::counted(|| exp.measure(p, &mut grid::point_rng(spec, p)));
                let seconds = start.elapsed().as_secs_f64();
                measured?;
                Ok(budget::Sample { seconds, in_flight: in_flight as f64, kept: kept as f64 })
            })
        }
    }
    dispatch(spec, SamplePoint(one))
}

fn one_thread() -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| crate::error::Error::Usage(format!("a calibration thread: {e}")))
}

/// `--dry-run`: the grid, and the time and memory a run would take (calibrated by running a few
/// short points of the spec on one thread); nothing is measured or written.
fn dry_run(spec: &Spec, opts: &RunOptions) -> Result<String> {
    let one = one_thread()?;
    let threads = runner::rayon_threads(opts.threads);
    let estimate = budget::estimate(spec, threads, &mut |cal| sample_point(&one, cal))?;
    let points = grid::expand(spec);
    let mut per_cell: Vec<(crate::cell::CellKind, usize)> = Vec::new();
    for p in &points {
        match per_cell.iter_mut().find(|(c, _)| *c == p.cell) {
            Some((_, n)) => *n += 1,
            None => per_cell.push((p.cell, 1)),
        }
    }
    let cells: Vec<String> = per_cell.iter().map(|(c, n)| format!("{c} {n}")).collect();
    let (t_min, t_max) = (spec.seq_len.iter().min(), spec.seq_len.iter().max());
    let (h_min, h_max) = (spec.hidden.iter().min(), spec.hidden.iter().max());
    let mut r = format!(
        "{}: {} grid points ({}; H {}..={}, T {}..={}, batch {}, {} seed(s))\n{estimate}",
        spec.name,
        points.len(),
        cells.join(", "),
        h_min.expect("non-empty"),
        h_max.expect("non-empty"),
        t_min.expect("non-empty"),
        t_max.expect("non-empty"),
        spec.batch,
        spec.seeds.len()
    );
    if estimate.memory.exceeds_available() {
        r += &format!("\nrefused: {}", budget::memory_error(spec, &estimate.memory, threads));
    }
    r += "\nnothing measured or written (--dry-run)";
    Ok(r)
}

/// Assembles the outputs of the spec whose points the folders `dirs` hold (the `--out` folders
/// of its shards); returns the report to print.
pub fn merge(dirs: &[PathBuf], opts: &RunOptions) -> Result<String> {
    struct Merge<'a>(&'a [PathBuf], &'a RunOptions);
    impl WithExperiment for Merge<'_> {
        type Output = String;
        fn with<E: runner::Experiment>(self, exp: &E, spec: &Spec) -> Result<String> {
            runner::merge(exp, spec, self.0, self.1)
        }
    }
    let first = dirs.first().ok_or_else(|| crate::error::Error::Usage("merge: name at least one folder".into()))?;
    let (store, text) = store::Store::existing(first)?;
    let spec = Spec::parse(&text).map_err(|e| e.in_file(store.dir().join("spec.toml")))?;
    dispatch(&spec, Merge(dirs, opts))
}

/// Runs longer than this (estimated) say so before they start.
const LONG_RUN_SECONDS: f64 = 60.0;

/// Runs `spec` with its kind's experiment (with `opts.dry_run`, estimates it); returns the
/// report to print. Once its folder is found usable, a run is estimated: refused if it does not
/// fit in memory, announced on stderr if it will take more than a minute.
pub fn run(spec: &Spec, opts: &RunOptions) -> Result<String> {
    if opts.dry_run {
        return dry_run(spec, opts);
    }
    struct Run<'a>(&'a RunOptions);
    impl WithExperiment for Run<'_> {
        type Output = String;
        fn with<E: runner::Experiment>(self, exp: &E, spec: &Spec) -> Result<String> {
            runner::run(exp, spec, self.0, || preflight(spec, self.0))
        }
    }
    dispatch(spec, Run(opts))
}

/// The estimate every run makes before it measures anything (`budget::preflight`).
fn preflight(spec: &Spec, opts: &RunOptions) -> Result<()> {
    let one = one_thread()?;
    let threads = runner::rayon_threads(opts.threads);
    let seconds = budget::preflight(spec, threads, &mut |cal| sample_point(&one, cal))?;
    if seconds > LONG_RUN_SECONDS {
        eprintln!(
            "{}: {} grid points, about {} on {threads} thread(s) by a quick calibration (--dry-run for more); \
             Ctrl-C stops and keeps the finished points",
            spec.name,
            grid::expand(spec).len(),
            budget::human_seconds(seconds)
        );
    }
    Ok(())
}
