//! The recurrent cells behind one trait. A cell is the elementwise part of one time step for
//! one sequence; the matrix products (input projections, W_hh·h, the gradient GEMMs) and the
//! loop over time live once in [`crate::bptt`], so every cell gets the batched, allocation-free
//! schedule for free. A new cell is one file implementing [`Cell`] plus a [`CellKind`] variant.

mod gru;
mod lstm;
mod rnn;

pub use gru::Gru;
pub use lstm::Lstm;
pub use rnn::{Rnn, RnnRelu};

use crate::scalar::Scalar;
use nalgebra::{DMatrix, DMatrixView, DMatrixViewMut};

/// Which recurrent cell a model uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// Elman RNN, h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).
    Rnn,
    /// LSTM, gate order i, f, g, o.
    Lstm,
    /// GRU, gate order r, z, n.
    Gru,
    /// Elman RNN with ReLU, h_t = max(0, W_ih x_t + b_ih + W_hh h_{t-1} + b_hh): PyTorch's
    /// `nn.RNN(nonlinearity='relu')`, the same weights' layout as `rnn`.
    #[serde(rename = "rnn-relu")]
    RnnRelu,
}

impl CellKind {
    /// All cells, in a fixed order (the tanh RNN before the ReLU one: a weights file with one
    /// gate block is read as tanh unless told otherwise).
    pub const ALL: [CellKind; 4] = [CellKind::Rnn, CellKind::Lstm, CellKind::Gru, CellKind::RnnRelu];

    /// Gate blocks G stacked in `weight_ih`/`weight_hh` (rows = G·H).
    pub fn gates(self) -> usize {
        match self {
            CellKind::Rnn => Rnn::GATES,
            CellKind::Lstm => Lstm::GATES,
            CellKind::Gru => Gru::GATES,
            CellKind::RnnRelu => RnnRelu::GATES,
        }
    }

    /// Whether the state carries a cell state c besides h.
    pub fn has_cell_state(self) -> bool {
        match self {
            CellKind::Rnn => Rnn::HAS_C,
            CellKind::Lstm => Lstm::HAS_C,
            CellKind::Gru => Gru::HAS_C,
            CellKind::RnnRelu => RnnRelu::HAS_C,
        }
    }

    /// The cell with `gates` gate blocks, if any (the tanh RNN for one).
    pub fn from_gates(gates: usize) -> Option<CellKind> {
        CellKind::ALL.into_iter().find(|k| k.gates() == gates)
    }

    /// Lower-case name as used on the command line and in CSVs.
    pub fn name(self) -> &'static str {
        match self {
            CellKind::Rnn => "rnn",
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
            CellKind::RnnRelu => "rnn-relu",
        }
    }
}

impl std::fmt::Display for CellKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What one step of one sequence saved: its cache and the state it started from.
/// `c_prev` is empty for cells without a cell state.
#[derive(Clone, Copy, Debug)]
pub struct StepRef<'a, T> {
    pub hidden: usize,
    pub cache: &'a [T],
    pub h_prev: &'a [T],
    pub c_prev: &'a [T],
}

impl<T> StepRef<'_, T> {
    /// Block `k` (k·H..(k+1)·H) of the cache.
    #[inline]
    pub fn block(&self, k: usize) -> &[T] {
        &self.cache[k * self.hidden..(k + 1) * self.hidden]
    }
}

/// One recurrent cell: its forward step, backward step and one-step state Jacobian, for a
/// single sequence. All slices have the lengths stated, as H-blocks; kernels do not check them.
pub trait Cell: Send + Sync + 'static {
    /// Gate blocks G in the weight matrices.
    const GATES: usize;
    /// H-blocks saved per step and sequence for `backward` and `jacobian`.
    const CACHE: usize;
    /// Whether the state includes a cell state c (LSTM).
    const HAS_C: bool = false;
    /// Whether the gradient reaching `W_hh·h + b_hh` differs from the one reaching
    /// `W_ih·x + b_ih` (GRU, where r gates the recurrent part of n).
    const SPLIT_HH: bool = false;

    /// One step: `xp` = W_ih x_t + b_ih and `hh` = W_hh h_{t-1} + b_hh (G·H each) and the previous
    /// state in; the new state `h`, `c` and the step's `cache` (CACHE·H) out.
    fn forward<T: Scalar>(xp: &[T], hh: &[T], h_prev: &[T], c_prev: &[T], cache: &mut [T], h: &mut [T], c: &mut [T]);

    /// Backward through one step given δh_t (total) and δc_t (from step t+1). Writes
    /// `da_ih` = ∂L/∂(W_ih x_t + b_ih) (G·H); with `SPLIT_HH` also `da_hh` = ∂L/∂(W_hh h + b_hh),
    /// otherwise `da_hh` is empty and equals `da_ih`. Writes the direct parts of δh_{t-1}
    /// (the caller adds W_hhᵀ·da_hh) and δc_{t-1}.
    #[allow(clippy::too_many_arguments)]
    fn backward<T: Scalar>(
        step: &StepRef<T>,
        dh: &[T],
        dc: &[T],
        da_ih: &mut [T],
        da_hh: &mut [T],
        dh_prev: &mut [T],
        dc_prev: &mut [T],
    );

    /// ∂s_t/∂s_{t-1} (THEORY.md §4): H×H, or 2H×2H ordered (h, c) for a cell with c.
    fn jacobian<T: Scalar>(step: &StepRef<T>, w_hh: &DMatrix<T>) -> DMatrix<T>;
}

/// The first B blocks of `k` values of `cache`, each a slice of known length (so loops over
/// them need no bounds checks and vectorise).
#[inline(always)]
pub(crate) fn blocks_mut<T, const B: usize>(mut cache: &mut [T], k: usize) -> [&mut [T]; B] {
    std::array::from_fn(|_| {
        let (block, rest) = std::mem::take(&mut cache).split_at_mut(k);
        cache = rest;
        block
    })
}

/// The first B blocks of `k` values of `cache`, as [`blocks_mut`].
#[inline(always)]
pub(crate) fn blocks<T, const B: usize>(cache: &[T], k: usize) -> [&[T]; B] {
    std::array::from_fn(|b| &cache[b * k..(b + 1) * k])
}

/// `j += diag(coef)·block` where block is rows `gate·H..(gate+1)·H` of `w_hh`.
pub(crate) fn add_scaled_rows<T: Scalar>(mut j: DMatrixViewMut<'_, T>, coef: &[T], w_hh: &DMatrix<T>, gate: usize) {
    let h = coef.len();
    let u: DMatrixView<'_, T> = w_hh.rows(gate * h, h);
    for c in 0..u.ncols() {
        let (mut out, col) = (j.column_mut(c), u.column(c));
        for ((o, &a), &w) in out.as_mut_slice().iter_mut().zip(coef).zip(col.as_slice()) {
            *o += a * w;
        }
    }
}
