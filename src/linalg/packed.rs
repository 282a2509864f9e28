//! A matrix packed once for many products from the left: the recurrent weights, multiplied by
//! a new batch of states at every time step. A general GEMM (matrixmultiply) copies its left
//! operand into a kernel-friendly layout on every call; for W_hh·h_t with a few batch columns
//! that copy costs as much as the arithmetic. Packed here once per pass, each step only reads.
//!
//! Layout: op(A) (m × k) in panels of `MR` rows (the last one zero-padded); panel p holds the
//! values op(A)[p·MR + i, l] at p·MR·k + l·MR + i, so the kernel reads each panel front to back.
//! The kernel keeps an MR × NR block of the output in registers (MR = two 512-bit vectors, NR =
//! 8 columns) and adds each entry's k products in order with fused multiply-adds, then adds the
//! sum to C: every entry is computed the same way whatever the split of the work, so results
//! are bitwise the same on 1 thread or many.

use super::{Op, split_rows};
use crate::scalar::Scalar;
use nalgebra::{DMatrixView, DMatrixViewMut};

/// Output columns per kernel call; fewer at the right edge (4, 2, 1).
const NR: usize = 8;
/// Bytes of a panel row: two 512-bit vectors (32 f32 or 16 f64).
const PANEL_BYTES: usize = 128;
/// Where the buffer's panels start, so vector loads never straddle a cache line.
const ALIGN_BYTES: usize = 64;

/// op(A) for a fixed A, packed for `c += op(A)·b` (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct PackedMatrix<T> {
    rows: usize,
    depth: usize,
    buf: Vec<T>,
    start: usize,
}

impl<T: Scalar> PackedMatrix<T> {
    /// Rows per panel for this scalar type.
    const MR: usize = PANEL_BYTES / size_of::<T>();

    /// Packs op(`a`), reusing this buffer's memory where it is large enough.
    pub fn pack(&mut self, a: DMatrixView<'_, T>, op: Op) {
        let (m, k) = match op {
            Op::N => a.shape(),
            Op::T => (a.ncols(), a.nrows()),
        };
        let mr = Self::MR;
        let len = m.div_ceil(mr) * mr * k;
        let slack = ALIGN_BYTES / size_of::<T>();
        self.buf.clear();
        self.buf.resize(len + slack, T::zero());
        self.start = self.buf.as_ptr().align_offset(ALIGN_BYTES).min(slack);
        (self.rows, self.depth) = (m, k);
        let panels = &mut self.buf[self.start..self.start + len];
        for (p, panel) in panels.chunks_exact_mut(mr * k.max(1)).enumerate().take(m.div_ceil(mr)) {
            let rows = mr.min(m - p * mr);
            for (l, dst) in panel.chunks_exact_mut(mr).enumerate() {
                for (i, d) in dst[..rows].iter_mut().enumerate() {
                    let r = p * mr + i;
                    *d = match op {
                        Op::N => a[(r, l)],
                        Op::T => a[(l, r)],
                    };
                }
            }
        }
    }

    /// The panels, without the alignment slack.
    fn panels(&self) -> &[T] {
        &self.buf[self.start..self.start + self.rows.div_ceil(Self::MR) * Self::MR * self.depth]
    }

    /// `c += op(A)·b`, with the work split by panels over rayon's threads when large enough
    /// (as [`super::gemm`] splits rows).
    pub fn mul_add(&self, b: DMatrixView<'_, T>, c: DMatrixViewMut<'_, T>) {
        assert_eq!(b.nrows(), self.depth, "packed product: inner dimensions differ");
        assert_eq!(c.shape(), (self.rows, b.ncols()), "packed product: output shape differs");
        self.mul_add_rows(0, b, c);
    }

    /// Rows `first..first + c.nrows()` of the product into `c`; `first` is a multiple of MR.
    fn mul_add_rows(&self, first: usize, b: DMatrixView<'_, T>, mut c: DMatrixViewMut<'_, T>) {
        let (m, n, k) = (c.nrows(), c.ncols(), self.depth);
        if m == 0 || n == 0 || k == 0 {
            return;
        }
        if let Some(top) = split_rows(m, k, n) {
            let (c_top, c_bottom) = c.rows_range_pair_mut(0..top, top..);
            rayon::join(|| self.mul_add_rows(first, b, c_top), || self.mul_add_rows(first + top, b, c_bottom));
            return;
        }
        let (ldb, ldc) = (b.strides().1, c.strides().1);
        // SAFETY: `b` is k × n and `c` is m × n (asserted by `mul_add`), with row stride 1 (by
        // their types) and the column strides read here; the panels from `first` hold m rows.
        unsafe {
            let panels = self.panels().as_ptr().add(first * k);
            kernels_dispatch(m, n, k, panels, b.as_ptr(), ldb, c.as_mut_ptr(), ldc);
        }
    }
}

/// The products of m packed rows with n columns of `b`, compiled for the widest vectors the
/// CPU has; without fused multiply-adds (pre-AVX2 CPUs) the same loops with separate ones.
///
/// # Safety
/// As for [`kernels`].
#[allow(clippy::too_many_arguments)]
unsafe fn kernels_dispatch<T: Scalar>(
    m: usize,
    n: usize,
    k: usize,
    panels: *const T,
    b: *const T,
    ldb: usize,
    c: *mut T,
    ldc: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx512<T: Scalar>(
            m: usize,
            n: usize,
            k: usize,
            a: *const T,
            b: *const T,
            ldb: usize,
            c: *mut T,
            ldc: usize,
        ) {
            unsafe { kernels::<T, true>(m, n, k, a, b, ldb, c, ldc) }
        }
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx2<T: Scalar>(
            m: usize,
            n: usize,
            k: usize,
            a: *const T,
            b: *const T,
            ldb: usize,
            c: *mut T,
            ldc: usize,
        ) {
            unsafe { kernels::<T, true>(m, n, k, a, b, ldb, c, ldc) }
        }
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX-512F and FMA (checked just above).
            return unsafe { avx512(m, n, k, panels, b, ldb, c, ldc) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { avx2(m, n, k, panels, b, ldb, c, ldc) };
        }
    }
    unsafe { kernels::<T, false>(m, n, k, panels, b, ldb, c, ldc) }
}

/// Every panel against every block of NR columns (4, 2, 1 at the right edge).
///
/// # Safety
/// `a` holds ⌈m/MR⌉ packed panels of depth k; `b` is k × n with column stride `ldb`; `c` is
/// m × n with column stride `ldc`, not overlapping either.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn kernels<T: Scalar, const FMA: bool>(
    m: usize,
    n: usize,
    k: usize,
    a: *const T,
    b: *const T,
    ldb: usize,
    c: *mut T,
    ldc: usize,
) {
    if size_of::<T>() == 4 {
        unsafe { panels::<T, 32, FMA>(m, n, k, a, b, ldb, c, ldc) }
    } else {
        unsafe { panels::<T, 16, FMA>(m, n, k, a, b, ldb, c, ldc) }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn panels<T: Scalar, const MR: usize, const FMA: bool>(
    m: usize,
    n: usize,
    k: usize,
    a: *const T,
    b: *const T,
    ldb: usize,
    c: *mut T,
    ldc: usize,
) {
    for p in 0..m.div_ceil(MR) {
        let rows = MR.min(m - p * MR);
        // SAFETY (all below): within the arrays the caller vouches for.
        let (panel, c) = unsafe { (a.add(p * MR * k), c.add(p * MR)) };
        let mut j = 0;
        while j < n {
            let (bj, cj) = unsafe { (b.add(j * ldb), c.add(j * ldc)) };
            let left = n - j;
            j += match left {
                NR.. => unsafe { block::<T, MR, NR, FMA>(k, panel, bj, ldb, cj, ldc, rows) },
                4.. => unsafe { block::<T, MR, 4, FMA>(k, panel, bj, ldb, cj, ldc, rows) },
                2.. => unsafe { block::<T, MR, 2, FMA>(k, panel, bj, ldb, cj, ldc, rows) },
                _ => unsafe { block::<T, MR, 1, FMA>(k, panel, bj, ldb, cj, ldc, rows) },
            };
        }
    }
}

/// One MR × W block of C (its first `rows` rows) plus the panel times W columns of `b`; returns W.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block<T: Scalar, const MR: usize, const W: usize, const FMA: bool>(
    k: usize,
    panel: *const T,
    b: *const T,
    ldb: usize,
    c: *mut T,
    ldc: usize,
    rows: usize,
) -> usize {
    let mut acc = [[T::zero(); MR]; W];
    for l in 0..k {
        // SAFETY: row l of the panel is MR values; b[l, j] is in the k × W block.
        let a: &[T; MR] = unsafe { &*(panel.add(l * MR) as *const [T; MR]) };
        for (j, acc) in acc.iter_mut().enumerate() {
            let bj = unsafe { *b.add(j * ldb + l) };
            for i in 0..MR {
                acc[i] = if FMA { a[i].mul_add(bj, acc[i]) } else { acc[i] + a[i] * bj };
            }
        }
    }
    for (j, acc) in acc.iter().enumerate() {
        // SAFETY: column j of the block has `rows` values from c + j·ldc.
        let col = unsafe { std::slice::from_raw_parts_mut(c.add(j * ldc), rows) };
        if rows == MR {
            for i in 0..MR {
                col[i] += acc[i];
            }
        } else {
            col.iter_mut().zip(acc).for_each(|(x, &s)| *x += s);
        }
    }
    W
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    #[test]
    fn packed_products_match_a_plain_product() {
        for (m, k, n) in [(64, 128, 16), (37 * 4, 37, 3), (5, 9, 13), (100, 1, 7), (33, 20, 8)] {
            let a = DMatrix::from_fn(m, k, |i, j| ((i * 7 + j * 3) as f64 * 0.37).sin());
            let b = DMatrix::from_fn(k, n, |i, j| ((i * 5 + j * 11) as f64 * 0.23).cos());
            let c0 = DMatrix::from_fn(m, n, |i, j| (i + j) as f64 * 0.01);
            let expect = &c0 + &a * &b;
            for (stored, op) in [(a.clone(), Op::N), (a.transpose(), Op::T)] {
                let mut p = PackedMatrix::default();
                p.pack(stored.as_view(), op);
                let mut c = c0.clone();
                p.mul_add(b.as_view(), c.as_view_mut());
                assert!((&c - &expect).amax() < 1e-12, "({m}, {k}, {n}) {op:?}");
                // The portable kernels (no fused multiply-add), as on CPUs without FMA.
                let mut plain = c0.clone();
                // SAFETY: the packed panels of p, b and plain have the shapes and strides given.
                unsafe { kernels::<f64, false>(m, n, k, p.panels().as_ptr(), b.as_ptr(), k, plain.as_mut_ptr(), m) };
                assert!((&plain - &expect).amax() < 1e-12, "({m}, {k}, {n}) {op:?} without FMA");
            }
        }
    }

    #[test]
    fn split_products_are_bitwise_those_of_one_thread() {
        let pool = |threads| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let (m, k, n) = (1000, 128, 40);
        let a = DMatrix::from_fn(m, k, |i, j| ((i * 7 + j * 3) as f32 * 0.37).sin());
        let b = DMatrix::from_fn(k, n, |i, j| ((i * 5 + j * 11) as f32 * 0.23).cos());
        let mut p = PackedMatrix::default();
        p.pack(a.as_view(), Op::N);
        let run = |threads| {
            let mut c = DMatrix::from_element(m, n, 0.25f32);
            pool(threads).install(|| p.mul_add(b.as_view(), c.as_view_mut()));
            c
        };
        assert!(pool(2).install(|| split_rows(m, k, n)).is_some(), "the product is split on 2 threads");
        let (one, two) = (run(1), run(2));
        assert!(one.iter().zip(two.iter()).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert!((&one - (&a * &b).add_scalar(0.25)).amax() < 1e-3);
    }
}
