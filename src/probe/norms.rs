//! Matrix norms for the probes: Frobenius, and the spectral norm (largest singular value) by
//! warm-started block power iteration with an a-posteriori error bound, falling back to a full SVD.

use crate::linalg::{Op, gemm};
use nalgebra::DMatrix;

/// Matrices up to this size go straight to the SVD.
const SVD_MAX_DIM: usize = 48;
/// Block iteration stops when the residual bounds the relative error of σ² by this.
const RESIDUAL_TOL: f64 = 1e-13;
/// Vectors in the block.
const BLOCK: usize = 8;
/// Block iterations cost ~4·r·c·BLOCK flops, an SVD ~c·n³: past about min(r, c)/8 iterations
/// (at least 4) the SVD is cheaper.
fn max_block_iterations(r: usize, c: usize) -> usize {
    (r.min(c) / 8).max(4)
}

/// Frobenius norm, computed with scaling so it neither overflows nor underflows.
pub fn frobenius(m: &DMatrix<f64>) -> f64 {
    let scale = m.amax();
    if scale == 0.0 || !scale.is_finite() {
        return scale;
    }
    scale * m.iter().map(|v| (v / scale) * (v / scale)).sum::<f64>().sqrt()
}

/// Largest singular value of `m`. `warm` carries an estimate of the leading left singular
/// subspace between calls on slowly changing matrices (e.g. P_s = P_{s+1} J_{s+1}, whose left
/// factor persists).
///
/// For larger matrices this is block power iteration on m·mᵀ with Rayleigh–Ritz over a block of
/// a few vectors (convergence rate (σ_{k+1}/σ_1)² rather than (σ_2/σ_1)²): it stops once the top
/// Ritz pair's residual ‖m mᵀ x - θ x‖ ≤ 1e-13·θ, which bounds the distance from θ to an
/// eigenvalue of m mᵀ by the same relative amount; without convergence it falls back to the SVD.
pub fn spectral(m: &DMatrix<f64>, warm: &mut Option<DMatrix<f64>>) -> f64 {
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
    let k = BLOCK.min(r).min(c);
    let mut u = match warm.take() {
        Some(u) if u.shape() == (r, k) => u,
        _ => DMatrix::from_fn(r, k, |i, j| ((i as f64 + 1.0) * (j as f64 + 1.0) * 0.754_877_666_2).sin()),
    };
    u = u.qr().q();
    let mut w = DMatrix::zeros(c, k);
    let mut z = DMatrix::zeros(r, k);
    for _ in 0..max_block_iterations(r, c) {
        gemm(1.0, a.as_view(), Op::T, u.as_view(), Op::N, 0.0, w.as_view_mut());
        gemm(1.0, a.as_view(), Op::N, w.as_view(), Op::N, 0.0, z.as_view_mut());
        let h = u.tr_mul(&z);
        let eig = ((&h + h.transpose()) * 0.5).symmetric_eigen();
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&i, &j| eig.eigenvalues[j].total_cmp(&eig.eigenvalues[i]));
        let y = DMatrix::from_fn(k, k, |i, j| eig.eigenvectors[(i, order[j])]);
        let theta = eig.eigenvalues[order[0]];
        let zy = &z * &y;
        let residual = (zy.column(0) - (&u * y.column(0)) * theta).norm();
        u = zy.qr().q();
        if theta > 0.0 && residual <= RESIDUAL_TOL * theta {
            *warm = Some(u);
            return scale * theta.sqrt();
        }
    }
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
    fn block_iteration_matches_svd() {
        // A clear gap (σ = 2, then ≤ 1.2): the block iteration converges, and says so via `warm`.
        let q1 = DMatrix::from_fn(100, 100, |i, j| ((i * 7 + j * 13) as f64 * 0.31).sin()).qr().q();
        let q2 = DMatrix::from_fn(100, 100, |i, j| ((i * 11 + j * 5) as f64 * 0.23).cos()).qr().q();
        let sv = nalgebra::DVector::from_fn(100, |i, _| if i == 0 { 2.0 } else { 1.2 / (1.0 + i as f64) });
        let m = &q1 * DMatrix::from_diagonal(&sv) * q2.transpose();
        let mut warm = None;
        assert!((spectral(&m, &mut warm) - 2.0).abs() < 1e-12);
        assert!(warm.is_some(), "converged without the SVD fallback");
        // Warm-started on a slightly changed matrix, it converges to the new value.
        let m2 = &m * 0.9 + DMatrix::from_fn(100, 100, |i, j| 1e-3 * ((i + j) as f64).cos());
        let exact2 = m2.clone().singular_values().max();
        assert!(((spectral(&m2, &mut warm) - exact2) / exact2).abs() < 1e-12);
        // Any matrix, converged or not, gets the SVD's value.
        let m3 = DMatrix::from_fn(80, 80, |i, j| {
            ((i * 31 + j * 17) as f64 * 0.37).sin() / (1.0 + (i as f64 - j as f64).abs())
        });
        let exact3 = m3.clone().singular_values().max();
        assert!(((spectral(&m3, &mut None) - exact3) / exact3).abs() < 1e-12);
    }

    #[test]
    fn clustered_top_singular_values_are_exact() {
        // σ = 1, 1 - 1e-6, 0.99, then decaying: power iteration on one vector would crawl.
        let q1 = DMatrix::from_fn(100, 100, |i, j| ((i * 7 + j * 13) as f64 * 0.31).sin()).qr().q();
        let q2 = DMatrix::from_fn(100, 100, |i, j| ((i * 11 + j * 5) as f64 * 0.23).cos()).qr().q();
        let sv: Vec<f64> =
            (0..100).map(|i| [1.0, 1.0 - 1e-6, 0.99].get(i).copied().unwrap_or(0.9 / (1.0 + i as f64))).collect();
        let m = &q1 * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(sv)) * q2.transpose() * 3.0;
        let mut warm = None;
        assert!((spectral(&m, &mut warm) / 3.0 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn repeated_top_singular_values_are_exact() {
        // An orthogonal matrix times 0.5: every singular value is 0.5, power iteration is instant.
        let q = DMatrix::from_fn(60, 60, |i, j| if (i + 1) % 60 == j { 0.5 } else { 0.0 });
        assert!((spectral(&q, &mut None) - 0.5).abs() < 1e-15);
    }
}
