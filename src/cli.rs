//! The command line: clap definitions only; each command's work lives in its own module.

use crate::cell::CellKind;
use crate::loss::LossKind;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// gradlab: exact gradients and gradient-flow probes for recurrent networks.
#[derive(Debug, Parser)]
#[command(name = "gradlab", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exact BPTT gradients of a PyTorch-layout model on one batch, written to safetensors.
    Grad(GradArgs),
    /// Gradient-flow probes (Jacobian norms, LSTM decomposition, Lyapunov spectrum) of a model.
    Probe(ProbeArgs),
    /// Parameter sweeps that measure gradient flow, writing CSVs and charts.
    Experiment(ExperimentArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExperimentArgs {
    #[command(subcommand)]
    pub command: ExperimentCommand,
}

#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// List the built-in experiments.
    List,
    /// The built-in `vanishing` experiment: gradient decay in tanh RNN, LSTM and GRU.
    Vanishing(RunArgs),
    /// Run an experiment spec (TOML) of your own.
    Run {
        /// The spec file.
        #[arg(value_name = "SPEC.toml")]
        spec: PathBuf,
        #[command(flatten)]
        args: RunArgs,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Output folder (default: the spec's `out`, or results/<name>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Worker threads (default: all cores; RAYON_NUM_THREADS is honoured).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Overwrite outputs of a different spec in the output folder.
    #[arg(long)]
    pub force: bool,
}

/// Arithmetic precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    F32,
    F64,
}

#[derive(Debug, clap::Args)]
pub struct GradArgs {
    /// Weights: weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k} [, head.weight, head.bias].
    #[arg(long, value_name = "W.safetensors")]
    pub weights: PathBuf,
    /// Inputs: x [T,B,I], optional h0 (and c0) [L,B,H], and target [T,B,O] or labels [T,B].
    #[arg(long, value_name = "X.safetensors")]
    pub input: PathBuf,
    /// Where to write the gradients (same names as the weights, plus x, h0, c0, loss).
    #[arg(long, value_name = "G.safetensors")]
    pub out: PathBuf,
    /// The cell; by default read from the weights (rows of weight_hh_l0 / H).
    #[arg(long)]
    pub cell: Option<CellKind>,
    /// The loss; by default mse if the input holds `target`, ce if it holds `labels`.
    #[arg(long)]
    pub loss: Option<LossKind>,
    /// Arithmetic precision; by default the widest float type among the weights.
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Weights, as for `grad`.
    #[arg(long, value_name = "W.safetensors")]
    pub weights: PathBuf,
    /// Inputs: x [T,B,I], optional h0 (and c0) [L,B,H]; with target or labels, the error signal
    /// of a loss at the last step is probed too.
    #[arg(long, value_name = "X.safetensors")]
    pub input: PathBuf,
    /// Folder for probe.csv, decomp.csv (LSTM) and lyapunov.csv.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The cell; by default read from the weights.
    #[arg(long)]
    pub cell: Option<CellKind>,
    /// Overwrite existing output files.
    #[arg(long)]
    pub force: bool,
}
