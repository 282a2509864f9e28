//! Mean-field theory of a random tanh RNN (THEORY.md §6; Poole et al. 2016, Chen, Pennington &
//! Schoenholz 2018): W_hh entries N(0, g²/H), an input drive of variance σ_in² per unit (input
//! weights and inputs together, plus the biases). The pre-activation variance settles at the fixed
//! point q* = g² E_z[tanh²(√q* z)] + σ_in², and the squared gradient norm is multiplied per step by
//! χ = g² E_z[sech⁴(√q* z)], z ~ N(0, 1): a predicted decay rate of ½ ln χ per step.
//!
//! The Gaussian expectations use the trapezoid rule on z ∈ [−12, 12] with a step h = 0.2/√q
//! (0.2 for q < 1) that shrinks with the width of sech⁴(√q z), so a narrow peak at large q keeps
//! the same resolution (a Gauss–Hermite rule with few nodes loses accuracy past q ≈ 3). For an
//! integrand analytic in a strip of half-width d the trapezoid error falls as e^{−2πd/h}; tanh
//! and sech have their nearest poles at √q z = ±iπ/2, so d√q = π/2 and the error is about
//! e^{−49}; the Gaussian tail beyond 12 is below 1e-31.

use crate::scalar::tanh_and_prime;

/// E_z[f(√q z)] for z ~ N(0, 1).
pub fn gaussian_expectation(q: f64, f: impl Fn(f64) -> f64) -> f64 {
    const HALF_WIDTH: f64 = 12.0;
    let step = 0.2 / q.max(1.0).sqrt();
    let n = (HALF_WIDTH / step).ceil() as i64;
    let h = HALF_WIDTH / n as f64;
    let sq = q.max(0.0).sqrt();
    let mut sum = 0.0;
    for i in -n..=n {
        let z = i as f64 * h;
        let w = if i.abs() == n { 0.5 } else { 1.0 };
        sum += w * (-0.5 * z * z).exp() * f(sq * z);
    }
    sum * h / (2.0 * std::f64::consts::PI).sqrt()
}

/// sech²(u) without cancellation, from the pre-activation (THEORY.md §2).
fn sech2(u: f64) -> f64 {
    tanh_and_prime(u).1
}

/// The fixed point q* of q ↦ g² E[tanh²(√q z)] + σ_in², by bisection on
/// F(q) = g² E[tanh²(√q z)] + σ_in² − q over [0, g² + σ_in²]: F is concave with F(0) = σ_in² ≥ 0
/// and F(g² + σ_in²) ≤ 0, so the positive root is bracketed (q* = 0 when σ_in² = 0 and g ≤ 1).
/// Bisection, not iteration of the map: near g = 1 the iteration converges only algebraically.
pub fn q_star(gain: f64, input_variance: f64) -> f64 {
    let g2 = gain * gain;
    let f = |q: f64| g2 * gaussian_expectation(q, |u| tanh_and_prime(u).0.powi(2)) + input_variance - q;
    let (mut lo, mut hi) = (0.0, g2 + input_variance);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if f(mid) > 0.0 {
            lo = mid
        } else {
            hi = mid
        }
        if hi - lo <= 1e-15 * hi || hi < 1e-30 {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// χ = g² E[sech⁴(√q z)] at variance q.
pub fn chi(gain: f64, q: f64) -> f64 {
    gain * gain * gaussian_expectation(q, |u| sech2(u).powi(2))
}

/// The mean-field prediction at a gain: (q*, ½ ln χ(q*)).
pub fn predicted_rate(gain: f64, input_variance: f64) -> (f64, f64) {
    let q = q_star(gain, input_variance);
    (q, 0.5 * chi(gain, q).ln())
}

/// The gain at which χ(q*) = 1 (the edge of chaos), by bisection on [lo, hi]; `None` if χ − 1
/// does not change sign there.
pub fn edge_gain(input_variance: f64, lo: f64, hi: f64) -> Option<f64> {
    let f = |g: f64| predicted_rate(g, input_variance).1;
    let (mut a, mut b) = (lo, hi);
    if f(a).signum() == f(b).signum() {
        return None;
    }
    for _ in 0..40 {
        let m = 0.5 * (a + b);
        if f(m).signum() == f(a).signum() { a = m } else { b = m }
    }
    Some(0.5 * (a + b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_of_known_integrands() {
        // E[1] = 1, E[(√q z)²] = q, E[(√q z)⁴] = 3q², for small and large q.
        for q in [1e-6, 0.3, 1.0, 25.0, 400.0] {
            assert!((gaussian_expectation(q, |_| 1.0) - 1.0).abs() < 1e-14, "{q}");
            assert!((gaussian_expectation(q, |u| u * u) / q - 1.0).abs() < 1e-13, "{q}");
            assert!((gaussian_expectation(q, |u| u.powi(4)) / (3.0 * q * q) - 1.0).abs() < 1e-12, "{q}");
        }
    }

    #[test]
    fn limits_of_the_theory() {
        // Without input and with g < 1 the fixed point is q* = 0, where χ = g².
        let (q, rate) = predicted_rate(0.5, 0.0);
        assert!(q < 1e-10, "{q}");
        assert!((rate - 0.5f64.ln()).abs() < 1e-9, "{rate}");
        // Without input the edge is g = 1 exactly.
        let edge = edge_gain(0.0, 0.5, 2.0).unwrap();
        assert!((edge - 1.0).abs() < 1e-3, "{edge}");
        // Input noise pushes the edge above 1.
        assert!(edge_gain(1.0, 0.5, 4.0).unwrap() > 1.2);
    }
}
