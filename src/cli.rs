//! The command line: clap definitions only; each command's work lives in its own module.

use crate::cell::CellKind;
use crate::loss::LossKind;
use crate::probe::Q0;
use clap::{Parser, Subcommand};
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
    /// Every built-in experiment (reusing finished folders) and one REPORT.md of their findings.
    Report(ReportArgs),
    /// Redraw an experiment's charts from the CSVs in its folder, without recomputing.
    Plot(PlotArgs),
    /// Train one model on a long-memory task (copy or adding) with Adam; log and save it.
    Train(TrainArgs),
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The task (THEORY.md §9).
    #[arg(long, value_enum)]
    pub task: crate::train::tasks::TaskKind,
    /// The lag L: copy runs T = L + 20 steps, adding T = L.
    #[arg(long, value_name = "L")]
    pub lag: usize,
    #[arg(long, value_enum)]
    pub cell: CellKind,
    /// Initialisation, comma-separated GROUP=SCHEME (groups recurrent, input, bias, gate_bias;
    /// schemes as in experiment specs), e.g. recurrent=orthogonal(1.0),bias=zeros; the groups not
    /// named get PyTorch's default.
    #[arg(long, value_name = "GROUP=SCHEME,...", default_value = "")]
    pub init: String,
    #[arg(long, value_name = "H")]
    pub hidden: usize,
    /// Adam updates.
    #[arg(long, value_name = "N")]
    pub steps: usize,
    #[arg(long, value_name = "B", default_value_t = 32)]
    pub batch: usize,
    /// Adam's learning rate (β₁ = 0.9, β₂ = 0.999, ε = 1e-8 as PyTorch's default).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Clip the gradient's global 2-norm to this (as torch.nn.utils.clip_grad_norm_).
    #[arg(long, value_name = "C")]
    pub clip: Option<f64>,
    /// Arithmetic precision of the training.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Seed of the model, the batches and the held-out sequence.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Updates between horizon probes (default: a tenth of the updates).
    #[arg(long, value_name = "K")]
    pub probe_every: Option<usize>,
    /// Horizon threshold on the norm.
    #[arg(long, value_name = "EPS", default_value_t = 1e-3)]
    pub threshold: f64,
    /// Save the trained model (PyTorch layout plus head.weight, head.bias).
    #[arg(long, value_name = "W.safetensors")]
    pub save: Option<PathBuf>,
    /// Write the per-update log (step, loss, grad_norm, clipped, horizon, probed).
    #[arg(long, value_name = "train.csv")]
    pub log: Option<PathBuf>,
    /// Overwrite --save and --log files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// An experiment's folder (its spec.toml and CSVs).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Where to write the charts (default: DIR, replacing its charts).
    #[arg(long, value_name = "OUT")]
    pub out: Option<PathBuf>,
    /// Chart formats, comma-separated: png, svg, pdf (default: png and svg).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub format: Vec<crate::output::plot::Format>,
    /// Width in pixels (200 to 8000; default: the chart's own).
    #[arg(long, value_name = "PX", requires = "height", value_parser = clap::value_parser!(u32).range(200..=8000))]
    pub width: Option<u32>,
    /// Height in pixels (200 to 8000).
    #[arg(long, value_name = "PX", requires = "width", value_parser = clap::value_parser!(u32).range(200..=8000))]
    pub height: Option<u32>,
    /// Overwrite charts in OUT.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Folder for the experiments' folders and REPORT.md.
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub out: PathBuf,
    /// Worker threads (default: all cores; RAYON_NUM_THREADS is honoured).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Overwrite folders of a different spec, and a REPORT.md that gradlab did not write.
    #[arg(long)]
    pub force: bool,
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
    /// Built in: gradient decay in tanh RNN, LSTM and GRU (rates, horizons, λ₁).
    Vanishing(RunArgs),
    /// Built in: where the forget gate dominates the LSTM's ∂c_t/∂c_{t-1}, and where it does not.
    Gates(RunArgs),
    /// Built in: is the LSTM's ∂c_T/∂c_s the product of its forget gates?
    Memory(RunArgs),
    /// Built in: the tanh RNN's decay rate against the mean-field ½ ln χ across gains.
    EdgeOfChaos(RunArgs),
    /// Built in: where plain f32 and f64 BPTT lose the gradient to underflow.
    Precision(RunArgs),
    /// Built in: which lags each cell learns, beside its gradient horizon at initialisation.
    Trainability(RunArgs),
    /// Combine the points stored by the shards of one run (`--shard i/n`) into its outputs.
    Merge {
        /// The shards' output folders (several shards may share one).
        #[arg(value_name = "DIR", required = true)]
        dirs: Vec<PathBuf>,
        /// Output folder (default: the spec's `out`).
        #[arg(long, value_name = "OUT")]
        out: Option<PathBuf>,
        /// Overwrite outputs of a different spec in OUT.
        #[arg(long)]
        force: bool,
    },
    /// Run an experiment spec (TOML) of your own.
    Run {
        /// The spec file.
        #[arg(value_name = "SPEC.toml")]
        spec: PathBuf,
        #[command(flatten)]
        args: RunArgs,
    },
}

impl ExperimentCommand {
    /// The built-in experiment this names and its options, if it names one.
    pub fn built_in(&self) -> Option<(&'static str, &RunArgs)> {
        match self {
            ExperimentCommand::Vanishing(a) => Some(("vanishing", a)),
            ExperimentCommand::Gates(a) => Some(("gates", a)),
            ExperimentCommand::Memory(a) => Some(("memory", a)),
            ExperimentCommand::EdgeOfChaos(a) => Some(("edge-of-chaos", a)),
            ExperimentCommand::Precision(a) => Some(("precision", a)),
            ExperimentCommand::Trainability(a) => Some(("trainability", a)),
            ExperimentCommand::List | ExperimentCommand::Run { .. } | ExperimentCommand::Merge { .. } => None,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Output folder (default: the spec's `out`, or results/<name>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Worker threads (default: all cores; RAYON_NUM_THREADS is honoured).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Overwrite outputs of a different spec in the output folder (and discard the stored
    /// points of an interrupted run of a different spec).
    #[arg(long)]
    pub force: bool,
    /// Measure only shard I of N (I from 0; e.g. $SLURM_ARRAY_TASK_ID/N), store its points in
    /// the output folder, and leave the outputs to `gradlab experiment merge`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<crate::experiment::runner::Shard>,
    /// Print the grid and the estimated time and peak memory (calibrated by timing a few short
    /// points on this machine); measure and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub use crate::scalar::Precision;

/// Where a model's weights come from and how to read them.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Weights: weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k} [, head.weight, head.bias]
    /// in F32, F64, F16 or BF16 (widened).
    #[arg(long, value_name = "W.safetensors")]
    pub weights: PathBuf,
    /// The cell; by default read from the weights (rows of weight_hh_l0 / H).
    #[arg(long)]
    pub cell: Option<CellKind>,
    /// Read the recurrent layers from tensors named PREFIX + weight_ih_l0 etc., as in the
    /// state_dict of a module that wraps the RNN (e.g. `rnn.`); other tensors but head.weight
    /// and head.bias are skipped, and the report lists them.
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct GradArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Inputs: x [T,B,I], optional h0 (and c0) [L,B,H], and target [T,B,O] or labels [T,B].
    #[arg(long, value_name = "X.safetensors")]
    pub input: PathBuf,
    /// Where to write the gradients (same names as the weights, plus x, h0, c0, loss).
    #[arg(long, value_name = "G.safetensors")]
    pub out: PathBuf,
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
    #[command(flatten)]
    pub model: ModelArgs,
    /// Inputs: x [T,B,I], optional h0 (and c0) [L,B,H]; with target or labels, the error signal
    /// of a loss at the last step is probed too.
    #[arg(long, value_name = "X.safetensors")]
    pub input: PathBuf,
    /// Folder for probe.csv, summary.csv, decomp.csv (LSTM) and lyapunov.csv.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Lyapunov: steps run before the exponents are accumulated (must be < T). The default 0 with
    /// --q0 identity gives the finite-time exponents of the given sequence.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub burn_in: usize,
    /// Lyapunov: the start Q_0, the identity (h first) or a random orthonormal matrix.
    #[arg(long, value_enum, default_value_t = Q0::Identity)]
    pub q0: Q0,
    /// Lyapunov: seed of the random Q_0.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Horizon threshold: the horizon is the smallest distance after which the norm stays below it.
    #[arg(long, value_name = "EPS", default_value_t = 1e-3)]
    pub threshold: f64,
    /// Overwrite existing output files.
    #[arg(long)]
    pub force: bool,
}
