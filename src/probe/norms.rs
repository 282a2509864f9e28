//! Matrix norms for the probes: Frobenius, and the spectral norm (largest singular value) by
//! warm-started power iteration with an a-posteriori error bound, falling back to a full SVD.

use nalgebra::{DMatrix, DVector};

/// Matrices up to this size go straight to the SVD.
const SVD_MAX_DIM: usize = 48;
/// Power iteration stops when the residual bounds the relative error of σ² by this.
const RESIDUAL_TOL: f64 = 1e-13;

/// Frobenius norm, computed with scaling so it neither overflows nor underflows.
pub fn frobenius(m: &DMatrix<f64>) -> f64 {
    let scale = m.amax();
    if scale == 0.0 || !scale.is_finite() {
        return scale;
    }
    scale * m.iter().map(|v| (v / scale) * (v / scale)).sum::<f64>().sqrt()
}

/// Largest singular value of `m`. `warm` carries a left singular vector estimate between
/// calls on slowly changing matrices (e.g. P_s = P_{s+1} J_{s+1}, whose left factor persists).
///
/// For larger matrices this is power iteration on m·mᵀ: it stops once the residual
/// ‖m mᵀ u - θ u‖ ≤ 1e-13·θ, which bounds the distance from θ to an eigenvalue of m mᵀ by the same
/// relative amount; if that takes longer than an SVD would, it falls back to the SVD.
pub fn spectral(m: &DMatrix<f64>, warm: &mut Option<DVector<f64>>) -> f64 {
    let (r, c) = m.shape();
    if r.min(c) == 0 {
        return 0.0;
    }
    if r.max(c) <= SVD_MAX_DIM {
        return svd_max(m);
    }
    let scale = m.amax();
    if scale == 0.0 || !scale.is_finite() {
        return scale;
    }
    let a = m / scale;
    let mut u = match warm.take() {
        Some(u) if u.len() == r && u.norm() > 0.0 => u,
        _ => DVector::from_fn(r, |i, _| 1.0 + (i as f64 * 0.618_033_988_7).fract()),
    };
    u /= u.norm();
    let mut w = DVector::zeros(c);
    let mut v = DVector::zeros(r);
    // Each iteration costs ~4·r·c flops; past ~min(r, c)/2 of them an SVD is cheaper.
    for _ in 0..(r.min(c) / 2).max(20) {
        w.gemv_tr(1.0, &a, &u, 0.0);
        v.gemv(1.0, &a, &w, 0.0);
        let theta = u.dot(&v); // Rayleigh quotient of a·aᵀ, = σ² at convergence
        let residual = (&v - &u * theta).norm();
        let vn = v.norm();
        if vn == 0.0 {
            break;
        }
        u.copy_from(&(&v / vn));
        if residual <= RESIDUAL_TOL * theta {
            *warm = Some(u);
            return scale * theta.sqrt();
        }
    }
    *warm = None;
    scale * svd_max(&a)
}

fn svd_max(m: &DMatrix<f64>) -> f64 {
    m.clone().singular_values().max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frobenius_survives_extreme_scales() {
        let m = DMatrix::from_element(3, 3, 1e-200);
        assert!((frobenius(&m) / 3e-200 - 1.0).abs() < 1e-15);
        let m = DMatrix::from_element(2, 2, 1e200);
        assert!((frobenius(&m) / 2e200 - 1.0).abs() < 1e-15);
    }

    #[test]
    fn power_iteration_matches_svd() {
        let m = DMatrix::from_fn(80, 80, |i, j| {
            ((i * 31 + j * 17) as f64 * 0.37).sin() / (1.0 + (i as f64 - j as f64).abs())
        });
        let exact = m.clone().singular_values().max();
        let mut warm = None;
        let est = spectral(&m, &mut warm);
        assert!(((est - exact) / exact).abs() < 1e-12, "{est} vs {exact}");
        assert!(warm.is_some());
        // Warm-started on a slightly changed matrix, it converges to the new value.
        let m2 = &m * DMatrix::from_diagonal_element(80, 80, 0.9)
            + DMatrix::from_fn(80, 80, |i, j| 1e-3 * ((i + j) as f64).cos());
        let exact2 = m2.clone().singular_values().max();
        assert!(((spectral(&m2, &mut warm) - exact2) / exact2).abs() < 1e-12);
    }

    #[test]
    fn repeated_top_singular_values_are_exact() {
        // An orthogonal matrix times 0.5: every singular value is 0.5, power iteration is instant.
        let q = DMatrix::from_fn(60, 60, |i, j| if (i + 1) % 60 == j { 0.5 } else { 0.0 });
        assert!((spectral(&q, &mut None) - 0.5).abs() < 1e-15);
    }
}
