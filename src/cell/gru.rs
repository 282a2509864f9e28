//! The GRU (THEORY.md §2–4), gate order r, z, n, PyTorch's variant with r inside:
//! n = tanh(W_in x + b_in + r ⊙ (U_n h + b_hn)), h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}.

use super::{Cell, StepRef, add_scaled_rows};
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
        for j in 0..k {
            let ar = xp[j] + hh[j];
            let az = xp[k + j] + hh[k + j];
            let m = hh[2 * k + j];
            let (r, dr) = sigmoid_and_prime(ar);
            let an = xp[2 * k + j] + r * m;
            let (z, omz) = sigmoid_pair(az);
            let (n, dn) = tanh_and_prime(an);
            h[j] = omz * n + z * h_prev[j];
            let vals = [r, z, omz, n, m, dr, z * omz, dn];
            for (b, v) in vals.into_iter().enumerate() {
                cache[b * k + j] = v;
            }
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
        let v = |b: usize, j: usize| step.cache[b * k + j];
        for j in 0..k {
            let dn = dh[j] * v(OMZ, j);
            let dz = dh[j] * (step.h_prev[j] - v(N, j));
            let da_n = dn * v(DN, j);
            let da_r = da_n * v(M, j) * v(DR, j);
            let da_z = dz * v(DZ, j);
            da_ih[j] = da_r;
            da_ih[k + j] = da_z;
            da_ih[2 * k + j] = da_n;
            da_hh[j] = da_r;
            da_hh[k + j] = da_z;
            da_hh[2 * k + j] = da_n * v(R, j);
            dh_prev[j] = dh[j] * v(Z, j);
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
