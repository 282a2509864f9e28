//! The LSTM (THEORY.md §2–4), gate order i, f, g, o:
//! c_t = f ⊙ c_{t-1} + i ⊙ g, h_t = o ⊙ tanh(c_t).

use super::{Cell, StepRef, add_scaled_rows, blocks, blocks_mut};
use crate::scalar::{Scalar, sigmoid_and_prime, tanh_and_prime};
use nalgebra::DMatrix;

/// LSTM. Cache blocks: i, f, g, o, then σ'(a_i), σ'(a_f), tanh'(a_g), σ'(a_o), then tanh(c_t),
/// tanh'(c_t).
pub struct Lstm;

const I: usize = 0;
const F: usize = 1;
const G: usize = 2;
const O: usize = 3;
const D: usize = 4; // derivative blocks start here, same gate order
const TC: usize = 8;
const DTC: usize = 9;

impl Cell for Lstm {
    const GATES: usize = 4;
    const CACHE: usize = 10;
    const HAS_C: bool = true;

    #[inline(always)]
    fn forward<T: Scalar>(xp: &[T], hh: &[T], _h_prev: &[T], c_prev: &[T], cache: &mut [T], h: &mut [T], c: &mut [T]) {
        let n = h.len();
        // One loop per gate, then two for the state, over slices of known length (no bounds
        // checks): each vectorises with few values live (one loop for all ran 1.2× slower).
        let [i, f, g, o, di, df, dg, d_o, tc, dtc] = blocks_mut(cache, n);
        let block = |gate: usize| gate * n..(gate + 1) * n;
        let input = |gate: usize| (&xp[block(gate)], &hh[block(gate)]);
        activate(input(I), i, di, sigmoid_and_prime);
        activate(input(F), f, df, sigmoid_and_prime);
        activate(input(G), g, dg, tanh_and_prime);
        activate(input(O), o, d_o, sigmoid_and_prime);
        let (c_prev, c) = (&c_prev[..n], &mut c[..n]);
        for j in 0..n {
            c[j] = f[j] * c_prev[j] + i[j] * g[j];
        }
        for j in 0..n {
            let (t, dt) = tanh_and_prime(c[j]);
            (tc[j], dtc[j], h[j]) = (t, dt, o[j] * t);
        }
    }

    #[inline(always)]
    fn backward<T: Scalar>(
        step: &StepRef<T>,
        dh: &[T],
        dc: &[T],
        da: &mut [T],
        _da_hh: &mut [T],
        dh_prev: &mut [T],
        dc_prev: &mut [T],
    ) {
        let n = step.hidden;
        let [i, f, g, o, di, df, dg, d_o, tc, dtc] = blocks(step.cache, n);
        let [da_i, da_f, da_g, da_o] = blocks_mut(da, n);
        let (dh, dc, c_prev, dc_prev) = (&dh[..n], &dc[..n], &step.c_prev[..n], &mut dc_prev[..n]);
        for j in 0..n {
            let d_c = dc[j] + dh[j] * o[j] * dtc[j];
            da_i[j] = d_c * g[j] * di[j];
            da_f[j] = d_c * c_prev[j] * df[j];
            da_g[j] = d_c * i[j] * dg[j];
            da_o[j] = dh[j] * tc[j] * d_o[j];
            dc_prev[j] = d_c * f[j];
        }
        dh_prev.fill(T::zero());
    }

    /// The 2H×2H Jacobian of (h_t, c_t) with respect to (h_{t-1}, c_{t-1}).
    fn jacobian<T: Scalar>(step: &StepRef<T>, w_hh: &DMatrix<T>) -> DMatrix<T> {
        let n = step.hidden;
        let a = Lstm::dc_dh_prev(step, w_hh);
        let e: Vec<T> = (0..n).map(|j| step.block(O)[j] * step.block(DTC)[j]).collect();
        let mut jac = DMatrix::zeros(2 * n, 2 * n);
        let o_coef: Vec<T> = (0..n).map(|j| step.block(TC)[j] * step.block(D + O)[j]).collect();
        add_scaled_rows(jac.view_mut((0, 0), (n, n)), &o_coef, w_hh, O);
        for r in 0..n {
            for col in 0..n {
                jac[(r, col)] += e[r] * a[(r, col)];
                jac[(n + r, col)] = a[(r, col)];
            }
            jac[(r, n + r)] = e[r] * step.block(F)[r];
            jac[(n + r, n + r)] = step.block(F)[r];
        }
        jac
    }
}

/// (v, d) = act(x + r) elementwise for the pre-activations (x, r), all as long as `v`.
#[inline(always)]
fn activate<T: Scalar>((x, r): (&[T], &[T]), v: &mut [T], d: &mut [T], act: impl Fn(T) -> (T, T)) {
    let n = v.len();
    let (x, r, d) = (&x[..n], &r[..n], &mut d[..n]);
    for j in 0..n {
        (v[j], d[j]) = act(x[j] + r[j]);
    }
}

impl Lstm {
    /// The one-step Jacobian in factored form, for products from the left without forming it:
    /// J = [[diag(β) U_o + diag(E) A, diag(E ⊙ f)], [A, diag(f)]] with β = tanh(c_t) ⊙ σ'(a_o),
    /// E = o ⊙ tanh'(c_t) and A = ∂c_t/∂h_{t-1}. Writes [U_o; A] into `stacked` (2H × H) and
    /// returns (β, E, f), all in f64.
    pub fn jacobian_factors<T: Scalar>(
        step: &StepRef<T>,
        w_hh: &DMatrix<T>,
        stacked: &mut DMatrix<f64>,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let n = step.hidden;
        let f64s = |x: &[T], y: &[T]| -> Vec<f64> { x.iter().zip(y).map(|(&p, &q)| p.as_f64() * q.as_f64()).collect() };
        let [(c0, g0), (c1, g1), (c2, g2)] = Lstm::dc_dh_prev_terms(step).map(|(x, y, gate)| (f64s(x, y), gate));
        for (out, w) in stacked.as_mut_slice().chunks_exact_mut(2 * n).zip(w_hh.as_slice().chunks_exact(4 * n)) {
            let (u_o, a) = out.split_at_mut(n);
            let u = |gate: usize| &w[gate * n..(gate + 1) * n];
            for (o, &v) in u_o.iter_mut().zip(u(O)) {
                *o = v.as_f64();
            }
            for (k, a) in a.iter_mut().enumerate() {
                *a = c0[k] * u(g0)[k].as_f64() + c1[k] * u(g1)[k].as_f64() + c2[k] * u(g2)[k].as_f64();
            }
        }
        let beta = f64s(step.block(TC), step.block(D + O));
        let e = f64s(step.block(O), step.block(DTC));
        (beta, e, step.block(F).iter().map(|v| v.as_f64()).collect())
    }

    /// D_t = o_t ⊙ tanh'(c_t) = ∂h_t/∂c_t (diagonal) with o_t held fixed.
    pub fn dh_dc<T: Scalar>(step: &StepRef<T>) -> Vec<T> {
        step.block(O).iter().zip(step.block(DTC)).map(|(&o, &d)| o * d).collect()
    }

    /// The seed-001 split of ∂c_t/∂c_{t-1} (THEORY.md §4) for t ≥ 2, given steps t and t-1:
    /// [F, T_f, T_i, T_g] with F = diag(f_t) and T_x = diag(coef_x) U_x D_{t-1}.
    pub fn dc_decomposition<T: Scalar>(step: &StepRef<T>, prev: &StepRef<T>, w_hh: &DMatrix<T>) -> [DMatrix<T>; 4] {
        let n = step.hidden;
        let d_prev = Lstm::dh_dc(prev);
        let term = |coef: Vec<T>, gate: usize| {
            let mut m = DMatrix::zeros(n, n);
            add_scaled_rows(m.as_view_mut(), &coef, w_hh, gate);
            for (mut col, &d) in m.column_iter_mut().zip(&d_prev) {
                col *= d;
            }
            m
        };
        let prod = |x: &[T], y: &[T]| -> Vec<T> { x.iter().zip(y).map(|(&p, &q)| p * q).collect() };
        [
            DMatrix::from_diagonal(&nalgebra::DVector::from_column_slice(step.block(F))),
            term(prod(step.c_prev, step.block(D + F)), F),
            term(prod(step.block(G), step.block(D + I)), I),
            term(prod(step.block(I), step.block(D + G)), G),
        ]
    }

    /// A_t = ∂c_t/∂h_{t-1} = diag(c_{t-1}⊙σ'(a_f)) U_f + diag(g⊙σ'(a_i)) U_i + diag(i⊙tanh'(a_g)) U_g.
    pub fn dc_dh_prev<T: Scalar>(step: &StepRef<T>, w_hh: &DMatrix<T>) -> DMatrix<T> {
        let n = step.hidden;
        let mut a = DMatrix::zeros(n, n);
        for (x, y, gate) in Lstm::dc_dh_prev_terms(step) {
            let coef: Vec<T> = x.iter().zip(y).map(|(&p, &q)| p * q).collect();
            add_scaled_rows(a.as_view_mut(), &coef, w_hh, gate);
        }
        a
    }

    /// The terms of A_t as (x, y, gate), A_t = Σ diag(x ⊙ y) U_gate, in summation order.
    fn dc_dh_prev_terms<'a, T: Scalar>(step: &StepRef<'a, T>) -> [(&'a [T], &'a [T], usize); 3] {
        let block = |k: usize| &step.cache[k * step.hidden..(k + 1) * step.hidden];
        [(step.c_prev, block(D + F), F), (block(G), block(D + I), I), (block(I), block(D + G), G)]
    }
}
