//! The GRU (THEORY.md §2–4), gate order r, z, n, PyTorch's variant with r inside:
//! n = tanh(W_in x + b_in + r ⊙ (U_n h + b_hn)), h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}.

use super::{Cell, StepRef, add_scaled_rows, blocks, blocks_mut};
use crate::scalar::{Scalar, sigmoid_and_prime, sigmoid_pair, tanh_and_prime};
use nalgebra::DMatrix;

/// GRU. Cache blocks: r, z, 1 - z (as σ(-a_z), exact near z = 1), n, m = U_n h + b_hn,
/// σ'(a_r), σ'(a_z), tanh'(a_n).
pub struct Gru;

const R: usize = 0;
const Z: usize = 1;
const OMZ: usize = 2;
const N: usize = 3;
const M: usize = 4;
const DR: usize = 5;
const DZ: usize = 6;
const DN: usize = 7;
/// Gate index of n in the weight matrices (r, z, n).
const GATE_N: usize = 2;

impl Cell for Gru {
    const GATES: usize = 3;
    const CACHE: usize = 8;
    const SPLIT_HH: bool = true;

    #[inline(always)]
    fn forward<T: Scalar>(xp: &[T], hh: &[T], h_prev: &[T], _c_prev: &[T], cache: &mut [T], h: &mut [T], _c: &mut [T]) {
        let k = h.len();
        // One loop per gate over slices of known length (no bounds checks), so each vectorises
        // with few values live.
        let block = |b: usize| b * k..(b + 1) * k;
        let [r, z, omz, n, m, dr, dz, dn] = blocks_mut(cache, k);
        let (x, u) = (&xp[block(R)], &hh[block(R)]);
        for j in 0..k {
            (r[j], dr[j]) = sigmoid_and_prime(x[j] + u[j]);
        }
        let (x, u) = (&xp[block(Z)], &hh[block(Z)]);
        for j in 0..k {
            let (zj, omzj) = sigmoid_pair(x[j] + u[j]);
            (z[j], omz[j], dz[j]) = (zj, omzj, zj * omzj);
        }
        let (x, u, h_prev) = (&xp[block(GATE_N)], &hh[block(GATE_N)], &h_prev[..k]);
        for j in 0..k {
            m[j] = u[j];
            let (nj, dnj) = tanh_and_prime(x[j] + r[j] * u[j]);
            (n[j], dn[j], h[j]) = (nj, dnj, omz[j] * nj + z[j] * h_prev[j]);
        }
    }

    #[inline(always)]
    fn backward<T: Scalar>(
        step: &StepRef<T>,
        dh: &[T],
        _dc: &[T],
        da_ih: &mut [T],
        da_hh: &mut [T],
        dh_prev: &mut [T],
        _dc_prev: &mut [T],
    ) {
        let k = step.hidden;
        let [r, z, omz, n, m, dr, dz, dn] = blocks(step.cache, k);
        let [dar_ih, daz_ih, dan_ih] = blocks_mut(da_ih, k);
        let [dar_hh, daz_hh, dan_hh] = blocks_mut(da_hh, k);
        let (dh, h_prev, dh_prev) = (&dh[..k], &step.h_prev[..k], &mut dh_prev[..k]);
        for j in 0..k {
            let da_n = dh[j] * omz[j] * dn[j];
            let da_r = da_n * m[j] * dr[j];
            let da_z = dh[j] * (h_prev[j] - n[j]) * dz[j];
            (dar_ih[j], daz_ih[j], dan_ih[j]) = (da_r, da_z, da_n);
            (dar_hh[j], daz_hh[j], dan_hh[j]) = (da_r, da_z, da_n * r[j]);
            dh_prev[j] = dh[j] * z[j];
        }
    }

    /// J_t = diag(z) + diag((h_{t-1} - n) z') U_z + diag((1-z) n') [diag(r) U_n + diag(m r') U_r].
    fn jacobian<T: Scalar>(step: &StepRef<T>, w_hh: &DMatrix<T>) -> DMatrix<T> {
        let k = step.hidden;
        let b = |blk: usize| step.block(blk);
        let zc: Vec<T> = (0..k).map(|j| (step.h_prev[j] - b(N)[j]) * b(DZ)[j]).collect();
        let nc: Vec<T> = (0..k).map(|j| b(OMZ)[j] * b(DN)[j] * b(R)[j]).collect();
        let rc: Vec<T> = (0..k).map(|j| b(OMZ)[j] * b(DN)[j] * b(M)[j] * b(DR)[j]).collect();
        let mut jac = DMatrix::from_diagonal(&nalgebra::DVector::from_column_slice(b(Z)));
        add_scaled_rows(jac.as_view_mut(), &zc, w_hh, Z);
        add_scaled_rows(jac.as_view_mut(), &nc, w_hh, GATE_N);
        add_scaled_rows(jac.as_view_mut(), &rc, w_hh, R);
        jac
    }
}
