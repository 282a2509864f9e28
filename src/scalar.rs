//! The floating-point types gradlab computes in (f32 and f64), and the activation functions
//! with their derivatives in the cancellation-free form of THEORY.md §2.

use nalgebra::RealField;
use safetensors::Dtype;
use std::fmt::{Debug, Display};

/// Arithmetic precision, as a flag or a spec value: which [`Scalar`] to compute in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    F64,
}

/// A real scalar gradlab can compute in: `f64` for analysis, `f32` for throughput.
pub trait Scalar: RealField + Copy + Default + Debug + Display + Send + Sync + 'static {
    /// The safetensors dtype this scalar is stored as.
    const DTYPE: Dtype;
    /// Short name for messages and file metadata (`"f32"` or `"f64"`).
    const NAME: &'static str;
    /// The smallest positive normal value (2^−126, 2^−1022), as f64: below it values are subnormal.
    const SMALLEST_NORMAL: f64;
    /// Converts from f64, rounding to nearest (for constants and file values).
    fn of(v: f64) -> Self;
    /// Converts to f64 exactly.
    fn as_f64(self) -> f64;
    /// Appends the little-endian bytes of `self` to `out`.
    fn write_le(self, out: &mut Vec<u8>);
    /// e^x for x ≤ 0 (NaN stays NaN) to within an ulp, without a library call so that loops over
    /// it vectorise: [`exp_neg_f32`], [`exp_neg_f64`].
    fn exp_neg(self) -> Self;
    /// `C = alpha·A·B + beta·C` on raw strided storage (BLAS semantics; matrixmultiply).
    ///
    /// # Safety
    /// The pointers and strides must describe valid, non-overlapping m×k, k×n and m×n arrays.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl Scalar for f64 {
    const DTYPE: Dtype = Dtype::F64;
    const NAME: &'static str = "f64";
    const SMALLEST_NORMAL: f64 = f64::MIN_POSITIVE;
    fn of(v: f64) -> Self {
        v
    }
    fn as_f64(self) -> f64 {
        self
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    #[inline(always)]
    fn exp_neg(self) -> Self {
        exp_neg_f64(self)
    }
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        unsafe { matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }
}

impl Scalar for f32 {
    const DTYPE: Dtype = Dtype::F32;
    const NAME: &'static str = "f32";
    const SMALLEST_NORMAL: f64 = f32::MIN_POSITIVE as f64;
    fn of(v: f64) -> Self {
        v as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    #[inline(always)]
    fn exp_neg(self) -> Self {
        exp_neg_f32(self)
    }
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        unsafe { matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }
}

/// e^x for x ≤ 0 in f32 without a library call, so that loops over it vectorise: x = k·ln2 + r
/// with |r| ≤ ln2/2 (Cody–Waite; k from the round-to-nearest of adding 1.5·2²³), e^r by its
/// Taylor series to r⁷ (truncation < 6e-9), times 2^k as two normal powers of two so results
/// down to the subnormals round once. Below -104 the result is 0; NaN propagates.
#[inline(always)]
pub fn exp_neg_f32(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5·2²³
    const LN2_HI: f32 = 6.931_457_5e-1; // ln 2 with 12 low bits zero (fdlibm)
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = if x < -104.0 { -104.0 } else { x };
    let shifted = x * std::f32::consts::LOG2_E + SHIFT;
    let k = shifted - SHIFT;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 5_040.0; // 1/7!
    for d in [720.0, 120.0, 24.0, 6.0, 2.0, 1.0] {
        p = p * r + 1.0 / d;
    }
    p = p * r + 1.0;
    let ki = shifted.to_bits().wrapping_sub(SHIFT.to_bits()) as i32;
    let (k1, k2) = (ki >> 1, ki - (ki >> 1));
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    p * pow2(k1) * pow2(k2)
}

/// e^x for x ≤ 0 in f64, as [`exp_neg_f32`]: Cody–Waite reduction with fdlibm's split of ln 2,
/// e^r by its Taylor series to r¹³ (truncation < 5e-18), 2^k as two normal powers of two built
/// from the bits of k + 1023 + 2⁵² (no float-to-integer conversion, which AVX2 lacks for f64).
/// Below -746 the result is 0; NaN propagates.
#[inline(always)]
pub fn exp_neg_f64(x: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5·2⁵²: adding it rounds to an integer
    const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000); // ln 2 to 32 bits (fdlibm's ln2_hi)
    const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76); // ln 2 - LN2_HI (fdlibm's ln2_lo)
    let x = if x < -746.0 { -746.0 } else { x };
    let k = (x * std::f64::consts::LOG2_E + SHIFT) - SHIFT;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 6_227_020_800.0; // 1/13!
    let mut fact = 6_227_020_800.0;
    for n in (1..13).rev() {
        fact /= (n + 1) as f64; // n!, exact
        p = p * r + 1.0 / fact;
    }
    p = p * r + 1.0;
    let k1 = (k * 0.5 + SHIFT) - SHIFT; // k/2 rounded: both halves ≥ -538, so 2^half is normal
    let pow2 = |e: f64| f64::from_bits((e + (1023.0 + 4_503_599_627_370_496.0)).to_bits() << 52);
    p * pow2(k1) * pow2(k - k1)
}

/// (σ(a), σ(-a)) from one exponential: with e = e^{-|a|}, σ(|a|) = 1/(1+e), σ(-|a|) = e/(1+e).
/// σ(-a) = 1 - σ(a) without the cancellation.
#[inline(always)]
pub fn sigmoid_pair<T: Scalar>(a: T) -> (T, T) {
    let e = (-a.abs()).exp_neg();
    let d = T::one() + e;
    let (big, small) = (T::one() / d, e / d);
    if a >= T::zero() { (big, small) } else { (small, big) }
}

/// (σ(a), σ'(a)), σ'(a) = σ(a)·σ(-a), from one exponential.
#[inline(always)]
pub fn sigmoid_and_prime<T: Scalar>(a: T) -> (T, T) {
    let (s, r) = sigmoid_pair(a);
    (s, s * r)
}

/// (tanh(a), tanh'(a)) with at most one exponential and no cancellation. For |a| ≥ 1/8, with
/// e = e^{-2|a|}: tanh(|a|) = (1-e)/(1+e) (1-e ≥ 0.22, so a few ulps at most) and
/// tanh'(a) = 4e/(1+e)², exact where 1 - tanh² rounds to 0. For |a| < 1/8 the Taylor series to
/// a¹⁵ is exact to f64 round-off, and tanh' = 1 - tanh² ≥ 0.98 loses nothing.
#[inline(always)]
pub fn tanh_and_prime<T: Scalar>(a: T) -> (T, T) {
    // Both forms, then a select: no branch, so loops over this vectorise.
    let x = a.abs();
    let x2 = x * x;
    let mut p = T::of(-929569.0 / 638512875.0);
    for c in [21844.0 / 6081075.0, -1382.0 / 155925.0, 62.0 / 2835.0, -17.0 / 315.0, 2.0 / 15.0, -1.0 / 3.0] {
        p = p * x2 + T::of(c);
    }
    let t_series = x + x * x2 * p;
    let e = (-(x + x)).exp_neg();
    let d = T::one() + e;
    let (t, dt) = if x < T::of(0.125) {
        (t_series, T::one() - t_series * t_series)
    } else {
        ((T::one() - e) / d, T::of(4.0) * e / (d * d))
    };
    (if a >= T::zero() { t } else { -t }, dt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sg(a: f64) -> f64 {
        sigmoid_pair(a).0
    }
    fn sp(a: f64) -> f64 {
        sigmoid_and_prime(a).1
    }
    fn tp(a: f64) -> f64 {
        tanh_and_prime(a).1
    }

    #[test]
    fn derivatives_stay_exact_when_saturated() {
        // At a = 30 the textbook forms round to exactly 0; the exact values are ~e^{-30}, ~4e^{-60}.
        let a = 30.0_f64;
        assert_eq!(1.0 - a.tanh().powi(2), 0.0);
        let rel = |x: f64, y: f64| ((x - y) / y).abs();
        assert!(rel(sp(a), (-a).exp() / (1.0 + (-a).exp()).powi(2)) < 1e-14);
        assert!(rel(tp(a), 1.0 / a.cosh().powi(2)) < 1e-14);
        assert!(rel(tp(-a), 1.0 / a.cosh().powi(2)) < 1e-14);
    }

    #[test]
    fn derivatives_match_textbook_forms_in_the_linear_range() {
        for &a in &[-3.0_f64, -0.7, 0.0, 0.25, 2.0] {
            let s = 1.0 / (1.0 + (-a).exp());
            assert!((sg(a) - s).abs() < 1e-15);
            assert!((sp(a) - s * (1.0 - s)).abs() < 1e-15);
            assert!((tp(a) - (1.0 - a.tanh().powi(2))).abs() < 1e-15);
        }
    }

    #[test]
    fn tanh_matches_std_to_round_off_everywhere() {
        for i in -4000..=4000 {
            let a = i as f64 * 0.01 + 1e-7;
            let (t, _) = tanh_and_prime(a);
            let rel = if a.tanh() == 0.0 { t.abs() } else { ((t - a.tanh()) / a.tanh()).abs() };
            assert!(rel < 6.0 * f64::EPSILON, "a = {a}: {t} vs {}", a.tanh());
        }
        for a in [1e-300_f64, -1e-12, 3e-9, 0.1249999, 0.125, 0.1250001, 0.4999, 0.5] {
            assert!(((tanh_and_prime(a).0 - a.tanh()) / a.tanh()).abs() < 6.0 * f64::EPSILON, "{a}");
            let d = 1.0 / a.cosh().powi(2);
            assert!(((tanh_and_prime(a).1 - d) / d).abs() < 6.0 * f64::EPSILON, "{a}");
        }
        assert_eq!(tanh_and_prime(0.0_f64), (0.0, 1.0));
        for i in -3000..=3000 {
            let a = i as f32 * 0.001 + 1e-5;
            let exact = (a as f64).tanh();
            assert!((((tanh_and_prime(a).0 as f64) - exact) / exact).abs() < 4.0 * f32::EPSILON as f64, "f32 {a}");
        }
    }

    #[test]
    fn exp_neg_f32_is_within_an_ulp_down_to_the_subnormals() {
        let mut worst32: f64 = 0.0;
        for i in 0..=200_000 {
            let x = -(i as f32) * 0.0005; // 0 to -100
            let exact = (x as f64).exp();
            let got = exp_neg_f32(x) as f64;
            if exact > f32::MIN_POSITIVE as f64 {
                worst32 = worst32.max((got - exact).abs() / (exact * f32::EPSILON as f64));
            } else {
                assert!((got - exact).abs() <= 1.5e-45, "{x}");
            }
        }
        assert!(worst32 <= 1.0, "f32: {worst32} ulp");
        assert_eq!(exp_neg_f32(0.0), 1.0);
        assert_eq!(exp_neg_f32(-200.0), 0.0);
        assert!(exp_neg_f32(f32::NAN).is_nan());
    }

    #[test]
    fn exp_neg_f64_is_within_an_ulp_down_to_the_subnormals() {
        let mut worst: f64 = 0.0;
        for i in 0..=1_500_000 {
            let x = -(i as f64) * 0.0005 - 1.234e-7 * (i % 7) as f64; // 0 to -750
            let (exact, got) = (x.exp(), exp_neg_f64(x));
            if exact >= f64::MIN_POSITIVE {
                worst = worst.max((got - exact).abs() / (exact * f64::EPSILON));
            } else {
                assert!((got - exact).abs() <= 5e-324, "{x}: {got:e} vs {exact:e}");
            }
        }
        assert!(worst <= 1.0, "f64: {worst} ulp");
        assert_eq!(exp_neg_f64(0.0), 1.0);
        assert_eq!(exp_neg_f64(-800.0), 0.0);
        assert_eq!(exp_neg_f64(f64::NEG_INFINITY), 0.0);
        assert!(exp_neg_f64(f64::NAN).is_nan());
    }

    #[test]
    fn sigmoid_does_not_overflow() {
        assert_eq!(sg(-1000.0_f64), 0.0);
        assert_eq!(sg(1000.0_f64), 1.0);
        assert!(sigmoid_pair(-800.0_f32).0.is_finite());
    }
}
