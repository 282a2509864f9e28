//! gradlab: a workbench for studying how gradients flow through recurrent networks.
//!
//! - [`cell`]: tanh RNN, LSTM and GRU behind one [`cell::Cell`] trait (forward, backward, Jacobian);
//! - [`bptt`]: the batched forward unroll and hand-derived backpropagation through time;
//! - [`params`], [`loss`]: parameters in PyTorch's layout, `mse` and `ce` losses;
//! - [`tensors`]: safetensors input and output with checked shapes, dtypes and values;
//! - [`probe`]: gradient-flow probes: Jacobian-product norms, LSTM decomposition, Lyapunov spectra;
//! - [`estimate`]: decay rates, horizons and regimes of a curve; [`meanfield`]: ½ ln χ theory;
//! - [`experiment`]: the generic sweep runner and one file per experiment; [`report`]: all of
//!   them in one REPORT.md;
//! - [`cmd`], [`cli`]: the `gradlab` commands; [`output`]: CSV files;
//! - [`scalar`], [`linalg`]: f32/f64 and the GEMM every product goes through.

pub mod bptt;
pub mod cell;
pub mod cli;
pub mod cmd;
pub mod error;
pub mod estimate;
pub mod experiment;
pub mod heap;
pub mod init;
pub mod linalg;
pub mod loss;
pub mod meanfield;
pub mod model_file;
pub mod output;
pub mod params;
pub mod probe;
pub mod report;
pub mod scalar;
pub mod tensors;
pub mod train;

pub use error::{Error, Result};
