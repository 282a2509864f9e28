//! A matrix packed once for many products from the left: the recurrent weights, multiplied by
//! a new batch of states at every time step. A general GEMM (matrixmultiply) copies its left
//! operand into a kernel-friendly layout on every call; for W_hh·h_t with a few batch columns
//! that copy costs as much as the arithmetic. Packed here once per pass, each step only reads.
//!
//! Layout: op(A) (m × k) in panels of `MR` rows (the last one zero-padded); panel p holds the
//! values op(A)[p·MR + i, l] at p·MR·k + l·MR + i, so the kernel reads each panel front to back.
//! The kernel keeps an MR × NR block of the output in registers (MR = two 512-bit vectors, NR =
//! 8 columns), adds each entry's products in order with fused multiply-adds, KC at a time, and
//! adds each partial sum to C: every entry is computed the same way whatever the split of the
//! work, so results are bitwise the same on 1 thread or many. Compiled for AVX-512 or AVX2 (the
//! same operations, so the same bits); without AVX2 and FMA the products go to matrixmultiply.

use super::{Op, split_rows};
use crate::scalar::Scalar;
use nalgebra::{DMatrixView, DMatrixViewMut};

/// Output columns per kernel call; fewer at the right edge (4, 2, 1).
const NR: usize = 8;
/// Bytes of a panel row: two 512-bit vectors (32 f32 or 16 f64).
const PANEL_BYTES: usize = 128;
/// Where the buffer's panels start, so vector loads never straddle a cache line.
const ALIGN_BYTES: usize = 64;
/// Depth of a pass over the panels: a panel's slice of KC rows (32 KiB) stays in L1 while it
/// meets every column block; each entry's products are summed KC at a time, then added to C.
const KC: usize = 256;

/// Panel rows written per block of a transposing pack.
const PACK_T_ROWS: usize = 16;

/// Whether this CPU runs the packed kernels (x86-64 with AVX2 and FMA); elsewhere products go
/// to matrixmultiply.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

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
        if self.buf.len() < len + slack {
            self.buf = vec![T::zero(); len + slack];
        }
        self.start = self.buf.as_ptr().align_offset(ALIGN_BYTES).min(slack);
        (self.rows, self.depth) = (m, k);
        let panels = &mut self.buf[self.start..self.start + len];
        if k == 0 {
            return;
        }
        let (rows_a, lda) = (a.nrows(), a.strides().1);
        // SAFETY: a `DMatrixView`'s row stride is 1 (by its type), so its columns are the
        // `rows_a` values from ptr + j·lda.
        let column = |j: usize| unsafe { std::slice::from_raw_parts(a.as_ptr().add(j * lda), rows_a) };
        for (p, panel) in panels.chunks_exact_mut(mr * k).enumerate() {
            let (first, rows) = (p * mr, mr.min(m - p * mr));
            match op {
                // Row l of the panel is rows first.. of column l: a contiguous copy.
                Op::N => {
                    for (l, dst) in panel.chunks_exact_mut(mr).enumerate() {
                        let (values, padding) = dst.split_at_mut(rows);
                        values.copy_from_slice(&column(l)[first..first + rows]);
                        padding.fill(T::zero());
                    }
                }
                // Column i of the panel is column first + i of `a`: a transpose, done in
                // blocks of PACK_T_ROWS panel rows so the block being written stays in L1.
                Op::T => {
                    for (b, block) in panel.chunks_mut(PACK_T_ROWS * mr).enumerate() {
                        let l0 = b * PACK_T_ROWS;
                        for i in 0..mr {
                            let src = if i < rows { &column(first + i)[l0..] } else { &[][..] };
                            for (l, dst) in block.chunks_exact_mut(mr).enumerate() {
                                dst[i] = src.get(l).copied().unwrap_or(T::zero());
                            }
                        }
                    }
                }
            }
        }
    }

    /// The panels, without the alignment slack.
    fn panels(&self) -> &[T] {
        &self.buf[self.start..self.start + self.rows.div_ceil(Self::MR) * Self::MR * self.depth]
    }

    /// `c += op(A)·b`, the work split by rows over rayon's threads when large enough (as
    /// [`super::gemm`] splits). Call only where [`available`] says the CPU can.
    pub fn mul_add(&self, b: DMatrixView<'_, T>, c: DMatrixViewMut<'_, T>) {
        assert_eq!(b.nrows(), self.depth, "packed product: inner dimensions differ");
        assert_eq!(c.shape(), (self.rows, b.ncols()), "packed product: output shape differs");
        assert!(available(), "packed product: the CPU lacks AVX2 and FMA");
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
        // their types) and the column strides read here; the panels from `first` hold m rows
        // of depth k; the CPU has AVX2 and FMA (asserted by `mul_add`).
        unsafe {
            let panels = self.panels().as_ptr().add(first * k);
            kernels_dispatch(m, n, k, panels, (b.as_ptr(), ldb), c.as_mut_ptr(), ldc);
        }
    }
}

/// A read-only column-major matrix: its first value and its column stride.
type Columns<T> = (*const T, usize);

/// The products of m packed rows with n columns of `b`, compiled for AVX-512 if the CPU has
/// it, else AVX2 (both with FMA). Both do the same operations in the same order: same bits.
///
/// # Safety
/// As for [`panels`]; the CPU has AVX2 and FMA.
unsafe fn kernels_dispatch<T: Scalar>(m: usize, n: usize, k: usize, a: *const T, b: Columns<T>, c: *mut T, ldc: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above) and FMA (by the contract).
            return unsafe { kernels_avx512(m, n, k, a, b, c, ldc) };
        }
        // SAFETY: the CPU supports AVX2 and FMA (by the contract).
        unsafe { kernels_avx2(m, n, k, a, b, c, ldc) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the packed kernels run on x86-64 only ({m}×{n}×{k}, {a:?}, {b:?}, {c:?}, {ldc})")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn kernels_avx512<T: Scalar>(m: usize, n: usize, k: usize, a: *const T, b: Columns<T>, c: *mut T, ldc: usize) {
    unsafe { kernels(m, n, k, a, b, c, ldc) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernels_avx2<T: Scalar>(m: usize, n: usize, k: usize, a: *const T, b: Columns<T>, c: *mut T, ldc: usize) {
    unsafe { kernels(m, n, k, a, b, c, ldc) }
}

#[inline(always)]
unsafe fn kernels<T: Scalar>(m: usize, n: usize, k: usize, a: *const T, b: Columns<T>, c: *mut T, ldc: usize) {
    if size_of::<T>() == 4 {
        unsafe { panels::<T, 32>(m, n, k, a, b, c, ldc) }
    } else {
        unsafe { panels::<T, 16>(m, n, k, a, b, c, ldc) }
    }
}

/// Every panel against every block of NR columns (4, 2, 1 at the right edge), KC deep at a
/// time. `b` is read once per panel: one step's few batch columns, so it stays in cache.
///
/// # Safety
/// `a` holds ⌈m/MR⌉ packed panels of depth k; `b` is k × n; `c` is m × n with column stride
/// `ldc`, overlapping neither.
#[inline(always)]
unsafe fn panels<T: Scalar, const MR: usize>(
    m: usize,
    n: usize,
    k: usize,
    a: *const T,
    b: Columns<T>,
    c: *mut T,
    ldc: usize,
) {
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        for p in 0..m.div_ceil(MR) {
            let rows = MR.min(m - p * MR);
            // SAFETY (all below): within the arrays the caller vouches for.
            let (panel, c) = unsafe { (a.add(p * MR * k + k0 * MR), c.add(p * MR)) };
            let mut j = 0;
            while j < n {
                let bj = (unsafe { b.0.add(k0 + j * b.1) }, b.1);
                let cj = unsafe { c.add(j * ldc) };
                j += match n - j {
                    NR.. => unsafe { block::<T, MR, NR>(kc, panel, bj, cj, ldc, rows) },
                    4.. => unsafe { block::<T, MR, 4>(kc, panel, bj, cj, ldc, rows) },
                    2.. => unsafe { block::<T, MR, 2>(kc, panel, bj, cj, ldc, rows) },
                    _ => unsafe { block::<T, MR, 1>(kc, panel, bj, cj, ldc, rows) },
                };
            }
        }
    }
}

/// One MR × W block of C (its first `rows` rows) plus the panel (k deep) times W columns of
/// `b`; returns W.
#[inline(always)]
unsafe fn block<T: Scalar, const MR: usize, const W: usize>(
    k: usize,
    panel: *const T,
    b: Columns<T>,
    c: *mut T,
    ldc: usize,
    rows: usize,
) -> usize {
    let mut acc = [[T::zero(); MR]; W];
    for l in 0..k {
        // SAFETY: row l of the panel is MR values; b[l, j] is in the k × W block.
        let a: &[T; MR] = unsafe { &*(panel.add(l * MR) as *const [T; MR]) };
        for (j, acc) in acc.iter_mut().enumerate() {
            let bj = unsafe { *b.0.add(l + j * b.1) };
            for i in 0..MR {
                acc[i] = a[i].mul_add(bj, acc[i]);
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

    /// Shapes past every block edge: rows past MR, columns past NR, depth past KC.
    const SHAPES: [(usize, usize, usize); 6] =
        [(64, 128, 16), (37 * 4, 37, 3), (5, 9, 13), (100, 1, 7), (33, 600, 8), (40, 300, 301)];

    /// A, B, C₀ of one shape and the expected C₀ + A·B.
    fn case(m: usize, k: usize, n: usize) -> (DMatrix<f64>, DMatrix<f64>, DMatrix<f64>, DMatrix<f64>) {
        let a = DMatrix::from_fn(m, k, |i, j| ((i * 7 + j * 3) as f64 * 0.37).sin());
        let b = DMatrix::from_fn(k, n, |i, j| ((i * 5 + j * 11) as f64 * 0.23).cos());
        let c0 = DMatrix::from_fn(m, n, |i, j| (i + j) as f64 * 0.01);
        let expect = &c0 + &a * &b;
        (a, b, c0, expect)
    }

    /// A kernel entry point: (m, n, k, packed panels, b, c, ldc).
    type Kernels = unsafe fn(usize, usize, usize, *const f64, Columns<f64>, *mut f64, usize);

    /// Runs `variant` and the portable [`kernels`] (compiled without target features; `mul_add`
    /// is fused and correctly rounded either way) on every shape, for A and Aᵀ: same bits, and
    /// within 1e-12 of nalgebra's product.
    ///
    /// # Safety
    /// The CPU runs `variant`.
    unsafe fn same_bits_as_portable(variant: Kernels) {
        for (m, k, n) in SHAPES {
            let (a, b, c0, expect) = case(m, k, n);
            for (stored, op) in [(a.clone(), Op::N), (a.transpose(), Op::T)] {
                let mut p = PackedMatrix::default();
                p.pack(stored.as_view(), op);
                let (mut wide, mut plain) = (c0.clone(), c0.clone());
                // SAFETY: shapes as packed; the caller vouches for the CPU.
                unsafe {
                    variant(m, n, k, p.panels().as_ptr(), (b.as_ptr(), k), wide.as_mut_ptr(), m);
                    kernels(m, n, k, p.panels().as_ptr(), (b.as_ptr(), k), plain.as_mut_ptr(), m);
                }
                assert!((&plain - &expect).amax() < 1e-12, "({m}, {k}, {n}) {op:?}: portable kernels");
                assert!(
                    wide.iter().zip(plain.iter()).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "({m}, {k}, {n}) {op:?}"
                );
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    #[cfg_attr(not(cpu_avx2_fma), ignore = "this CPU has no AVX2 and FMA")]
    fn packed_avx2_kernels_have_the_bits_of_the_portable_kernels() {
        assert!(available(), "built on a CPU with AVX2 and FMA, run on one without: cargo clean");
        // SAFETY: the CPU supports AVX2 and FMA (asserted above).
        unsafe { same_bits_as_portable(kernels_avx2::<f64>) };
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    #[cfg_attr(not(cpu_avx512f), ignore = "this CPU has no AVX-512F")]
    fn packed_avx512_kernels_have_the_bits_of_the_portable_kernels() {
        assert!(
            available() && std::arch::is_x86_feature_detected!("avx512f"),
            "built on a CPU with AVX-512F, run on one without: cargo clean"
        );
        // SAFETY: the CPU supports AVX-512F and FMA (asserted above).
        unsafe { same_bits_as_portable(kernels_avx512::<f64>) };
    }

    #[test]
    #[cfg_attr(not(cpu_avx2_fma), ignore = "this CPU has no AVX2 and FMA: products go to matrixmultiply")]
    fn packed_products_match_a_plain_product() {
        assert!(available(), "built on a CPU with AVX2 and FMA, run on one without: cargo clean");
        for (m, k, n) in SHAPES {
            let (a, b, c0, expect) = case(m, k, n);
            for (stored, op) in [(a.clone(), Op::N), (a.transpose(), Op::T)] {
                let mut p = PackedMatrix::default();
                p.pack(stored.as_view(), op);
                let mut c = c0.clone();
                p.mul_add(b.as_view(), c.as_view_mut());
                assert!((&c - &expect).amax() < 1e-12, "({m}, {k}, {n}) {op:?}");
            }
        }
    }

    /// op(A)·b in the packed kernel and in matrixmultiply (`gemm_raw`, one thread), `c` = c₀ +
    /// op(A)·b from the same c₀: the bits of each.
    fn both_kernels<T: Scalar>(a: &DMatrix<T>, op: Op, b: &DMatrix<T>, c0: &DMatrix<T>) -> (Vec<u64>, Vec<u64>) {
        let mut p = PackedMatrix::default();
        p.pack(a.as_view(), op);
        let (mut packed, mut general) = (c0.clone(), c0.clone());
        p.mul_add(b.as_view(), packed.as_view_mut());
        let (m, k, n) = (packed.nrows(), b.nrows(), b.ncols());
        let (rsa, csa) = match op {
            Op::N => (1, a.nrows() as isize),
            Op::T => (a.nrows() as isize, 1),
        };
        // SAFETY: a is stored m × k (or k × m for Op::T), b is k × n and c is m × n, column-major.
        unsafe {
            T::gemm_raw(
                m,
                k,
                n,
                T::one(),
                a.as_ptr(),
                rsa,
                csa,
                b.as_ptr(),
                1,
                k as isize,
                T::one(),
                general.as_mut_ptr(),
                1,
                m as isize,
            );
        }
        let bits = |c: &DMatrix<T>| c.iter().map(|v| v.as_f64().to_bits()).collect();
        (bits(&packed), bits(&general))
    }

    #[test]
    #[cfg_attr(not(cpu_avx2_fma), ignore = "this CPU has no AVX2 and FMA: products go to matrixmultiply")]
    fn packed_products_have_the_bits_of_matrixmultiply() {
        // The forward pass computes W_ih·x_t (from b_ih) step by step in the packed kernel at
        // batch > 1 and over all steps in matrixmultiply at batch 1; ∂L/∂x takes either by size
        // (`small_left`). Both sum each entry in order with fused multiply-adds, 256 deep, and add
        // the sum to c, so results do not depend on the path: checked here, for depths past 256.
        assert!(available(), "built on a CPU with AVX2 and FMA, run on one without: cargo clean");
        for (m, k, n) in [(512, 64, 40), (37, 300, 19), (64, 600, 8), (130, 257, 3)] {
            let a = DMatrix::from_fn(m, k, |i, j| ((i * 7 + j * 3) as f64 * 0.37).sin());
            let b = DMatrix::from_fn(k, n, |i, j| ((i * 5 + j * 11) as f64 * 0.23).cos());
            let c0 = DMatrix::from_fn(m, n, |i, j| ((i + j) as f64 * 0.01).cos());
            for (stored, op) in [(a.clone(), Op::N), (a.transpose(), Op::T)] {
                let (packed, general) = both_kernels(&stored, op, &b, &c0);
                assert!(packed == general, "f64 ({m}, {k}, {n}) {op:?}");
                let f32s = |x: &DMatrix<f64>| x.map(|v| v as f32);
                let (packed, general) = both_kernels(&f32s(&stored), op, &f32s(&b), &f32s(&c0));
                assert!(packed == general, "f32 ({m}, {k}, {n}) {op:?}");
            }
        }
    }

    #[test]
    #[cfg_attr(not(cpu_avx2_fma), ignore = "this CPU has no AVX2 and FMA: products go to matrixmultiply")]
    fn split_products_are_bitwise_those_of_one_thread() {
        assert!(available(), "built on a CPU with AVX2 and FMA, run on one without: cargo clean");
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
