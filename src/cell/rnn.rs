//! The Elman tanh RNN (THEORY.md §2–4): h_t = tanh(a_t), a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh.

use super::{Cell, StepRef, add_scaled_rows};
use crate::scalar::{Scalar, tanh_and_prime};
use nalgebra::DMatrix;

/// tanh RNN. Cache: [tanh'(a)].
pub struct Rnn;

impl Cell for Rnn {
    const GATES: usize = 1;
    const CACHE: usize = 1;

    #[inline(always)]
    fn forward<T: Scalar>(
        xp: &[T],
        hh: &[T],
        _h_prev: &[T],
        _c_prev: &[T],
        cache: &mut [T],
        h: &mut [T],
        _c: &mut [T],
    ) {
        let n = h.len();
        let (xp, hh, cache) = (&xp[..n], &hh[..n], &mut cache[..n]); // known lengths: no bounds checks
        for j in 0..n {
            (h[j], cache[j]) = tanh_and_prime(xp[j] + hh[j]);
        }
    }

    #[inline(always)]
    fn backward<T: Scalar>(
        step: &StepRef<T>,
        dh: &[T],
        _dc: &[T],
        da: &mut [T],
        _da_hh: &mut [T],
        dh_prev: &mut [T],
        _dc_prev: &mut [T],
    ) {
        let d = step.block(0);
        let (dh, da) = (&dh[..d.len()], &mut da[..d.len()]);
        for j in 0..d.len() {
            da[j] = dh[j] * d[j];
        }
        dh_prev.fill(T::zero());
    }

    /// J_t = diag(1 - h_t²)·W_hh.
    fn jacobian<T: Scalar>(step: &StepRef<T>, w_hh: &DMatrix<T>) -> DMatrix<T> {
        let h = step.hidden;
        let mut j = DMatrix::zeros(h, h);
        add_scaled_rows(j.as_view_mut(), step.block(0), w_hh, 0);
        j
    }
}
