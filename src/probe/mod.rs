//! Gradient-flow probes (THEORY.md §4–5) of one layer's recurrence for one sequence of a tape:
//! norms of ∂h_T/∂h_s for every s (and for the LSTM ∂c_T/∂c_s, the full state map and
//! `dc_total`), the back-propagated error signal, the seed-001 decomposition of ∂c_t/∂c_{t-1},
//! and the Lyapunov spectrum. Products are accumulated backwards, P_s = P_{s+1} J_{s+1} from
//! P_T = I, rescaled every step with the log of the scale kept aside, so every log-norm stays
//! exact where the plain number would be 0 or inf. All probe arithmetic is f64.

pub mod norms;

use crate::bptt::{Tape, step_jacobian};
use crate::cell::{CellKind, Lstm};
use crate::linalg::{Op, gemm};
use crate::params::Params;
use crate::scalar::Scalar;
use nalgebra::{DMatrix, DVector};
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

/// A matrix kept as exp(log_scale)·m with max |m| = 1 (or m = 0).
struct Scaled {
    m: DMatrix<f64>,
    log_scale: f64,
}

impl Scaled {
    fn identity(n: usize) -> Self {
        Scaled { m: DMatrix::identity(n, n), log_scale: 0.0 }
    }

    fn rescale(&mut self) {
        let s = self.m.amax();
        if s > 0.0 && s.is_finite() {
            self.m /= s;
            self.log_scale += s.ln();
        }
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
    fn row(self, quantity: &'static str, m: &DMatrix<f64>, log_scale: f64, warm: &mut Warm) -> FlowRow {
        let log_spec = log_scale + norms::spectral(m, warm).ln();
        let log_frob = log_scale + norms::frobenius(m).ln();
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
pub fn jacobian_flow<T: Scalar>(
    params: &Params<T>,
    tape: &Tape<T>,
    layer: usize,
    b: usize,
    which: &[&str],
) -> Vec<FlowRow> {
    let want = |q: &str| which.contains(&q);
    let (steps, h, kind) = (tape.steps, tape.hidden, tape.kind);
    let lstm = kind == CellKind::Lstm;
    let n = if lstm { 2 * h } else { h };
    let mut p = Scaled::identity(n);
    let mut tmp = DMatrix::zeros(n, n);
    let mut left = DMatrix::zeros(n, n); // LSTM workspace: [P_h diag(β) | Q]
    let mut warm: [Warm; 4] = Default::default();
    let mut per_step: Vec<Vec<FlowRow>> = Vec::with_capacity(steps + 1);
    for s in (0..=steps).rev() {
        if s < steps {
            if lstm {
                lstm_left_mul(
                    &p.m,
                    &tape.step(layer, s + 1, b),
                    &params.layers()[layer].weight_hh,
                    &mut left,
                    &mut tmp,
                );
            } else {
                let j = jacobian_f64(params, tape, layer, s + 1, b);
                gemm(1.0, p.m.as_view(), Op::N, j.as_view(), Op::N, 0.0, tmp.as_view_mut());
            }
            std::mem::swap(&mut p.m, &mut tmp);
            p.rescale();
        }
        let at = At { cell: kind, layer, batch: b, step: s, steps };
        let row = |q, m: &DMatrix<f64>, w: &mut Warm| at.row(q, m, p.log_scale, w);
        let [w_h, w_c, w_s, w_t] = &mut warm;
        let mut rows = Vec::with_capacity(4);
        if want("dh") {
            rows.push(row("dh", &p.m.view((0, 0), (h, h)).into_owned(), w_h));
        }
        if lstm {
            let p_cc = p.m.view((h, h), (h, h)).into_owned();
            if want("dc") {
                rows.push(row("dc", &p_cc, w_c));
            }
            if want("dstate") {
                rows.push(row("dstate", &p.m, w_s));
            }
            if s >= 1 && want("dc_total") {
                // dc_total = P_ch·diag(D_s) + P_cc: c_s moves h_s = o_s ⊙ tanh(c_s) with it.
                let d: Vec<f64> = Lstm::dh_dc(&tape.step(layer, s, b)).iter().map(|v| v.as_f64()).collect();
                let mut total = p.m.view((h, 0), (h, h)).into_owned();
                for (mut col, &dj) in total.column_iter_mut().zip(&d) {
                    col *= dj;
                }
                total += p_cc;
                rows.push(row("dc_total", &total, w_t));
            }
        }
        per_step.push(rows);
    }
    per_step.into_iter().rev().flatten().collect()
}

/// `out = P·J_t` for an LSTM step without forming J_t (half the flops of the dense product):
/// with Q = P_h diag(E) + P_c, P·J = [[P_h diag(β) | Q]·[U_o; A], Q diag(f)]
/// (factors of [`Lstm::jacobian_factors`]). `left` is an n × 2H workspace.
fn lstm_left_mul<T: Scalar>(
    p: &DMatrix<f64>,
    step: &crate::cell::StepRef<T>,
    w_hh: &DMatrix<T>,
    left: &mut DMatrix<f64>,
    out: &mut DMatrix<f64>,
) {
    let h = step.hidden;
    let (stacked, beta, e, f) = Lstm::jacobian_factors(step, w_hh);
    let stacked = stacked.map(|v| v.as_f64());
    for j in 0..h {
        let (b, ej) = (beta[j].as_f64(), e[j].as_f64());
        let (ph, pc) = (p.column(j), p.column(h + j));
        left.column_mut(j).zip_apply(&ph, |l, x| *l = x * b);
        left.column_mut(h + j).zip_zip_apply(&ph, &pc, |l, x, y| *l = x * ej + y);
    }
    gemm(1.0, left.as_view(), Op::N, stacked.as_view(), Op::N, 0.0, out.columns_mut(0, h));
    for (j, fj) in f.iter().enumerate() {
        let fj = fj.as_f64();
        out.column_mut(h + j).zip_apply(&left.column(h + j), |o, q| *o = q * fj);
    }
}

/// The back-propagated error signal ‖∂L/∂h_s‖₂, s = 0..=T, for a loss at the last step whose
/// gradient with respect to h_T is `g` (H values; for the LSTM with c_s held fixed). Quantity
/// `err`; both norm columns hold the vector's 2-norm.
pub fn error_signal<T: Scalar>(params: &Params<T>, tape: &Tape<T>, layer: usize, b: usize, g: &[f64]) -> Vec<FlowRow> {
    let (steps, h, kind) = (tape.steps, tape.hidden, tape.kind);
    let n = if kind.has_cell_state() { 2 * h } else { h };
    let mut v = DVector::zeros(n);
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
        rows.push(At { cell: kind, layer, batch: b, step: s, steps }.row("err", &hv, log_scale, &mut None));
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
    let n = if tape.kind.has_cell_state() { 2 * tape.hidden } else { tape.hidden };
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
pub fn lstm_decomposition<T: Scalar>(params: &Params<T>, tape: &Tape<T>, layer: usize, b: usize) -> Vec<DecompRow> {
    assert_eq!(tape.kind, CellKind::Lstm, "the decomposition is defined for the LSTM");
    let w = &params.layers()[layer].weight_hh;
    let mut rows = Vec::new();
    let mut warm: [Warm; 6] = Default::default();
    for t in 2..=tape.steps {
        let [f, tf, ti, tg] = Lstm::dc_decomposition(&tape.step(layer, t, b), &tape.step(layer, t - 1, b), w)
            .map(|m| m.map(|v| v.as_f64()));
        let non_f = &tf + &ti + &tg;
        let sum = &f + &non_f;
        let terms = [("F", &f), ("Tf", &tf), ("Ti", &ti), ("Tg", &tg), ("nonF", &non_f), ("sum", &sum)];
        for ((term, m), w) in terms.into_iter().zip(warm.iter_mut()) {
            // F is diagonal: its spectral norm is its largest |entry|.
            let spectral_norm = if term == "F" { m.diagonal().amax() } else { norms::spectral(m, w) };
            rows.push(DecompRow {
                batch: b,
                step: t,
                term,
                spectral_norm,
                frobenius_norm: norms::frobenius(m),
                mean_abs_diag: m.diagonal().abs().mean(),
                layer,
            });
        }
    }
    rows
}
