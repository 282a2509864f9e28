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
use rayon::prelude::*;
use serde::Serialize;

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
    /// `dh`, `dc`, `dstate`, `dc_total` or `err`.
    pub quantity: &'static str,
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
    /// `F`, `Tf`, `Ti`, `Tg`, `nonF` (= Tf + Ti + Tg) or `sum` (all four).
    pub term: &'static str,
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
    pub layer: usize,
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
    fn row(self, quantity: &'static str, m: DMatrixView<'_, f64>, log_scale: f64, warm: &mut Warm) -> FlowRow {
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

/// Every Jacobian-product quantity, in row order.
pub const QUANTITIES: [&str; 4] = ["dh", "dc", "dstate", "dc_total"];

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
    which: &[&str],
) -> Vec<FlowRow> {
    // On a worker thread of the pool (`scope` moves there), each join below is a cheap push.
    rayon::scope(|_| {
        let n = tape.state_size();
        let (mut p, mut log_scale, mut next) = (DMatrix::identity(n, n), 0.0, DMatrix::zeros(n, n));
        let w_hh = match tape.kind {
            CellKind::Rnn => params.layers()[layer].weight_hh.map(|v| v.as_f64()),
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
        let w_hh_t = (tape.kind == CellKind::Rnn).then(|| ReusedLeft::new(w_hh.as_view(), Op::T, n, buf));
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
            (CellKind::Rnn, Some(w_hh_t)) => {
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
    which: &[&str],
    m: &DMatrix<f64>,
    log_scale: f64,
    [w_h, w_c, w_s, w_t]: &mut [Warm; 4],
) -> Vec<FlowRow> {
    let want = |q: &str| which.contains(&q);
    let (h, kind) = (tape.hidden, tape.kind);
    let at = At { cell: kind, layer, batch: b, step: s, steps: tape.steps };
    let mut rows = Vec::with_capacity(4);
    if want("dh") {
        rows.push(at.row("dh", m.view((0, 0), (h, h)), log_scale, w_h));
    }
    if kind == CellKind::Lstm {
        if want("dc") {
            rows.push(at.row("dc", m.view((h, h), (h, h)), log_scale, w_c));
        }
        if want("dstate") {
            rows.push(at.row("dstate", m.as_view(), log_scale, w_s));
        }
        if s >= 1 && want("dc_total") {
            // dc_total = P_ch·diag(D_s) + P_cc: c_s moves h_s = o_s ⊙ tanh(c_s) with it.
            let d = Lstm::dh_dc(&tape.step(layer, s, b));
            let total = DMatrix::from_fn(h, h, |i, j| m[(h + i, j)] * d[j].as_f64() + m[(h + i, h + j)]);
            rows.push(at.row("dc_total", total.as_view(), log_scale, w_t));
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
/// gradient with respect to h_T is `g` (H values; for the LSTM with c_s held fixed). Quantity
/// `err`; both norm columns hold the vector's 2-norm.
pub fn error_signal<T: Scalar>(params: &Params<T>, tape: &Tape<T>, layer: usize, b: usize, g: &[f64]) -> Vec<FlowRow> {
    let (steps, h, kind) = (tape.steps, tape.hidden, tape.kind);
    let mut v = DVector::zeros(tape.state_size());
    v.rows_mut(0, h).copy_from_slice(g);
    let mut log_scale = 0.0;
    let mut rows = Vec::with_capacity(steps + 1);
    for s in (0..=steps).rev() {
        if s < steps {
            v = jacobian_f64(params, tape, layer, s + 1, b).tr_mul(&v);
            let m = v.amax();
            if m > 0.0 && m.is_finite() {
                v /= m;
                log_scale += m.ln();
            }
        }
        let hv = DMatrix::from_column_slice(h, 1, v.rows(0, h).as_slice());
        rows.push(At { cell: kind, layer, batch: b, step: s, steps }.row("err", hv.as_view(), log_scale, &mut None));
    }
    rows.reverse();
    rows
}

/// The leading `count` Lyapunov exponents (all with `None`) of the layer's state map along
/// sequence `b`, by Benettin's QR method from Q_0 = I over all T steps (no burn-in), per step,
/// sorted descending. With count k < n the QR is of n×k matrices, which costs k/n of the full one.
pub fn lyapunov<T: Scalar>(
    params: &Params<T>,
    tape: &Tape<T>,
    layer: usize,
    b: usize,
    count: Option<usize>,
) -> Vec<f64> {
    let n = tape.state_size();
    let k = count.unwrap_or(n).min(n);
    let mut q = DMatrix::<f64>::identity(n, k);
    let mut sums = vec![0.0; k];
    for t in 1..=tape.steps {
        let qr = (jacobian_f64(params, tape, layer, t, b) * &q).qr();
        for (sum, r) in sums.iter_mut().zip(qr.r().diagonal().iter()) {
            *sum += r.abs().ln();
        }
        q = qr.q();
    }
    let mut exps: Vec<f64> = sums.into_iter().map(|s| s / tape.steps as f64).collect();
    exps.sort_by(|a, b| b.total_cmp(a));
    exps
}

/// The full Lyapunov spectrum as rows.
pub fn lyapunov_rows<T: Scalar>(params: &Params<T>, tape: &Tape<T>, layer: usize, b: usize) -> Vec<LyapunovRow> {
    lyapunov(params, tape, layer, b, None)
        .into_iter()
        .enumerate()
        .map(|(index, exponent)| LyapunovRow { cell: tape.kind.name(), batch: b, index, exponent, layer })
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
            let terms = [("F", &f), ("Tf", &tf), ("Ti", &ti), ("Tg", &tg), ("nonF", &non_f), ("sum", &sum)];
            terms
                .into_iter()
                .map(|(term, m)| {
                    let (amax, frobenius_norm) = norms::amax_frobenius(m.as_view());
                    // F is diagonal: its spectral norm is its largest |entry|.
                    let spectral_norm = if term == "F" { amax } else { norms::spectral_once(m.as_view(), amax) };
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
            let one = pool(1).install(|| jacobian_flow(&params, &tape, 0, 1, &QUANTITIES));
            let two = pool(2).install(|| jacobian_flow(&params, &tape, 0, 1, &QUANTITIES));
            assert_eq!(one.len(), if kind == CellKind::Lstm { 21 * 3 + 20 } else { 21 });
            assert_eq!(one, two, "{kind}");
            assert!(one.iter().all(|r| r.spectral_norm.is_finite() && r.spectral_norm > 0.0));
        }
    }
}
