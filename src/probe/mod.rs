//! Gradient-flow probes (THEORY.md §4–5) of one layer's recurrence for one sequence of a tape:
//! norms of ∂h_T/∂h_s for every s (and for the LSTM ∂c_T/∂c_s, the full state map and
//! `dc_total`), the back-propagated error signal, the seed-001 decomposition of ∂c_t/∂c_{t-1},
//! and the Lyapunov spectrum. Products are accumulated backwards, P_s = P_{s+1} J_{s+1} from
//! P_T = I, rescaled every step with the log of the scale kept aside, so every log-norm stays
//! exact where the plain number would be 0 or inf. All probe arithmetic is f64.

pub mod norms;

use crate::bptt::{Tape, step_jacobian};
use crate::cell::{CellKind, Lstm};
use crate::linalg::{Op, PackedMatrix, ReusedLeft, gemm};
use crate::params::Params;
use crate::scalar::Scalar;
use nalgebra::{DMatrix, DMatrixView, DVector};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// One norm of one Jacobian product: a row of `probe.csv`. Norms past f64's range are 0 or inf;
/// their natural logs stay exact.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowRow {
    pub cell: &'static str,
    pub batch: usize,
    /// s: the earlier state, 0..=T.
    pub step: usize,
    /// T - s.
    pub distance: usize,
    pub quantity: Quantity,
    pub spectral_norm: f64,
    pub frobenius_norm: f64,
    pub log_spectral_norm: f64,
    pub log_frobenius_norm: f64,
    pub layer: usize,
}

/// One term of the LSTM split of ∂c_t/∂c_{t-1}: a row of `decomp.csv`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecompRow {
    pub batch: usize,
    /// t, 2..=T.
    pub step: usize,
    pub term: Term,
    pub spectral_norm: f64,
    pub frobenius_norm: f64,
    /// Mean of |diagonal entries|.
    pub mean_abs_diag: f64,
    pub layer: usize,
}

/// One Lyapunov exponent: a row of `lyapunov.csv`, index 0 the largest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LyapunovRow {
    pub cell: &'static str,
    pub batch: usize,
    pub index: usize,
    pub exponent: f64,
    /// Standard error from block averages ([`LyapunovEstimate::se`]); empty with < 2 blocks.
    pub lyapunov_se: Option<f64>,
    pub layer: usize,
}

/// A Jacobian-product quantity (THEORY.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// ∂h_T/∂h_s (LSTM: c_s held fixed).
    Dh,
    /// ∂c_T/∂c_s with h_s held fixed (LSTM).
    Dc,
    /// ∂(h_T, c_T)/∂(h_s, c_s), the exact state map (LSTM).
    Dstate,
    /// ∂c_T/∂c_s with h_s = o_s ⊙ tanh(c_s) moving with c_s (LSTM, s ≥ 1).
    DcTotal,
    /// ∂L/∂h_s for a loss at the last step (a vector).
    Err,
}

impl Quantity {
    /// The Jacobian-product quantities, in row order.
    pub const PRODUCTS: [Quantity; 4] = [Quantity::Dh, Quantity::Dc, Quantity::Dstate, Quantity::DcTotal];

    /// The quantity a cell's headline numbers use: its full state map (the LSTM's (h, c)).
    pub fn headline(cell: CellKind) -> Quantity {
        if cell == CellKind::Lstm { Quantity::Dstate } else { Quantity::Dh }
    }

    pub fn name(self) -> &'static str {
        match self {
            Quantity::Dh => "dh",
            Quantity::Dc => "dc",
            Quantity::Dstate => "dstate",
            Quantity::DcTotal => "dc_total",
            Quantity::Err => "err",
        }
    }

    /// A label for charts, in plain text.
    pub fn label(self) -> &'static str {
        match self {
            Quantity::Dh => "dh_T/dh_s",
            Quantity::Dc => "dc_T/dc_s (h_s fixed)",
            Quantity::Dstate => "d(h,c)_T/d(h,c)_s",
            Quantity::DcTotal => "dc_T/dc_s (total)",
            Quantity::Err => "dL/dh_s",
        }
    }
}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A term of the seed-001 split ∂c_t/∂c_{t-1} = F + T_f + T_i + T_g.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Term {
    /// diag(f_t), the forget gate.
    F,
    /// The path through f.
    Tf,
    /// The path through i.
    Ti,
    /// The path through g.
    Tg,
    /// T_f + T_i + T_g.
    #[serde(rename = "nonF")]
    NonF,
    /// All four: ∂c_t/∂c_{t-1} itself.
    #[serde(rename = "sum")]
    Sum,
}

impl Term {
    pub const ALL: [Term; 6] = [Term::F, Term::Tf, Term::Ti, Term::Tg, Term::NonF, Term::Sum];

    pub fn name(self) -> &'static str {
        match self {
            Term::F => "F",
            Term::Tf => "Tf",
            Term::Ti => "Ti",
            Term::Tg => "Tg",
            Term::NonF => "nonF",
            Term::Sum => "sum",
        }
    }
}

impl std::fmt::Display for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Warm-start state for the spectral norm of one quantity across steps.
type Warm = Option<DMatrix<f64>>;

/// Where a row belongs: cell, layer, sequence, step s and length T.
#[derive(Clone, Copy)]
struct At {
    cell: CellKind,
    layer: usize,
    batch: usize,
    step: usize,
    steps: usize,
}

impl At {
    /// Norms of `exp(log_scale)·m` as a row (the log columns computed from the scaled matrix).
    fn row(self, quantity: Quantity, m: DMatrixView<'_, f64>, log_scale: f64, warm: &mut Warm) -> FlowRow {
        let (amax, frobenius) = norms::amax_frobenius(m);
        let log_spec = log_scale + norms::spectral(m, amax, warm).ln();
        let log_frob = log_scale + frobenius.ln();
        FlowRow {
            cell: self.cell.name(),
            batch: self.batch,
            step: self.step,
            distance: self.steps - self.step,
            quantity,
            spectral_norm: log_spec.exp(),
            frobenius_norm: log_frob.exp(),
            log_spectral_norm: log_spec,
            log_frobenius_norm: log_frob,
            layer: self.layer,
        }
    }
}

fn jacobian_f64<T: Scalar>(params: &Params<T>, tape: &Tape<T>, layer: usize, t: usize, b: usize) -> DMatrix<f64> {
    step_jacobian(params, tape, layer, t, b).map(|v| v.as_f64())
}

/// Norms of ∂h_T/∂h_s for s = 0..=T (`dh`), and for the LSTM also `dc`, `dstate` and `dc_total`
/// (s ≥ 1), ordered by step then quantity; only the quantities named in `which` (LSTM-only ones
/// are skipped for other cells).
///
/// Each step computes the norms of P_s alongside P_{s-1} = P_s J_s (`rayon::join`, with the
/// product's GEMM split by rows), so with two rayon threads both cores share the work; the rows
/// are the same on any number of threads.
pub fn jacobian_flow<T: Scalar>(
    params: &Params<T>,
    tape: &Tape<T>,
    layer: usize,
    b: usize,
    which: &[Quantity],
) -> Vec<FlowRow> {
    // On a worker thread of the pool (`scope` moves there), each join below is a cheap push.
    rayon::scope(|_| {
        let n = tape.state_size();
        let (mut p, mut log_scale, mut next) = (DMatrix::identity(n, n), 0.0, DMatrix::zeros(n, n));
        let w_hh = match tape.kind {
            CellKind::Rnn | CellKind::RnnRelu => params.layers()[layer].weight_hh.map(|v| v.as_f64()),
            _ => DMatrix::zeros(0, 0),
        };
        let mut packed = PackedMatrix::default();
        let mut stepper = Stepper::new(params, tape, (layer, b), &w_hh, &mut packed);
        let mut warm: [Warm; 4] = Default::default();
        let mut per_step: Vec<Vec<FlowRow>> = Vec::with_capacity(tape.steps + 1);
        for s in (0..=tape.steps).rev() {
            let (rows, next_log_scale) = rayon::join(
                || flow_rows(tape, (layer, b, s), which, &p, log_scale, &mut warm),
                || (s > 0).then(|| stepper.preceding(s, &p, log_scale, &mut next)),
            );
            per_step.push(rows);
            if let Some(l) = next_log_scale {
                std::mem::swap(&mut p, &mut next);
                log_scale = l;
            }
        }
        per_step.into_iter().rev().flatten().collect()
    })
}

/// Steps the product P_s = exp(log_scale)·m back by P_{s-1} = P_s J_s, in its own buffers. Each
/// step folds 1/max|m| into the product, so m stays near unit size. The tanh RNN's m is carried
/// transposed, m = P_sᵀ (same norms): P_{s-1}ᵀ = W_hhᵀ·diag(tanh'(a_s))·P_sᵀ has the fixed left
/// factor W_hhᵀ, packed once ([`ReusedLeft`]).
struct Stepper<'a, T: Scalar> {
    params: &'a Params<T>,
    tape: &'a Tape<T>,
    layer: usize,
    batch: usize,
    /// J_s, the LSTM's left factor [P_h diag(β) | Q], or the RNN's diag(tanh'(a_s))·P_sᵀ.
    work: DMatrix<f64>,
    /// The LSTM's [U_o; A].
    stacked: DMatrix<f64>,
    /// The RNN's W_hhᵀ in f64, ready for products.
    w_hh_t: Option<ReusedLeft<'a, f64>>,
}

impl<'a, T: Scalar> Stepper<'a, T> {
    /// A stepper for sequence `batch` of `layer`; for the RNN, `w_hh` is its W_hh in f64 and
    /// `buf` holds W_hhᵀ packed.
    fn new(
        params: &'a Params<T>,
        tape: &'a Tape<T>,
        (layer, batch): (usize, usize),
        w_hh: &'a DMatrix<f64>,
        buf: &'a mut PackedMatrix<f64>,
    ) -> Self {
        let n = tape.state_size();
        let stacked = if tape.kind == CellKind::Lstm { DMatrix::zeros(n, tape.hidden) } else { DMatrix::zeros(0, 0) };
        let elman = matches!(tape.kind, CellKind::Rnn | CellKind::RnnRelu);
        let w_hh_t = elman.then(|| ReusedLeft::new(w_hh.as_view(), Op::T, n, buf));
        Stepper { params, tape, layer, batch, work: DMatrix::zeros(n, n), stacked, w_hh_t }
    }

    /// Writes m' of P_{s-1} = exp(log_scale')·m' into `next` (s ≥ 1) and returns log_scale'.
    fn preceding(&mut self, s: usize, m: &DMatrix<f64>, log_scale: f64, next: &mut DMatrix<f64>) -> f64 {
        let (tape, n) = (self.tape, m.nrows());
        let scale = norms::amax(m.as_view());
        let (alpha, log_scale) =
            if scale > 0.0 && scale.is_finite() { (1.0 / scale, log_scale + scale.ln()) } else { (1.0, log_scale) };
        let (step, w_hh) = (tape.step(self.layer, s, self.batch), &self.params.layers()[self.layer].weight_hh);
        let work = &mut self.work;
        match (tape.kind, &self.w_hh_t) {
            (CellKind::Lstm, _) => lstm_left_mul(alpha, m, &step, w_hh, (work, &mut self.stacked), next),
            (CellKind::Rnn | CellKind::RnnRelu, Some(w_hh_t)) => {
                let d = step.block(0);
                for (out, col) in work.as_mut_slice().chunks_exact_mut(n).zip(m.as_slice().chunks_exact(n)) {
                    out.iter_mut().zip(col).zip(d).for_each(|((o, &x), &di)| *o = (alpha * di.as_f64()) * x);
                }
                next.fill(0.0);
                w_hh_t.mul_add(work.as_view(), next.as_view_mut());
            }
            _ => {
                work.zip_apply(&step_jacobian(self.params, tape, self.layer, s, self.batch), |w, v| *w = v.as_f64());
                gemm(alpha, m.as_view(), Op::N, work.as_view(), Op::N, 0.0, next.as_view_mut());
            }
        }
        log_scale
    }
}

/// The rows of step s (`at` = (layer, b, s)) from P_s = exp(log_scale)·m.
fn flow_rows<T: Scalar>(
    tape: &Tape<T>,
    (layer, b, s): (usize, usize, usize),
    which: &[Quantity],
    m: &DMatrix<f64>,
    log_scale: f64,
    [w_h, w_c, w_s, w_t]: &mut [Warm; 4],
) -> Vec<FlowRow> {
    let want = |q: Quantity| which.contains(&q);
    let (h, kind) = (tape.hidden, tape.kind);
    let at = At { cell: kind, layer, batch: b, step: s, steps: tape.steps };
    let mut rows = Vec::with_capacity(4);
    if want(Quantity::Dh) {
        rows.push(at.row(Quantity::Dh, m.view((0, 0), (h, h)), log_scale, w_h));
    }
    if kind == CellKind::Lstm {
        if want(Quantity::Dc) {
            rows.push(at.row(Quantity::Dc, m.view((h, h), (h, h)), log_scale, w_c));
        }
        if want(Quantity::Dstate) {
            rows.push(at.row(Quantity::Dstate, m.as_view(), log_scale, w_s));
        }
        if s >= 1 && want(Quantity::DcTotal) {
            // dc_total = P_ch·diag(D_s) + P_cc: c_s moves h_s = o_s ⊙ tanh(c_s) with it.
            let d = Lstm::dh_dc(&tape.step(layer, s, b));
            let total = DMatrix::from_fn(h, h, |i, j| m[(h + i, j)] * d[j].as_f64() + m[(h + i, h + j)]);
            rows.push(at.row(Quantity::DcTotal, total.as_view(), log_scale, w_t));
        }
    }
    rows
}

/// `out = alpha·P·J_t` for an LSTM step without forming J_t (half the flops of the dense
/// product): with Q = P_h diag(E) + P_c, P·J = [[P_h diag(β) | Q]·[U_o; A], Q diag(f)]
/// (factors of [`Lstm::jacobian_factors`]). `left` (n × 2H) and `stacked` (2H × H) are workspaces.
fn lstm_left_mul<T: Scalar>(
    alpha: f64,
    p: &DMatrix<f64>,
    step: &crate::cell::StepRef<T>,
    w_hh: &DMatrix<T>,
    (left, stacked): (&mut DMatrix<f64>, &mut DMatrix<f64>),
    out: &mut DMatrix<f64>,
) {
    let (n, h) = (p.nrows(), step.hidden);
    let (beta, e, f) = Lstm::jacobian_factors(step, w_hh, stacked);
    let (p_h, p_c) = p.as_slice().split_at(n * h);
    let (l_h, l_q) = left.as_mut_slice().split_at_mut(n * h);
    for j in 0..h {
        let (b, ej) = (alpha * beta[j], alpha * e[j]);
        let cols = j * n..(j + 1) * n;
        let (ph, pc) = (&p_h[cols.clone()], &p_c[cols.clone()]);
        for (l, &x) in l_h[cols.clone()].iter_mut().zip(ph) {
            *l = x * b;
        }
        for ((l, &x), &y) in l_q[cols].iter_mut().zip(ph).zip(pc) {
            *l = x * ej + alpha * y;
        }
    }
    gemm(1.0, left.as_view(), Op::N, stacked.as_view(), Op::N, 0.0, out.columns_mut(0, h));
    let (_, out_c) = out.as_mut_slice().split_at_mut(n * h);
    let (_, l_q) = left.as_slice().split_at(n * h);
    for ((o, q), &fj) in out_c.chunks_exact_mut(n).zip(l_q.chunks_exact(n)).zip(&f) {
        for (o, &q) in o.iter_mut().zip(q) {
            *o = q * fj;
        }
    }
}

/// The back-propagated error signal ‖∂L/∂h_s‖₂, s = 0..=T, for a loss at the last step whose
/// gradient with respect to h_T is `g` (H values; for the LSTM δc_T = 0). Quantity `err`; both
/// norm columns hold the vector's 2-norm.
pub fn error_signal<T: Scalar>(params: &Params<T>, tape: &Tape<T>, layer: usize, b: usize, g: &[f64]) -> Vec<FlowRow> {
    let (steps, h, kind) = (tape.steps, tape.hidden, tape.kind);
    let mut rows = Vec::with_capacity(steps + 1);
    for (s, log_scale, v) in error_vectors(params, tape, layer, b, g) {
        let hv = DMatrix::from_column_slice(h, 1, v.rows(0, h).as_slice());
        rows.push(At { cell: kind, layer, batch: b, step: s, steps }.row(
            Quantity::Err,
            hv.as_view(),
            log_scale,
            &mut None,
        ));
    }
    rows.reverse();
    rows
}

/// As [`error_signal`], the natural log of the norm of the whole state's gradient: ∂L/∂(h_s, c_s)
/// for the LSTM (what reaches the step's parameters), ∂L/∂h_s for other cells; s = 0..=T.
pub fn state_error_signal<T: Scalar>(
    params: &Params<T>,
    tape: &Tape<T>,
    layer: usize,
    b: usize,
    g: &[f64],
) -> Vec<f64> {
    let mut logs: Vec<f64> = error_vectors(params, tape, layer, b, g)
        .into_iter()
        .map(|(_, log_scale, v)| log_scale + v.norm().ln())
        .collect();
    logs.reverse();
    logs
}

/// (s, log_scale, v) for s = T down to 0, with ∂L/∂s_s = exp(log_scale)·v: the state gradient
/// v_{s-1} = J_sᵀ v_s from v_T = (g, 0), rescaled to max |v| = 1 at every step.
fn error_vectors<T: Scalar>(
    params: &Params<T>,
    tape: &Tape<T>,
    layer: usize,
    b: usize,
    g: &[f64],
) -> Vec<(usize, f64, DVector<f64>)> {
    let (steps, h) = (tape.steps, tape.hidden);
    let mut v = DVector::zeros(tape.state_size());
    v.rows_mut(0, h).copy_from_slice(g);
    let mut log_scale = 0.0;
    let mut out = Vec::with_capacity(steps + 1);
    for s in (0..=steps).rev() {
        if s < steps {
            v = jacobian_f64(params, tape, layer, s + 1, b).tr_mul(&v);
            let m = v.amax();
            if m > 0.0 && m.is_finite() {
                v /= m;
                log_scale += m.ln();
            }
        }
        out.push((s, log_scale, v.clone()));
    }
    out
}

/// Where Benettin's method starts: Q_0 = I (the first k state coordinates, h first) or a random
/// orthonormal n×k matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Q0 {
    Identity,
    Random,
}

/// How to estimate Lyapunov exponents (THEORY.md §5). Two legitimate conventions: finite-time
/// exponents of the given sequence (Q_0 = I, no burn-in: [`LyapunovOptions::finite_time`]) and
/// estimates of the asymptotic exponents (random Q_0, a burn-in long enough for Q to align with
/// the slow directions).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LyapunovOptions {
    /// How many leading exponents (`None`: all n).
    pub count: Option<usize>,
    /// Steps run (Q carried along) before ln|R_ii| is accumulated; must be < T.
    pub burn_in: usize,
    pub q0: Q0,
    /// Seed of the random Q_0's stream (ChaCha8); unused for Q_0 = I.
    pub seed: u64,
}

impl LyapunovOptions {
    /// The finite-time exponents of the given sequence: Q_0 = I, no burn-in.
    pub fn finite_time(count: Option<usize>) -> Self {
        LyapunovOptions { count, burn_in: 0, q0: Q0::Identity, seed: 0 }
    }
}

/// Lyapunov exponents (per step, descending) with standard errors from block averages.
#[derive(Clone, Debug, PartialEq)]
pub struct LyapunovEstimate {
    pub exponents: Vec<f64>,
    /// The T' = T − burn-in accumulated steps split into `BLOCKS` consecutive blocks (10, or T'
    /// when shorter): the standard deviation of the per-block exponents over √blocks; `None`
    /// with fewer than two blocks. Block means of a chaotic or slowly mixing sequence are
    /// correlated, so this is a lower bound on the error when blocks are short.
    pub se: Vec<Option<f64>>,
}

/// Blocks for the Lyapunov standard error.
const LYAPUNOV_BLOCKS: usize = 10;

/// The leading Lyapunov exponents of the layer's state map along sequence `b` by Benettin's QR
/// method: Q_t R_t = qr(J_t Q_{t-1}), λ_i = mean of ln|R_t[i,i]| over the steps after the
/// burn-in, sorted descending. With k < n exponents the QR is of n×k matrices, k/n of the cost.
/// Panics if `burn_in ≥ T` (callers validate it).
pub fn lyapunov<T: Scalar>(
    params: &Params<T>,
    tape: &Tape<T>,
    layer: usize,
    b: usize,
    opts: &LyapunovOptions,
) -> LyapunovEstimate {
    assert!(opts.burn_in < tape.steps, "burn-in {} must be shorter than T = {}", opts.burn_in, tape.steps);
    let n = tape.state_size();
    let k = opts.count.unwrap_or(n).min(n);
    let mut q = match opts.q0 {
        Q0::Identity => DMatrix::<f64>::identity(n, k),
        Q0::Random => {
            let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
            DMatrix::from_fn(n, k, |_, _| StandardNormal.sample(&mut rng)).qr().q()
        }
    };
    let kept = tape.steps - opts.burn_in;
    let blocks = LYAPUNOV_BLOCKS.min(kept);
    let mut per_block = vec![vec![0.0; k]; blocks];
    for t in 1..=tape.steps {
        let qr = (jacobian_f64(params, tape, layer, t, b) * &q).qr();
        if t > opts.burn_in {
            let block = (t - opts.burn_in - 1) * blocks / kept;
            for (sum, r) in per_block[block].iter_mut().zip(qr.r().diagonal().iter()) {
                *sum += r.abs().ln();
            }
        }
        q = qr.q();
    }
    // Block j holds the steps i (0-based after the burn-in) with ⌊i·blocks/kept⌋ = j.
    let block_len = |j: usize| ((j + 1) * kept).div_ceil(blocks) - (j * kept).div_ceil(blocks);
    let mut pairs: Vec<(f64, Option<f64>)> = (0..k)
        .map(|i| {
            let total: f64 = per_block.iter().map(|s| s[i]).sum();
            let means: Vec<f64> = per_block.iter().enumerate().map(|(j, s)| s[i] / block_len(j) as f64).collect();
            let se = (blocks > 1).then(|| crate::estimate::mean_sd(&means).1 / (blocks as f64).sqrt());
            (total / kept as f64, se)
        })
        .collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (exponents, se) = pairs.into_iter().unzip();
    LyapunovEstimate { exponents, se }
}

/// The full Lyapunov spectrum as rows.
pub fn lyapunov_rows<T: Scalar>(
    params: &Params<T>,
    tape: &Tape<T>,
    layer: usize,
    b: usize,
    opts: &LyapunovOptions,
) -> Vec<LyapunovRow> {
    let est = lyapunov(params, tape, layer, b, opts);
    est.exponents
        .into_iter()
        .zip(est.se)
        .enumerate()
        .map(|(index, (exponent, lyapunov_se))| LyapunovRow {
            cell: tape.kind.name(),
            batch: b,
            index,
            exponent,
            lyapunov_se,
            layer,
        })
        .collect()
}

/// The seed-001 decomposition ∂c_t/∂c_{t-1} = F + T_f + T_i + T_g of an LSTM layer for
/// t = 2..=T, with norms of each term, of nonF = T_f + T_i + T_g and of the sum.
///
/// Single-step terms change too much from step to step for a warm start to help, so their
/// spectral norms come from a fresh Lanczos process each ([`norms::spectral_once`]), and the
/// steps, being independent, run in parallel.
pub fn lstm_decomposition<T: Scalar>(params: &Params<T>, tape: &Tape<T>, layer: usize, b: usize) -> Vec<DecompRow> {
    assert_eq!(tape.kind, CellKind::Lstm, "the decomposition is defined for the LSTM");
    let w = &params.layers()[layer].weight_hh;
    let per_step: Vec<Vec<DecompRow>> = (2..=tape.steps)
        .into_par_iter()
        .map(|t| {
            let [f, tf, ti, tg] = Lstm::dc_decomposition(&tape.step(layer, t, b), &tape.step(layer, t - 1, b), w)
                .map(|m| m.map(|v| v.as_f64()));
            let non_f = &tf + &ti + &tg;
            let sum = &f + &non_f;
            let terms = [&f, &tf, &ti, &tg, &non_f, &sum];
            Term::ALL
                .into_iter()
                .zip(terms)
                .map(|(term, m)| {
                    let (amax, frobenius_norm) = norms::amax_frobenius(m.as_view());
                    // F is diagonal: its spectral norm is its largest |entry|.
                    let spectral_norm = if term == Term::F { amax } else { norms::spectral_once(m.as_view(), amax) };
                    DecompRow {
                        batch: b,
                        step: t,
                        term,
                        spectral_norm,
                        frobenius_norm,
                        mean_abs_diag: m.diagonal().abs().mean(),
                        layer,
                    }
                })
                .collect()
        })
        .collect();
    per_step.into_iter().flatten().collect()
}

/// How far the forget gate dominates ∂c_t/∂c_{t-1} over a sequence (THEORY.md §5), from the
/// rows of one [`lstm_decomposition`] (one layer and sequence).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FDominance {
    /// Share of steps t with ‖F‖₂ ≥ ‖T_f + T_i + T_g‖₂ (‖F‖₂ = max_i f_i: one unit's gate).
    pub f_dominant_frac: f64,
    /// Median over t of ‖T_f + T_i + T_g‖₂ / ‖F‖₂.
    pub nonf_over_f_median: f64,
    /// Its maximum over t.
    pub nonf_over_f_max: f64,
    /// Median over t of ‖T_f + T_i + T_g‖₂ / mean_i f_i: the same comparison against the typical
    /// unit's gate rather than the largest one.
    pub nonf_over_fmean_median: f64,
    /// The term of F, T_f, T_i, T_g with the largest spectral norm at the most steps (ties go to
    /// the earlier term in that order, at a step and over the steps).
    pub dominant_term: Term,
}

/// The [`FDominance`] of one sequence's decomposition rows; `None` without rows (T < 2).
pub fn f_dominance(rows: &[DecompRow]) -> Option<FDominance> {
    let mut steps: Vec<usize> = rows.iter().map(|r| r.step).collect();
    steps.dedup();
    let norm = |t: usize, term: Term| rows.iter().find(|r| r.step == t && r.term == term);
    let mut ratios = Vec::with_capacity(steps.len());
    let mut ratios_mean = Vec::with_capacity(steps.len());
    let mut dominant = 0usize;
    let mut largest = [0usize; 4];
    for &t in &steps {
        let (f, non_f) = (norm(t, Term::F)?, norm(t, Term::NonF)?);
        ratios.push(non_f.spectral_norm / f.spectral_norm);
        ratios_mean.push(non_f.spectral_norm / f.mean_abs_diag);
        dominant += usize::from(f.spectral_norm >= non_f.spectral_norm);
        let terms = [Term::F, Term::Tf, Term::Ti, Term::Tg].map(|x| norm(t, x).map_or(0.0, |r| r.spectral_norm));
        let top = (0..4).fold(0, |best, i| if terms[i] > terms[best] { i } else { best });
        largest[top] += 1;
    }
    if steps.is_empty() {
        return None;
    }
    let top = (0..4).fold(0, |best, i| if largest[i] > largest[best] { i } else { best });
    Some(FDominance {
        f_dominant_frac: dominant as f64 / steps.len() as f64,
        nonf_over_f_median: crate::estimate::median(&ratios),
        nonf_over_f_max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        nonf_over_fmean_median: crate::estimate::median(&ratios_mean),
        dominant_term: [Term::F, Term::Tf, Term::Ti, Term::Tg][top],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bptt::{Inputs, forward};
    use crate::init::InitSpec;
    use rand::SeedableRng;

    #[test]
    fn flow_rows_are_the_same_on_one_thread_and_two() {
        for kind in CellKind::ALL {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
            let params = InitSpec::default().build(kind, 1, 5, 70, &mut rng);
            let x = DMatrix::from_fn(5, 40, |i, j| ((i * 3 + j) as f64 * 0.7).sin());
            let tape = forward(&params, &Inputs::with_zero_state(&params, x, 20, 2));
            let pool = |threads| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let one = pool(1).install(|| jacobian_flow(&params, &tape, 0, 1, &Quantity::PRODUCTS));
            let two = pool(2).install(|| jacobian_flow(&params, &tape, 0, 1, &Quantity::PRODUCTS));
            assert_eq!(one.len(), if kind == CellKind::Lstm { 21 * 3 + 20 } else { 21 });
            assert_eq!(one, two, "{kind}");
            assert!(one.iter().all(|r| r.spectral_norm.is_finite() && r.spectral_norm > 0.0));
        }
    }

    #[test]
    fn lyapunov_standard_error_is_that_of_the_block_means() {
        // One unit: ln|R_tt| = ln|J_t|, so the exponent is the mean of the per-step logs and its
        // standard error the sample sd of the block means over √blocks. 23 kept steps in 10
        // blocks of unequal length (2 or 3), so a wrong block length moves the answer.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let params = InitSpec::default().build(CellKind::Rnn, 1, 1, 1, &mut rng);
        let x = DMatrix::from_fn(1, 23, |_, t| 2.0 * (t as f64 * 1.3).sin());
        let tape = forward(&params, &Inputs::with_zero_state(&params, x, 23, 1));
        let logs: Vec<f64> = (1..=23).map(|t| step_jacobian(&params, &tape, 0, t, 0)[(0, 0)].abs().ln()).collect();
        assert!(logs.iter().all(|l| l.is_finite()), "{logs:?}");
        let blocks = LYAPUNOV_BLOCKS;
        let means: Vec<f64> = (0..blocks)
            .map(|j| {
                let block: Vec<f64> = (0..23).filter(|i| i * blocks / 23 == j).map(|i| logs[i]).collect();
                block.iter().sum::<f64>() / block.len() as f64
            })
            .collect();
        let grand = means.iter().sum::<f64>() / blocks as f64;
        let sd = (means.iter().map(|m| (m - grand).powi(2)).sum::<f64>() / (blocks - 1) as f64).sqrt();
        let est = lyapunov(&params, &tape, 0, 0, &LyapunovOptions::finite_time(None));
        let mean = logs.iter().sum::<f64>() / 23.0;
        assert!((est.exponents[0] - mean).abs() < 1e-14, "{} vs {mean}", est.exponents[0]);
        let se = est.se[0].expect("10 blocks give a standard error");
        assert!(sd > 0.01 && (se / (sd / (blocks as f64).sqrt()) - 1.0).abs() < 1e-12, "{se} vs sd {sd}");
        // One kept step is one block: no standard error.
        let last =
            lyapunov(&params, &tape, 0, 0, &LyapunovOptions { burn_in: 22, ..LyapunovOptions::finite_time(None) });
        assert!((last.exponents[0] - logs[22]).abs() < 1e-14 && last.se == [None]);
    }

    #[test]
    fn names_are_the_csv_values_and_labels_tell_quantities_apart() {
        // Reports and charts name a quantity or term as its CSV column value does.
        let quantities = [Quantity::Dh, Quantity::Dc, Quantity::Dstate, Quantity::DcTotal, Quantity::Err];
        for q in quantities {
            assert_eq!(q.to_string(), csv_text(q), "{q:?}");
        }
        for t in Term::ALL {
            assert_eq!(t.to_string(), csv_text(t), "{t:?}");
        }
        let labels: Vec<&str> = quantities.map(Quantity::label).into();
        assert!(labels.iter().all(|l| !l.is_empty()), "{labels:?}");
        let distinct: std::collections::BTreeSet<&&str> = labels.iter().collect();
        assert_eq!(distinct.len(), labels.len(), "{labels:?}");
    }

    #[test]
    fn f_dominance_summarises_hand_made_rows() {
        // Four steps with norms (F, T_f, T_i, T_g, nonF) and F's mean |diagonal|. F dominates
        // nonF at steps 2, 4 and 5. The largest term is T_i at step 2 and at step 3, where it
        // ties with T_g, and T_g at steps 4 and 5: ties go to the earlier term in the order F,
        // T_f, T_i, T_g, at a step and over the steps.
        let norms = [
            (2, [0.8, 0.2, 0.9, 0.1, 0.5], 0.4),
            (3, [0.4, 0.1, 0.6, 0.6, 0.9], 0.3),
            (4, [0.5, 0.05, 0.1, 0.7, 0.25], 0.2),
            (5, [0.4, 0.1, 0.2, 0.9, 0.36], 0.45),
        ];
        let rows: Vec<DecompRow> = norms
            .iter()
            .flat_map(|&(step, n, mean)| {
                Term::ALL.into_iter().zip([n[0], n[1], n[2], n[3], n[4], 1.5]).map(move |(term, norm)| DecompRow {
                    batch: 0,
                    step,
                    term,
                    spectral_norm: norm,
                    frobenius_norm: 2.0 * norm,
                    mean_abs_diag: if term == Term::F { mean } else { 0.0 },
                    layer: 0,
                })
            })
            .collect();
        let d = f_dominance(&rows).expect("four steps");
        assert_eq!(d.f_dominant_frac, 0.75);
        // Medians of (0.625, 2.25, 0.5, 0.9) and of (1.25, 3, 1.25, 0.8).
        assert!((d.nonf_over_f_median - 0.7625).abs() < 1e-15, "{}", d.nonf_over_f_median);
        assert_eq!(d.nonf_over_f_max, 0.9 / 0.4);
        assert_eq!(d.nonf_over_fmean_median, 0.5 / 0.4);
        assert_eq!(d.dominant_term, Term::Ti);
        assert_eq!(f_dominance(&[]), None);
    }

    fn csv_text<V: Serialize>(v: V) -> String {
        let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(vec![]);
        w.serialize([v]).unwrap();
        String::from_utf8(w.into_inner().unwrap()).unwrap().trim_end().to_string()
    }
}
