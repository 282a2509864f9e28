//! Matrix products on nalgebra views with free transposes: the one place that calls a GEMM
//! kernel, so swapping the kernel touches nothing else.

use crate::scalar::Scalar;
use nalgebra::{DMatrixView, DMatrixViewMut};

/// Whether a GEMM operand is used as stored (`N`) or transposed (`T`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    N,
    T,
}

/// Computes `c = alpha·op(a)·op(b) + beta·c`; if `beta` is zero, `c` is not read.
///
/// ```
/// use gradlab::linalg::{gemm, Op};
/// use nalgebra::DMatrix;
/// let a = DMatrix::from_row_slice(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
/// let b = DMatrix::from_row_slice(2, 2, &[1.0, 0.0, 0.0, 2.0]);
/// let mut c = DMatrix::zeros(3, 2);
/// gemm(1.0, a.as_view(), Op::T, b.as_view(), Op::N, 0.0, c.as_view_mut());
/// assert_eq!(c, a.transpose() * b);
/// ```
pub fn gemm<T: Scalar>(
    alpha: T,
    a: DMatrixView<'_, T>,
    op_a: Op,
    b: DMatrixView<'_, T>,
    op_b: Op,
    beta: T,
    mut c: DMatrixViewMut<'_, T>,
) {
    let (m, k, rsa, csa) = oriented(a.nrows(), a.ncols(), a.strides(), op_a);
    let (k2, n, rsb, csb) = oriented(b.nrows(), b.ncols(), b.strides(), op_b);
    assert_eq!(k, k2, "gemm: inner dimensions differ");
    assert_eq!((m, n), c.shape(), "gemm: output shape differs");
    if m == 0 || n == 0 {
        return;
    }
    if n == 1 && op_b == Op::N {
        // One column (batch 1): a matrix-vector product streams `a` once; a GEMM kernel would
        // first copy (pack) all of it.
        let (x, mut y) = (b.column(0), c.column_mut(0));
        match op_a {
            Op::N => y.gemv(alpha, &a, &x, beta),
            Op::T => y.gemv_tr(alpha, &a, &x, beta),
        }
        return;
    }
    let (rsc, csc) = c.strides();
    // SAFETY: the views describe valid arrays of the asserted shapes; `c` is a unique borrow.
    unsafe {
        T::gemm_raw(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            csc as isize,
        )
    }
}

fn oriented(rows: usize, cols: usize, (rs, cs): (usize, usize), op: Op) -> (usize, usize, isize, isize) {
    match op {
        Op::N => (rows, cols, rs as isize, cs as isize),
        Op::T => (cols, rows, cs as isize, rs as isize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    #[test]
    fn all_transpose_combinations_match_nalgebra() {
        let a = DMatrix::from_fn(7, 9, |i, j| (i as f64 * 0.3 - j as f64 * 0.17).sin());
        let b = DMatrix::from_fn(9, 8, |i, j| (i as f64 * 0.11 + j as f64 * 0.5).cos());
        let c0 = DMatrix::from_fn(7, 8, |i, j| (i * j) as f64);
        let at = a.transpose();
        let bt = b.transpose();
        let expect = &a * &b * 2.0 + &c0 * 0.5;
        for (aa, oa) in [(&a, Op::N), (&at, Op::T)] {
            for (bb, ob) in [(&b, Op::N), (&bt, Op::T)] {
                let mut c = c0.clone();
                gemm(2.0, aa.as_view(), oa, bb.as_view(), ob, 0.5, c.as_view_mut());
                assert!((&c - &expect).amax() < 1e-12, "{oa:?}{ob:?}");
            }
        }
    }

    #[test]
    fn single_columns_take_the_matrix_vector_path_and_agree() {
        let a = DMatrix::from_fn(9, 7, |i, j| (i as f64 * 0.3 - j as f64 * 0.17).sin());
        let x = DMatrix::from_fn(9, 1, |i, _| (i as f64).cos());
        let y0 = DMatrix::from_fn(7, 1, |i, _| i as f64);
        let mut y = y0.clone();
        gemm(2.0, a.as_view(), Op::T, x.as_view(), Op::N, 0.5, y.as_view_mut());
        assert!((&y - (a.transpose() * &x * 2.0 + &y0 * 0.5)).amax() < 1e-13);
        let mut z = DMatrix::from_element(9, 1, f64::NAN); // beta = 0: never read
        gemm(1.0, a.as_view(), Op::N, y0.as_view(), Op::N, 0.0, z.as_view_mut());
        assert!((&z - &a * &y0).amax() < 1e-13);
    }

    #[test]
    fn works_on_column_blocks() {
        let a = DMatrix::from_fn(4, 3, |i, j| (i + 2 * j) as f32);
        let big = DMatrix::from_fn(3, 10, |i, j| (i as f32) - (j as f32));
        let mut out = DMatrix::zeros(4, 10);
        gemm(1.0, a.as_view(), Op::N, big.columns(2, 5), Op::N, 0.0, out.columns_mut(5, 5));
        let expect = &a * big.columns(2, 5);
        assert_eq!(out.columns(5, 5), expect);
        assert_eq!(out.columns(0, 5).amax(), 0.0);
    }
}
