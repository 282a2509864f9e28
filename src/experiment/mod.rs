//! Experiments. A TOML [`spec::Spec`] names its [`Kind`] and expands to a [`grid`] of points;
//! the generic [`runner`] measures the points in parallel (each from its own random stream) and
//! writes what the experiment makes of them. One file per experiment holds its measurement per
//! point, its rows, its charts and its printed summary; a new experiment is one file, one
//! [`Kind`] variant and its line in [`run`] (plus a spec in `experiments/` and a line in
//! [`BUILT_IN`] to make it built in, and a subcommand in `cli.rs`); [`charts`] and
//! [`Kind::question`] tell `gradlab report` what to show.

pub mod charts;
pub mod edge_of_chaos;
pub mod findings;
pub mod gates;
pub mod grid;
pub mod memory;
pub mod precision;
pub mod runner;
pub mod spec;
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
}

impl Kind {
    /// The question the experiment asks, for the report.
    pub fn question(self) -> &'static str {
        match self {
            Kind::Vanishing => "How far back does the gradient reach in a tanh RNN, an LSTM and a GRU?",
            Kind::Gates => "Does the forget gate dominate the LSTM's dc_t/dc_(t-1), and where does it not?",
            Kind::Memory => "Is the LSTM's dc_T/dc_s the product of its forget gates?",
            Kind::EdgeOfChaos => "Does a wide random tanh RNN decay at the mean-field rate ½ ln χ?",
            Kind::Precision => "Where does plain f32 or f64 BPTT lose the gradient to underflow?",
        }
    }
}

/// The stems of the charts the spec's experiment writes, in its order.
pub fn charts(spec: &Spec) -> Result<Vec<&'static str>> {
    use runner::Experiment;
    Ok(match spec.kind {
        Kind::Vanishing => vanishing::Vanishing::new(spec)?.charts(),
        Kind::Gates => gates::Gates::new(spec)?.charts(),
        Kind::Memory => memory::Memory::new(spec)?.charts(),
        Kind::EdgeOfChaos => edge_of_chaos::EdgeOfChaos::new(spec)?.charts(),
        Kind::Precision => precision::Precision::new(spec)?.charts(),
    })
}

/// Redraws the charts of the experiment in `dir` from its `spec.toml` and CSVs into `out`
/// (`force`: replace existing charts); returns the paths written.
pub fn plot(dir: &Path, out: &Path, force: bool, formats: &[Format], size: Option<(u32, u32)>) -> Result<Vec<PathBuf>> {
    let spec = Spec::read(&dir.join("spec.toml"))?;
    match spec.kind {
        Kind::Vanishing => redraw(&vanishing::Vanishing::new(&spec)?, dir, out, force, formats, size),
        Kind::Gates => redraw(&gates::Gates::new(&spec)?, dir, out, force, formats, size),
        Kind::Memory => redraw(&memory::Memory::new(&spec)?, dir, out, force, formats, size),
        Kind::EdgeOfChaos => redraw(&edge_of_chaos::EdgeOfChaos::new(&spec)?, dir, out, force, formats, size),
        Kind::Precision => redraw(&precision::Precision::new(&spec)?, dir, out, force, formats, size),
    }
}

fn redraw<E: runner::Experiment>(
    exp: &E,
    dir: &Path,
    out: &Path,
    force: bool,
    formats: &[Format],
    size: Option<(u32, u32)>,
) -> Result<Vec<PathBuf>> {
    let all = exp.read(dir)?;
    let mut written = Vec::new();
    for (stem, fig) in exp.figures(&all) {
        written.extend(crate::output::plot::save_with(&fig, &out.join(stem), force, formats, size)?);
    }
    Ok(written)
}

/// The experiments compiled into the binary: (name, spec text). Each is run by
/// `gradlab experiment <name>`.
pub const BUILT_IN: [(&str, &str); 5] = [
    ("vanishing", include_str!("../../experiments/vanishing.toml")),
    ("gates", include_str!("../../experiments/gates.toml")),
    ("memory", include_str!("../../experiments/memory.toml")),
    ("edge-of-chaos", include_str!("../../experiments/edge-of-chaos.toml")),
    ("precision", include_str!("../../experiments/precision.toml")),
];

/// Runs `spec` with its kind's experiment; returns the report to print.
pub fn run(spec: &Spec, opts: &RunOptions) -> Result<String> {
    match spec.kind {
        Kind::Vanishing => runner::run(&vanishing::Vanishing::new(spec)?, spec, opts),
        Kind::Gates => runner::run(&gates::Gates::new(spec)?, spec, opts),
        Kind::Memory => runner::run(&memory::Memory::new(spec)?, spec, opts),
        Kind::EdgeOfChaos => runner::run(&edge_of_chaos::EdgeOfChaos::new(spec)?, spec, opts),
        Kind::Precision => runner::run(&precision::Precision::new(spec)?, spec, opts),
    }
}
