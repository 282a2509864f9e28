//! The Elman RNN (THEORY.md §2–4): h_t = φ(a_t), a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh,
//! with φ = tanh ([`Rnn`], PyTorch's default) or φ = ReLU ([`RnnRelu`],
//! `nn.RNN(nonlinearity='relu')`; with identity recurrent weights, the IRNN of Le et al. 2015).
//! Both share the step, the backward step and the Jacobian J_t = diag(φ'(a_t))·W_hh; only φ
//! differs.

use super::{Cell, StepRef, add_scaled_rows};
use crate::scalar::{Scalar, tanh_and_prime};
use nalgebra::DMatrix;
use std::marker::PhantomData;

/// The elementwise nonlinearity of an Elman RNN: φ(a) and φ'(a) together.
pub trait Activation: Send + Sync + 'static {
    fn value_and_slope<T: Scalar>(a: T) -> (T, T);
}

/// φ = tanh, φ' = sech² computed from a (no 1 − h² cancellation).
pub struct Tanh;

impl Activation for Tanh {
    #[inline(always)]
    fn value_and_slope<T: Scalar>(a: T) -> (T, T) {
        tanh_and_prime(a)
    }
}

/// φ = max(0, a), φ' = 1 for a > 0 and 0 otherwise (0 at a = 0, as PyTorch); NaN stays NaN.
pub struct Relu;

impl Activation for Relu {
    #[inline(always)]
    fn value_and_slope<T: Scalar>(a: T) -> (T, T) {
        if a <= T::zero() { (T::zero(), T::zero()) } else { (a, T::one()) }
    }
}

/// An Elman RNN with nonlinearity `A`. Cache: [φ'(a)].
pub struct Elman<A>(PhantomData<A>);

/// tanh RNN.
pub type Rnn = Elman<Tanh>;
/// ReLU RNN.
pub type RnnRelu = Elman<Relu>;

impl<A: Activation> Cell for Elman<A> {
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
            (h[j], cache[j]) = A::value_and_slope(xp[j] + hh[j]);
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

    /// J_t = diag(φ'(a_t))·W_hh.
    fn jacobian<T: Scalar>(step: &StepRef<T>, w_hh: &DMatrix<T>) -> DMatrix<T> {
        let h = step.hidden;
        let mut j = DMatrix::zeros(h, h);
        add_scaled_rows(j.as_view_mut(), step.block(0), w_hh, 0);
        j
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_and_its_slope_follow_pytorch_and_keep_nan() {
        assert_eq!(Relu::value_and_slope(2.5f64), (2.5, 1.0));
        assert_eq!(Relu::value_and_slope(-2.5f64), (0.0, 0.0));
        assert_eq!(Relu::value_and_slope(0.0f64), (0.0, 0.0));
        assert_eq!(Relu::value_and_slope(f64::MIN_POSITIVE), (f64::MIN_POSITIVE, 1.0));
        let (v, _) = Relu::value_and_slope(f64::NAN);
        assert!(v.is_nan(), "NaN must not turn into 0");
    }
}
