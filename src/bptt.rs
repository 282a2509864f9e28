//! The forward unroll and hand-derived backpropagation through time (THEORY.md §3), written
//! once over the [`Cell`] trait. Layout: a batch of sequences is a matrix whose column t·B + b is
//! step t of sequence b, so each layer runs one GEMM per step for the recurrence, the input
//! projections either per step beside it with W_ih packed once (batch > 1) or as one GEMM for
//! all steps (batch 1), and after the backward loop one GEMM per weight gradient and one for
//! ∂L/∂x. Buffers are allocated per layer before the time loop; nothing is allocated inside it.

use crate::cell::{Cell, CellKind, Gru, Lstm, Rnn, RnnRelu, StepRef};
use crate::linalg::{Op, PackedMatrix, ReusedLeft, gemm};
use crate::loss::{Targets, loss_and_grad};
use crate::params::Params;
use crate::scalar::Scalar;
use nalgebra::{DMatrix, DMatrixView, DVector};

/// A batch of input sequences and initial states.
#[derive(Clone, Debug, PartialEq)]
pub struct Inputs<T: Scalar> {
    /// I × T·B, column t·B + b = x_{t+1} of sequence b (PyTorch's [T, B, I] memory order).
    pub x: DMatrix<T>,
    /// Sequence length T ≥ 1.
    pub steps: usize,
    /// Batch size B ≥ 1.
    pub batch: usize,
    /// Per layer, H × B initial hidden state.
    pub h0: Vec<DMatrix<T>>,
    /// Per layer, H × B initial cell state (LSTM); empty for other cells.
    pub c0: Vec<DMatrix<T>>,
}

impl<T: Scalar> Inputs<T> {
    /// Inputs with zero initial states for `params`.
    pub fn with_zero_state(params: &Params<T>, x: DMatrix<T>, steps: usize, batch: usize) -> Self {
        let zeros = || vec![DMatrix::zeros(params.hidden(), batch); params.layers().len()];
        let c0 = if params.kind().has_cell_state() { zeros() } else { Vec::new() };
        Inputs { x, steps, batch, h0: zeros(), c0 }
    }

    /// Converts every value to another scalar type.
    pub fn cast<U: Scalar>(&self) -> Inputs<U> {
        let m = |a: &DMatrix<T>| a.map(|v| U::of(v.as_f64()));
        Inputs {
            x: m(&self.x),
            steps: self.steps,
            batch: self.batch,
            h0: self.h0.iter().map(m).collect(),
            c0: self.c0.iter().map(m).collect(),
        }
    }
}

/// One layer's saved forward pass.
#[derive(Clone, Debug)]
pub struct LayerTape<T: Scalar> {
    /// H × (T+1)·B hidden states h_0..h_T.
    pub hs: DMatrix<T>,
    /// H × (T+1)·B cell states c_0..c_T (LSTM), 0 rows otherwise.
    pub cs: DMatrix<T>,
    /// CACHE·H × T·B per-step caches of the cell.
    pub cache: DMatrix<T>,
}

/// A finished forward pass: everything backward, Jacobians and probes read.
#[derive(Clone, Debug)]
pub struct Tape<T: Scalar> {
    pub kind: CellKind,
    pub steps: usize,
    pub batch: usize,
    pub hidden: usize,
    pub layers: Vec<LayerTape<T>>,
    /// O × T·B outputs y_t (the head's, or the top layer's h_t).
    pub y: DMatrix<T>,
    /// G·H × T·B input projections W_ih x_t + b_ih of the layer being run: needed only inside
    /// its time loop, so one buffer serves every layer and every later pass. G·H × B, one
    /// step's, where they are computed step by step (see `forward_cell`).
    xp: DMatrix<T>,
    /// W_ih and W_hh of the layer being run, packed for its time loop (as `xp`, one buffer each).
    w_ih: PackedMatrix<T>,
    w_hh: PackedMatrix<T>,
}

impl<T: Scalar> Tape<T> {
    /// H × T·B top-layer hidden states h_1..h_T.
    pub fn output(&self) -> DMatrixView<'_, T> {
        self.layers.last().expect("a model has layers").hs.columns(self.batch, self.steps * self.batch)
    }

    /// H × B final hidden state of `layer`.
    pub fn h_n(&self, layer: usize) -> DMatrixView<'_, T> {
        self.layers[layer].hs.columns(self.steps * self.batch, self.batch)
    }

    /// H × B final cell state of `layer` (0 rows without a cell state).
    pub fn c_n(&self, layer: usize) -> DMatrixView<'_, T> {
        self.layers[layer].cs.columns(self.steps * self.batch, self.batch)
    }

    /// Size of one sequence's recurrent state: H, or 2H for a cell with c (ordered h, c).
    pub fn state_size(&self) -> usize {
        if self.kind.has_cell_state() { 2 * self.hidden } else { self.hidden }
    }

    /// What step `t` (1..=T) of sequence `b` in `layer` saved.
    #[inline]
    pub fn step(&self, layer: usize, t: usize, b: usize) -> StepRef<'_, T> {
        debug_assert!(t >= 1 && t <= self.steps && b < self.batch);
        let l = &self.layers[layer];
        let h = self.hidden;
        let ch = l.cs.nrows();
        let s_prev = (t - 1) * self.batch + b;
        let cl = l.cache.nrows();
        StepRef {
            hidden: h,
            cache: &l.cache.as_slice()[s_prev * cl..(s_prev + 1) * cl],
            h_prev: &l.hs.as_slice()[s_prev * h..(s_prev + 1) * h],
            c_prev: &l.cs.as_slice()[s_prev * ch..(s_prev + 1) * ch],
        }
    }
}

/// Gradients of the loss with respect to everything that went in.
#[derive(Clone, Debug)]
pub struct Grads<T: Scalar> {
    /// ∂L/∂θ in the layout and names of the parameters.
    pub params: Params<T>,
    /// I × T·B, ∂L/∂x.
    pub x: DMatrix<T>,
    /// Per layer H × B, ∂L/∂h_0.
    pub h0: Vec<DMatrix<T>>,
    /// Per layer H × B, ∂L/∂c_0 (LSTM), empty otherwise.
    pub c0: Vec<DMatrix<T>>,
    /// Buffers of the backward pass, kept for the next [`backward_into`].
    scratch: Scratch<T>,
}

/// The backward pass's T·B-wide buffers: ∂L/∂(W_ih x + b_ih) and ∂L/∂(W_hh h + b_hh) of a layer
/// (G·H each), and ∂L/∂h_t arriving from above, in and out (H rows); and the layer's W_hhᵀ packed.
#[derive(Clone, Debug)]
struct Scratch<T: Scalar> {
    da_ih: DMatrix<T>,
    da_hh: DMatrix<T>,
    from_above: DMatrix<T>,
    to_below: DMatrix<T>,
    w_hh_t: PackedMatrix<T>,
}

/// Runs the network forward over the batch and keeps the tape.
pub fn forward<T: Scalar>(params: &Params<T>, inputs: &Inputs<T>) -> Tape<T> {
    let mut tape = Tape {
        kind: params.kind(),
        steps: 0,
        batch: 0,
        hidden: 0,
        layers: Vec::new(),
        y: DMatrix::zeros(0, 0),
        xp: DMatrix::zeros(0, 0),
        w_ih: PackedMatrix::default(),
        w_hh: PackedMatrix::default(),
    };
    forward_into(params, inputs, &mut tape);
    tape
}

/// [`forward`] into an existing tape, reusing its buffers where their shapes fit (as after an
/// earlier pass of the same shapes): repeated passes then neither allocate nor touch fresh
/// memory. Every value of the result is written by this pass.
pub fn forward_into<T: Scalar>(params: &Params<T>, inputs: &Inputs<T>, tape: &mut Tape<T>) {
    match params.kind() {
        CellKind::Rnn => forward_cell::<Rnn, T>(params, inputs, tape),
        CellKind::Lstm => forward_cell::<Lstm, T>(params, inputs, tape),
        CellKind::Gru => forward_cell::<Gru, T>(params, inputs, tape),
        CellKind::RnnRelu => forward_cell::<RnnRelu, T>(params, inputs, tape),
    }
}

/// Backpropagates `dy` = ∂L/∂y (O × T·B) through a tape made by [`forward`] from the same
/// `params` and `inputs`.
pub fn backward<T: Scalar>(params: &Params<T>, inputs: &Inputs<T>, tape: &Tape<T>, dy: &DMatrix<T>) -> Grads<T> {
    let mut grads = Grads::empty(params);
    backward_into(params, inputs, tape, dy, &mut grads);
    grads
}

impl<T: Scalar> Grads<T> {
    /// Zero parameter gradients and empty buffers, for a first [`backward_into`].
    pub fn empty(params: &Params<T>) -> Self {
        let empty = || DMatrix::zeros(0, 0);
        Grads {
            params: params.zeros_like(),
            x: empty(),
            h0: Vec::new(),
            c0: Vec::new(),
            scratch: Scratch {
                da_ih: empty(),
                da_hh: empty(),
                from_above: empty(),
                to_below: empty(),
                w_hh_t: PackedMatrix::default(),
            },
        }
    }
}

/// [`backward`] into existing gradients, reusing their buffers where the shapes fit (as after
/// an earlier pass of the same shapes). Every value of the result is written by this pass.
pub fn backward_into<T: Scalar>(
    params: &Params<T>,
    inputs: &Inputs<T>,
    tape: &Tape<T>,
    dy: &DMatrix<T>,
    grads: &mut Grads<T>,
) {
    match params.kind() {
        CellKind::Rnn => backward_cell::<Rnn, T>(params, inputs, tape, dy, grads, None),
        CellKind::Lstm => backward_cell::<Lstm, T>(params, inputs, tape, dy, grads, None),
        CellKind::Gru => backward_cell::<Gru, T>(params, inputs, tape, dy, grads, None),
        CellKind::RnnRelu => backward_cell::<RnnRelu, T>(params, inputs, tape, dy, grads, None),
    }
}

/// One layer's error signal at every step, as BPTT delivers it: column s·B + b is sequence b at
/// step s = 0..=T.
#[derive(Clone, Debug, PartialEq)]
pub struct StateGradients<T: Scalar> {
    /// H × (T+1)·B: the total ∂L/∂h_s (from step s + 1 and from outside the recurrence at s).
    pub h: DMatrix<T>,
    /// H × (T+1)·B: ∂L/∂c_s (LSTM); 0 rows for other cells.
    pub c: DMatrix<T>,
}

/// The error signal as BPTT delivers it, per layer, in the tape's own precision (no rescaling):
/// values that underflow in T's arithmetic are lost exactly as in training, which is the point
/// (THEORY.md §5, precision).
pub fn state_gradients<T: Scalar>(
    params: &Params<T>,
    inputs: &Inputs<T>,
    tape: &Tape<T>,
    dy: &DMatrix<T>,
) -> Vec<StateGradients<T>> {
    let cols = (tape.steps + 1) * tape.batch;
    let ch = if tape.kind.has_cell_state() { tape.hidden } else { 0 };
    let mut record = vec![
        StateGradients { h: DMatrix::zeros(tape.hidden, cols), c: DMatrix::zeros(ch, cols) };
        params.layers().len()
    ];
    let mut grads = Grads::empty(params);
    match params.kind() {
        CellKind::Rnn => backward_cell::<Rnn, T>(params, inputs, tape, dy, &mut grads, Some(&mut record)),
        CellKind::Lstm => backward_cell::<Lstm, T>(params, inputs, tape, dy, &mut grads, Some(&mut record)),
        CellKind::Gru => backward_cell::<Gru, T>(params, inputs, tape, dy, &mut grads, Some(&mut record)),
        CellKind::RnnRelu => backward_cell::<RnnRelu, T>(params, inputs, tape, dy, &mut grads, Some(&mut record)),
    }
    record
}

/// Forward, loss and backward in one call: (tape, loss, gradients).
pub fn gradients<T: Scalar>(params: &Params<T>, inputs: &Inputs<T>, targets: &Targets<T>) -> (Tape<T>, T, Grads<T>) {
    let tape = forward(params, inputs);
    let (loss, dy) = loss_and_grad(&tape.y, targets);
    let grads = backward(params, inputs, &tape, &dy);
    (tape, loss, grads)
}

/// ∂s_t/∂s_{t-1} of `layer` at step `t` (1..=T) for sequence `b` (THEORY.md §4).
pub fn step_jacobian<T: Scalar>(params: &Params<T>, tape: &Tape<T>, layer: usize, t: usize, b: usize) -> DMatrix<T> {
    let step = tape.step(layer, t, b);
    let w = &params.layers()[layer].weight_hh;
    match params.kind() {
        CellKind::Rnn => Rnn::jacobian(&step, w),
        CellKind::Lstm => Lstm::jacobian(&step, w),
        CellKind::Gru => Gru::jacobian(&step, w),
        CellKind::RnnRelu => RnnRelu::jacobian(&step, w),
    }
}

#[inline]
fn col<T>(m: &DMatrix<T>, j: usize) -> &[T] {
    let r = m.nrows();
    &m.as_slice()[j * r..(j + 1) * r]
}

#[inline]
fn col_mut<T>(m: &mut DMatrix<T>, j: usize) -> &mut [T] {
    let r = m.nrows();
    &mut m.as_mut_slice()[j * r..(j + 1) * r]
}

/// One step's slices of the tape, batch columns from the step's first (`xp`, states before and
/// after, cache), each column H, CACHE·H or G·H values long.
struct StepSlices<'a, T> {
    xp: &'a [T],
    h_prev: &'a [T],
    c_prev: &'a [T],
    cache: &'a mut [T],
    h: &'a mut [T],
    c: &'a mut [T],
}

/// The cell's forward over the batch columns of one step (`hh` = W_hh h + b_hh, G·H × B).
#[inline(always)]
fn forward_columns<C: Cell, T: Scalar>(s: StepSlices<'_, T>, hh: &DMatrix<T>, hidden: usize, ch: usize) {
    let (g, k) = (C::GATES * hidden, C::CACHE * hidden);
    for b in 0..hh.ncols() {
        C::forward(
            &s.xp[b * g..(b + 1) * g],
            col(hh, b),
            &s.h_prev[b * hidden..(b + 1) * hidden],
            &s.c_prev[b * ch..(b + 1) * ch],
            &mut s.cache[b * k..(b + 1) * k],
            &mut s.h[b * hidden..(b + 1) * hidden],
            &mut s.c[b * ch..(b + 1) * ch],
        );
    }
}

/// [`forward_columns`] compiled for 256-bit vectors (AVX2) when the CPU has them, else as built.
/// The arithmetic is the same either way (no fused multiply-adds), so results do not change.
/// (One `with_avx2(|| …)` helper for both kernels was tried: the closure is not inlined into the
/// `#[target_feature]` function, so the kernels lost AVX2; each needs its own wrapper.)
fn forward_columns_dispatch<C: Cell, T: Scalar>(s: StepSlices<'_, T>, hh: &DMatrix<T>, hidden: usize, ch: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn wide<C: Cell, T: Scalar>(s: StepSlices<'_, T>, hh: &DMatrix<T>, hidden: usize, ch: usize) {
            forward_columns::<C, T>(s, hh, hidden, ch)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { wide::<C, T>(s, hh, hidden, ch) };
        }
    }
    forward_columns::<C, T>(s, hh, hidden, ch)
}

/// δh_t (total), δc_t in and the direct parts of δh_{t-1}, δc_{t-1} out, H × B each.
struct BackSlices<'a, T: Scalar> {
    dh: &'a DMatrix<T>,
    dc: &'a DMatrix<T>,
    dh_prev: &'a mut DMatrix<T>,
    dc_prev: &'a mut DMatrix<T>,
}

/// The cell's backward over the batch columns of step t of layer k, into columns of `da_ih`
/// (and `da_hh`).
#[inline(always)]
fn backward_columns<C: Cell, T: Scalar>(
    tape: &Tape<T>,
    (k, t): (usize, usize),
    s: BackSlices<'_, T>,
    da_ih: &mut DMatrix<T>,
    da_hh: &mut DMatrix<T>,
) {
    let batch = tape.batch;
    for b in 0..batch {
        let j = (t - 1) * batch + b;
        let da_hh_col: &mut [T] = if C::SPLIT_HH { col_mut(da_hh, j) } else { &mut [] };
        C::backward(
            &tape.step(k, t, b),
            col(s.dh, b),
            col(s.dc, b),
            col_mut(da_ih, j),
            da_hh_col,
            col_mut(s.dh_prev, b),
            col_mut(s.dc_prev, b),
        );
    }
}

/// [`backward_columns`] with AVX2 when the CPU has it, as [`forward_columns_dispatch`].
fn backward_columns_dispatch<C: Cell, T: Scalar>(
    tape: &Tape<T>,
    at: (usize, usize),
    s: BackSlices<'_, T>,
    da_ih: &mut DMatrix<T>,
    da_hh: &mut DMatrix<T>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn wide<C: Cell, T: Scalar>(
            tape: &Tape<T>,
            at: (usize, usize),
            s: BackSlices<'_, T>,
            da_ih: &mut DMatrix<T>,
            da_hh: &mut DMatrix<T>,
        ) {
            backward_columns::<C, T>(tape, at, s, da_ih, da_hh)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { wide::<C, T>(tape, at, s, da_ih, da_hh) };
        }
    }
    backward_columns::<C, T>(tape, at, s, da_ih, da_hh)
}

/// `m` as an r × c matrix: kept if it has that shape, else replaced (contents unspecified).
fn shaped<T: Scalar>(m: &mut DMatrix<T>, r: usize, c: usize) -> &mut DMatrix<T> {
    if m.shape() != (r, c) {
        *m = DMatrix::zeros(r, c);
    }
    m
}

/// Sets every column of `m` to `bias`.
fn fill_columns<T: Scalar>(m: &mut DMatrix<T>, bias: &DVector<T>) {
    for c in m.as_mut_slice().chunks_exact_mut(bias.len()) {
        c.copy_from_slice(bias.as_slice());
    }
}

fn forward_cell<C: Cell, T: Scalar>(params: &Params<T>, inputs: &Inputs<T>, tape: &mut Tape<T>) {
    let (steps, batch, hidden) = (inputs.steps, inputs.batch, params.hidden());
    let ch = if C::HAS_C { hidden } else { 0 };
    let one = T::one();
    let n_layers = params.layers().len();
    let empty = || LayerTape { hs: DMatrix::zeros(0, 0), cs: DMatrix::zeros(0, 0), cache: DMatrix::zeros(0, 0) };
    tape.layers.truncate(n_layers);
    tape.layers.resize_with(n_layers, empty);
    let mut hh = DMatrix::zeros(C::GATES * hidden, batch);
    for (k, lp) in params.layers().iter().enumerate() {
        let (below, this) = tape.layers.split_at_mut(k);
        let LayerTape { hs, cs, cache } = &mut this[0];
        let input = match below.last() {
            None => inputs.x.as_view(),
            Some(below) => below.hs.columns(batch, steps * batch),
        };
        // Where W_ih packs (batch > 1, more than a few inputs), x_t's projection step by step,
        // into one G·H × B block just before the cell reads it: a product over all steps writes
        // G·H × T·B values only to read them back. Else that product. Both kernels sum W_ih x_t
        // in the same order from b_ih: the same bits either way.
        let g = C::GATES * hidden;
        let w_ih = ReusedLeft::new(lp.weight_ih.as_view(), Op::N, batch, &mut tape.w_ih);
        let xp_per_step = w_ih.is_packed();
        let xp = shaped(&mut tape.xp, g, if xp_per_step { batch } else { steps * batch });
        if !xp_per_step {
            fill_columns(xp, &lp.bias_ih);
            w_ih.mul_add(input, xp.as_view_mut());
        }

        let hs = shaped(hs, hidden, (steps + 1) * batch);
        hs.columns_mut(0, batch).copy_from(&inputs.h0[k]);
        let cs = shaped(cs, ch, (steps + 1) * batch);
        if C::HAS_C {
            cs.columns_mut(0, batch).copy_from(&inputs.c0[k]);
        }
        let cache = shaped(cache, C::CACHE * hidden, steps * batch);
        let w_hh = ReusedLeft::new(lp.weight_hh.as_view(), Op::N, batch, &mut tape.w_hh);

        for t in 1..=steps {
            let prev = (t - 1) * batch;
            if xp_per_step {
                fill_columns(xp, &lp.bias_ih);
                w_ih.mul_add(input.columns(prev, batch), xp.as_view_mut());
            }
            fill_columns(&mut hh, &lp.bias_hh);
            w_hh.mul_add(hs.columns(prev, batch), hh.as_view_mut());
            // States before t on the left, state t onwards on the right.
            let (h_left, h_right) = hs.as_mut_slice().split_at_mut(t * batch * hidden);
            let (c_left, c_right) = cs.as_mut_slice().split_at_mut(t * batch * ch);
            let step = StepSlices {
                xp: &xp.as_slice()[if xp_per_step { 0 } else { prev * g }..],
                h_prev: &h_left[prev * hidden..],
                c_prev: &c_left[prev * ch..],
                cache: &mut cache.as_mut_slice()[prev * C::CACHE * hidden..],
                h: h_right,
                c: c_right,
            };
            forward_columns_dispatch::<C, T>(step, &hh, hidden, ch);
        }
    }
    let top = tape.layers.last().expect("a model has layers").hs.columns(batch, steps * batch);
    match params.head() {
        Some(head) => {
            let y = shaped(&mut tape.y, head.bias.len(), steps * batch);
            fill_columns(y, &head.bias);
            gemm(one, head.weight.as_view(), Op::N, top, Op::N, one, y.as_view_mut());
        }
        None => shaped(&mut tape.y, hidden, steps * batch).copy_from(&top),
    }
    (tape.kind, tape.steps, tape.batch, tape.hidden) = (params.kind(), steps, batch, hidden);
}

fn backward_cell<C: Cell, T: Scalar>(
    params: &Params<T>,
    inputs: &Inputs<T>,
    tape: &Tape<T>,
    dy: &DMatrix<T>,
    grads: &mut Grads<T>,
    mut record: Option<&mut Vec<StateGradients<T>>>,
) {
    let (steps, batch, hidden) = (tape.steps, tape.batch, tape.hidden);
    let ch = if C::HAS_C { hidden } else { 0 };
    let (zero, one) = (T::zero(), T::one());
    let n_layers = params.layers().len();
    let layout = |p: &Params<T>| (p.kind(), p.layers().len(), p.input(), p.hidden(), p.head().map(|h| h.bias.len()));
    if layout(&grads.params) != layout(params) {
        grads.params = params.zeros_like();
    }
    let Grads { params: gp, x: dx, h0, c0, scratch } = grads;
    let Scratch { da_ih, da_hh, from_above, to_below, w_hh_t } = scratch;

    // ∂L/∂h_t arriving from outside the recurrence: the head for the top layer.
    let from_above = shaped(from_above, hidden, steps * batch);
    match (params.head(), gp.head_mut()) {
        (Some(head), Some(gh)) => {
            gemm(one, dy.as_view(), Op::N, tape.output(), Op::T, zero, gh.weight.as_view_mut());
            gh.bias = dy.column_sum();
            gemm(one, head.weight.as_view(), Op::T, dy.as_view(), Op::N, zero, from_above.as_view_mut());
        }
        _ => from_above.copy_from(dy),
    }

    h0.resize(n_layers, DMatrix::zeros(0, 0));
    c0.resize(if C::HAS_C { n_layers } else { 0 }, DMatrix::zeros(0, 0));
    let g = C::GATES * hidden;
    let da_ih = shaped(da_ih, g, steps * batch);
    let da_hh = shaped(da_hh, if C::SPLIT_HH { g } else { 0 }, steps * batch);
    for k in (0..n_layers).rev() {
        let lp = &params.layers()[k];
        let mut dh = DMatrix::zeros(hidden, batch);
        let mut dh_prev = DMatrix::zeros(hidden, batch);
        let mut dh_total = DMatrix::zeros(hidden, batch);
        let mut dc = DMatrix::zeros(ch, batch);
        let mut dc_prev = DMatrix::zeros(ch, batch);
        let w_hh_t = ReusedLeft::new(lp.weight_hh.as_view(), Op::T, batch, w_hh_t);
        for t in (1..=steps).rev() {
            dh_total.copy_from(&from_above.columns((t - 1) * batch, batch));
            dh_total += &dh;
            if let Some(rec) = record.as_deref_mut() {
                rec[k].h.columns_mut(t * batch, batch).copy_from(&dh_total);
                rec[k].c.columns_mut(t * batch, batch).copy_from(&dc);
            }
            let back = BackSlices { dh: &dh_total, dc: &dc, dh_prev: &mut dh_prev, dc_prev: &mut dc_prev };
            backward_columns_dispatch::<C, T>(tape, (k, t), back, da_ih, da_hh);
            let da_rec = if C::SPLIT_HH { &*da_hh } else { &*da_ih };
            w_hh_t.mul_add(da_rec.columns((t - 1) * batch, batch), dh_prev.as_view_mut());
            std::mem::swap(&mut dh, &mut dh_prev);
            std::mem::swap(&mut dc, &mut dc_prev);
        }
        if let Some(rec) = record.as_deref_mut() {
            rec[k].h.columns_mut(0, batch).copy_from(&dh);
            rec[k].c.columns_mut(0, batch).copy_from(&dc);
        }
        h0[k] = dh;
        if C::HAS_C {
            c0[k] = dc;
        }

        let input = if k == 0 { inputs.x.as_view() } else { tape.layers[k - 1].hs.columns(batch, steps * batch) };
        let da_rec = if C::SPLIT_HH { &*da_hh } else { &*da_ih };
        let gl = &mut gp.layers_mut()[k];
        gemm(one, da_ih.as_view(), Op::N, input, Op::T, zero, gl.weight_ih.as_view_mut());
        gemm(
            one,
            da_rec.as_view(),
            Op::N,
            tape.layers[k].hs.columns(0, steps * batch),
            Op::T,
            zero,
            gl.weight_hh.as_view_mut(),
        );
        gl.bias_ih = da_ih.column_sum();
        // Without a split, b_hh enters exactly where b_ih does: the same sum, computed once.
        gl.bias_hh = if C::SPLIT_HH { da_hh.column_sum() } else { gl.bias_ih.clone() };
        // ∂L/∂(this layer's input): x for the bottom layer, else h_t of the layer below.
        let d_input = shaped(if k == 0 { &mut *dx } else { &mut *to_below }, input.nrows(), steps * batch);
        gemm(one, lp.weight_ih.as_view(), Op::T, da_ih.as_view(), Op::N, zero, d_input.as_view_mut());
        if k > 0 {
            std::mem::swap(from_above, to_below);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::InitSpec;
    use rand::SeedableRng;

    #[test]
    fn passes_into_used_buffers_equal_fresh_passes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for kind in CellKind::ALL {
            let small = InitSpec::default().build(kind, 1, 3, 4, &mut rng);
            let big = InitSpec::default().build(kind, 2, 5, 6, &mut rng);
            let x = |i: usize, cols: usize, phase: f64| {
                DMatrix::from_fn(i, cols, |r, c| (r as f64 + c as f64 * phase).sin())
            };
            let a = Inputs::with_zero_state(&small, x(3, 8, 0.3), 4, 2);
            let mut b = Inputs::with_zero_state(&big, x(5, 21, 0.7), 7, 3);
            b.h0[1] = DMatrix::from_element(6, 3, 0.25);
            let mut tape = forward(&small, &a);
            forward_into(&big, &b, &mut tape); // other shapes: buffers replaced
            let fresh = forward(&big, &b);
            let same = |t: &Tape<f64>| {
                (
                    t.y.clone(),
                    t.layers.iter().map(|l| (l.hs.clone(), l.cs.clone(), l.cache.clone())).collect::<Vec<_>>(),
                )
            };
            assert_eq!(same(&tape), same(&fresh), "{kind}");
            let dy = |t: &Tape<f64>| t.y.map(|v| v * 0.5 - 0.1);
            let mut grads = backward(&small, &a, &forward(&small, &a), &dy(&forward(&small, &a)));
            backward_into(&big, &b, &tape, &dy(&tape), &mut grads);
            let all = |g: &Grads<f64>| (g.params.to_tensors(), g.x.clone(), g.h0.clone(), g.c0.clone());
            assert_eq!(all(&grads), all(&backward(&big, &b, &fresh, &dy(&fresh))), "{kind}");
            b.x *= -0.5; // same shapes: buffers reused, every value rewritten
            forward_into(&big, &b, &mut tape);
            let fresh = forward(&big, &b);
            assert_eq!(same(&tape), same(&fresh), "{kind}");
            backward_into(&big, &b, &tape, &dy(&tape), &mut grads);
            assert_eq!(all(&grads), all(&backward(&big, &b, &fresh, &dy(&fresh))), "{kind}");
            assert_eq!((tape.steps, tape.batch, tape.hidden, tape.kind), (7, 3, 6, kind));
        }
    }

    #[test]
    fn repeated_passes_reuse_the_large_buffers() {
        // `forward_into` and `backward_into` promise not to touch fresh memory when the shapes
        // repeat: the T·B-wide buffers keep their addresses (an allocation would move one), as a
        // set, since the two buffers of ∂L/∂h from above and to below trade places per layer.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for kind in CellKind::ALL {
            for layers in [1, 2] {
                let params = InitSpec::default().build(kind, layers, 3, 4, &mut rng);
                let x = DMatrix::from_fn(3, 10, |r, c| ((r * 10 + c) as f64 * 0.3).sin());
                let inputs = Inputs::with_zero_state(&params, x, 5, 2);
                let mut tape = forward(&params, &inputs);
                let dy = tape.y.map(|v| 0.5 * v - 0.1);
                let mut grads = backward(&params, &inputs, &tape, &dy);
                let addresses = |t: &Tape<f64>, g: &Grads<f64>| {
                    let s = &g.scratch;
                    let mut all =
                        vec![t.xp.as_ptr(), t.y.as_ptr(), g.x.as_ptr(), s.da_ih.as_ptr(), s.from_above.as_ptr()];
                    all.extend(t.layers.iter().flat_map(|l| [l.hs.as_ptr(), l.cs.as_ptr(), l.cache.as_ptr()]));
                    all.extend([s.to_below.as_ptr(), s.da_hh.as_ptr()]);
                    all.sort();
                    all
                };
                let first = addresses(&tape, &grads);
                for _ in 0..2 {
                    forward_into(&params, &inputs, &mut tape);
                    backward_into(&params, &inputs, &tape, &dy, &mut grads);
                    assert_eq!(addresses(&tape, &grads), first, "{kind}, {layers} layers");
                }
            }
        }
    }

    /// The AVX2 build of the cells' kernels computes the same bits as the baseline build.
    fn wide_kernels_match<C: Cell>() {
        let (h, b, ch) = (37, 3, if C::HAS_C { 37 } else { 0 });
        let v = |n: usize, seed: f32| (0..n).map(|i| ((i as f32 + seed) * 0.77).sin() * 4.0).collect::<Vec<f32>>();
        let xp = v(C::GATES * h * b, 0.1);
        let hh = DMatrix::from_vec(C::GATES * h, b, v(C::GATES * h * b, 0.2));
        let (h_prev, c_prev) = (v(h * b, 0.3), v(ch * b, 0.4));
        let run = |wide: bool| {
            let (mut cache, mut hn, mut cn) = (vec![0.0; C::CACHE * h * b], vec![0.0; h * b], vec![0.0; ch * b]);
            let s = StepSlices { xp: &xp, h_prev: &h_prev, c_prev: &c_prev, cache: &mut cache, h: &mut hn, c: &mut cn };
            if wide {
                forward_columns_dispatch::<C, f32>(s, &hh, h, ch)
            } else {
                forward_columns::<C, f32>(s, &hh, h, ch)
            }
            [cache, hn, cn].concat().iter().map(|x| x.to_bits()).collect::<Vec<u32>>()
        };
        assert_eq!(run(true), run(false));
    }

    #[test]
    fn wide_forward_kernels_compute_the_same_bits() {
        wide_kernels_match::<Rnn>();
        wide_kernels_match::<Lstm>();
        wide_kernels_match::<Gru>();
    }
}
