//! Matrix products on nalgebra views with free transposes: the one place that calls GEMM
//! kernels, so swapping one touches nothing else. matrixmultiply's in general, a matrix-vector
//! product for one column (batch 1), and this module's own kernel for a left operand reused
//! across many products ([`ReusedLeft`]). Large products are split by rows of the output over
//! rayon's threads; every entry is computed by the same kernel in the same order whatever the
//! split, so results are bitwise the same on 1 thread or many.

mod packed;

pub use packed::PackedMatrix;

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
    let (m, k, _, _) = oriented(a.nrows(), a.ncols(), a.strides(), op_a);
    let (k2, n, _, _) = oriented(b.nrows(), b.ncols(), b.strides(), op_b);
    assert_eq!(k, k2, "gemm: inner dimensions differ");
    assert_eq!((m, n), c.shape(), "gemm: output shape differs");
    if m == 0 || n == 0 {
        return;
    }
    // Decided on the whole product, never on a part of a split, so that the bits do not depend
    // on the number of threads.
    if let Some(shape) = Skinny::of(m, k, n, op_a, op_b) {
        return skinny(shape, alpha, a, b, op_b, beta, c);
    }
    if small_left(m, k, n, op_a, op_b, alpha, beta) {
        if beta == T::zero() {
            c.fill(T::zero());
        }
        let mut packed = PackedMatrix::default();
        packed.pack(a, op_a);
        return packed.mul_add(b, c);
    }
    gemm_general(alpha, a, op_a, b, op_b, beta, c)
}

/// Largest transposed left operand packed per call for the packed kernel, in bytes.
const SMALL_LEFT_BYTES: usize = 256 * 1024;

/// Whether `c = aᵀ·b (+ c)` runs in the packed kernel, `a` packed for this one call: a left
/// operand of at most [`SMALL_LEFT_BYTES`] (in L2 with room) against many columns, as ∂L/∂x =
/// W_ihᵀ·δa for small inputs. matrixmultiply copies (packs) all of the large `b` there for few
/// flops per value. One thread, best of 7 (AMD EPYC Zen 4), against matrixmultiply: f32 1.19–1.72×,
/// f64 1.06–1.15× where it applies; 0.58–0.95× for larger left operands, so not there.
fn small_left<T: Scalar>(m: usize, k: usize, n: usize, op_a: Op, op_b: Op, alpha: T, beta: T) -> bool {
    let (zero, one) = (T::zero(), T::one());
    (op_a, op_b) == (Op::T, Op::N)
        && alpha == one
        && (beta == zero || beta == one)
        && n > SKINNY
        && m * k * size_of::<T>() <= SMALL_LEFT_BYTES
        && packed::available()
}

/// A product with a dimension of at most this size runs as matrix-vector products (below).
const SKINNY: usize = 4;

/// The products a GEMM kernel does badly: it packs (copies) the large operand and pads the small
/// dimension to its tile (16 or more), for a few flops per value. Training on a task with few
/// inputs or outputs makes them: the input projection (k = I), ∂L/∂W_ih (n = I), ∂L/∂x (m = I).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skinny {
    /// k ≤ SKINNY, op(a) = a: column j of c is a·(column j of b), a product with k columns.
    Inner,
    /// n ≤ SKINNY, op(a) = a: column j of c is a·(column j of op(b)), streaming a once per j.
    Columns,
    /// m ≤ SKINNY, op(a) = aᵀ, op(b) = b: row i of c is bᵀ·(column i of a), a dot product per
    /// column of b.
    Rows,
}

impl Skinny {
    fn of(m: usize, k: usize, n: usize, op_a: Op, op_b: Op) -> Option<Skinny> {
        if n == 1 {
            return None; // the matrix-vector path already
        }
        match (op_a, op_b) {
            (Op::N, Op::N) if k <= SKINNY => Some(Skinny::Inner),
            (Op::N, _) if n <= SKINNY => Some(Skinny::Columns),
            (Op::T, Op::N) if m <= SKINNY => Some(Skinny::Rows),
            _ => None,
        }
    }
}

/// The column-major values of a view (unit row stride by its type) and its column stride.
fn raw<'a, T: Scalar>(a: &DMatrixView<'a, T>) -> (&'a [T], usize) {
    let (rows, cols, lda) = (a.nrows(), a.ncols(), a.strides().1);
    let len = if rows == 0 || cols == 0 { 0 } else { (cols - 1) * lda + rows };
    // SAFETY: column j of the view is the `rows` values from ptr + j·lda, all within `len`.
    (unsafe { std::slice::from_raw_parts(a.as_ptr(), len) }, lda)
}

/// `c = alpha·op(a)·op(b) + beta·c` for a [`Skinny`] shape, by [`matvec_dispatch`]: every entry
/// is one row-by-column sum in a fixed order, whatever the CPU.
fn skinny<T: Scalar>(
    shape: Skinny,
    alpha: T,
    a: DMatrixView<'_, T>,
    b: DMatrixView<'_, T>,
    op_b: Op,
    beta: T,
    mut c: DMatrixViewMut<'_, T>,
) {
    if a.nrows() == 0 || a.ncols() == 0 {
        // k = 0: c = beta·c.
        let zero = T::zero();
        c.iter_mut().for_each(|v| *v = if beta == zero { zero } else { beta * *v });
        return;
    }
    let (a_raw, lda) = raw(&a);
    let (b_raw, ldb) = raw(&b);
    match shape {
        Skinny::Inner | Skinny::Columns => {
            let mut gathered = Vec::new();
            for j in 0..c.ncols() {
                let x: &[T] = match op_b {
                    Op::N => &b_raw[j * ldb..][..b.nrows()],
                    Op::T => {
                        gathered.clear();
                        gathered.extend(b.row(j).iter().copied());
                        &gathered
                    }
                };
                let mut y = c.column_mut(j);
                // SAFETY: a column of a column-major view is contiguous (unit row stride).
                let y = unsafe { std::slice::from_raw_parts_mut(y.as_mut_ptr(), y.len()) };
                matvec_dispatch(Op::N, alpha, a_raw, lda, x, beta, y);
            }
        }
        Skinny::Rows => {
            let mut row = vec![T::zero(); c.ncols()];
            for i in 0..c.nrows() {
                if beta != T::zero() {
                    row.iter_mut().zip(c.row(i).iter()).for_each(|(r, &v)| *r = v);
                }
                matvec_dispatch(Op::T, alpha, b_raw, ldb, &a_raw[i * lda..][..a.nrows()], beta, &mut row);
                c.row_mut(i).iter_mut().zip(&row).for_each(|(v, &r)| *v = r);
            }
        }
    }
}

/// [`gemm`] without the [`Skinny`] paths: split over threads, one column, or the kernel.
fn gemm_general<T: Scalar>(
    alpha: T,
    a: DMatrixView<'_, T>,
    op_a: Op,
    b: DMatrixView<'_, T>,
    op_b: Op,
    beta: T,
    mut c: DMatrixViewMut<'_, T>,
) {
    let (m, k, rsa, csa) = oriented(a.nrows(), a.ncols(), a.strides(), op_a);
    let (_, n, rsb, csb) = oriented(b.nrows(), b.ncols(), b.strides(), op_b);
    if let Some(top) = split_rows(m, k, n) {
        let (a_top, a_bottom) = match op_a {
            Op::N => (a.rows(0, top), a.rows(top, m - top)),
            Op::T => (a.columns(0, top), a.columns(top, m - top)),
        };
        let (c_top, c_bottom) = c.rows_range_pair_mut(0..top, top..);
        rayon::join(
            || gemm_general(alpha, a_top, op_a, b, op_b, beta, c_top),
            || gemm_general(alpha, a_bottom, op_a, b, op_b, beta, c_bottom),
        );
        return;
    }
    if n == 1 && op_b == Op::N {
        // One column (batch 1): a matrix-vector product streams `a` once; a GEMM kernel would
        // first copy (pack) all of it.
        let (x, mut y) = (b.column(0), c.column_mut(0));
        if k > 0 {
            let (rows, cols, lda) = (a.nrows(), a.ncols(), a.strides().1);
            // SAFETY: a `DMatrixView`'s row stride is 1 (by its type), so column j of `a` is the
            // `rows` values from ptr + j·lda, and `x` and `y` are contiguous columns.
            let (a, x, y) = unsafe {
                (
                    std::slice::from_raw_parts(a.as_ptr(), (cols - 1) * lda + rows),
                    std::slice::from_raw_parts(x.as_ptr(), x.len()),
                    std::slice::from_raw_parts_mut(y.as_mut_ptr(), y.len()),
                )
            };
            matvec_dispatch(op_a, alpha, a, lda, x, beta, y);
        } else {
            match op_a {
                Op::N => y.gemv(alpha, &a, &x, beta),
                Op::T => y.gemv_tr(alpha, &a, &x, beta),
            }
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

/// A left operand for many products `c += op(A)·b` with the same A, such as the recurrent
/// weights at every time step: packed once where the packed kernels run and `b` has several
/// columns; with one column, the matrix-vector product (it streams A once, as packing would).
pub enum ReusedLeft<'a, T: Scalar> {
    Plain(DMatrixView<'a, T>, Op),
    Packed(&'a PackedMatrix<T>),
}

impl<'a, T: Scalar> ReusedLeft<'a, T> {
    /// op(`a`) for products with `cols` columns, packed into `buf` if that pays: not for one
    /// column, nor for a depth of at most [`SKINNY`] (a few multiply-adds per entry), which
    /// [`gemm`] runs as matrix-vector products whatever the number of columns. The packed kernel
    /// gives the bits of gemm's general kernel (see `packed_products_have_the_bits_of_matrixmultiply`).
    pub fn new(a: DMatrixView<'a, T>, op: Op, cols: usize, buf: &'a mut PackedMatrix<T>) -> Self {
        let depth = match op {
            Op::N => a.ncols(),
            Op::T => a.nrows(),
        };
        if cols == 1 || depth <= SKINNY || !packed::available() {
            return ReusedLeft::Plain(a, op);
        }
        buf.pack(a, op);
        ReusedLeft::Packed(buf)
    }

    /// Whether op(A) was packed for the packed kernel (else products go through [`gemm`]).
    pub fn is_packed(&self) -> bool {
        matches!(self, ReusedLeft::Packed(_))
    }

    /// `c += op(A)·b`.
    pub fn mul_add(&self, b: DMatrixView<'_, T>, c: DMatrixViewMut<'_, T>) {
        match *self {
            ReusedLeft::Plain(a, op) => gemm(T::one(), a, op, b, Op::N, T::one(), c),
            ReusedLeft::Packed(p) => p.mul_add(b, c),
        }
    }
}

/// `y = alpha·op(A)·x + beta·y` for a column-major `A` with unit row stride and column stride
/// `lda`, compiled for the widest vectors the CPU has. Measured at 1024×256 f32 (1 MiB, in L2):
/// A·x 14 µs against nalgebra's SSE2 `gemv` 22 µs, Aᵀ·x 17 µs against `gemv_tr` 34 µs. Every
/// lane does the same multiplies and adds in the same order (no fused multiply-add), so the bits
/// do not depend on which version runs.
fn matvec_dispatch<T: Scalar>(op: Op, alpha: T, a: &[T], lda: usize, x: &[T], beta: T, y: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { matvec_avx512(op, alpha, a, lda, x, beta, y) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { matvec_avx2(op, alpha, a, lda, x, beta, y) };
        }
    }
    matvec(op, alpha, a, lda, x, beta, y)
}

/// [`matvec`] compiled for AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn matvec_avx512<T: Scalar>(op: Op, alpha: T, a: &[T], lda: usize, x: &[T], beta: T, y: &mut [T]) {
    matvec(op, alpha, a, lda, x, beta, y)
}

/// [`matvec`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn matvec_avx2<T: Scalar>(op: Op, alpha: T, a: &[T], lda: usize, x: &[T], beta: T, y: &mut [T]) {
    matvec(op, alpha, a, lda, x, beta, y)
}

#[inline(always)]
fn matvec<T: Scalar>(op: Op, alpha: T, a: &[T], lda: usize, x: &[T], beta: T, y: &mut [T]) {
    match op {
        Op::N => gemv(alpha, a, lda, x, beta, y),
        Op::T => {
            for (j, yj) in y.iter_mut().enumerate() {
                let d = alpha * dot(&a[j * lda..][..x.len()], x);
                *yj = if beta == T::zero() { d } else { d + beta * *yj };
            }
        }
    }
}

/// Columns of `A` added to `y` in one sweep over its rows: eight streams of `A` in flight,
/// and one load and store of `y` (which stays in L1) per eight products.
const GEMV_COLUMNS: usize = 8;

/// `y = alpha·A·x + beta·y`: y_i ← beta·y_i (0 if beta is 0), then y_i += A[i, j]·(alpha·x_j)
/// for j in order.
#[inline(always)]
fn gemv<T: Scalar>(alpha: T, a: &[T], lda: usize, x: &[T], beta: T, y: &mut [T]) {
    let m = y.len();
    if beta == T::zero() {
        y.fill(T::zero());
    } else if beta != T::one() {
        y.iter_mut().for_each(|yi| *yi = beta * *yi);
    }
    let col = |j: usize| &a[j * lda..][..m];
    let mut blocks = x.chunks_exact(GEMV_COLUMNS);
    for (b, xb) in blocks.by_ref().enumerate() {
        let j = b * GEMV_COLUMNS;
        let xs: [T; GEMV_COLUMNS] = std::array::from_fn(|k| alpha * xb[k]);
        let cs: [&[T]; GEMV_COLUMNS] = std::array::from_fn(|k| col(j + k));
        for (i, yi) in y.iter_mut().enumerate() {
            let mut s = *yi;
            for k in 0..GEMV_COLUMNS {
                s += cs[k][i] * xs[k];
            }
            *yi = s;
        }
    }
    let done = x.len() - blocks.remainder().len();
    for (j, &xj) in x.iter().enumerate().skip(done) {
        let (c, xj) = (col(j), alpha * xj);
        y.iter_mut().zip(c).for_each(|(yi, &cij)| *yi += cij * xj);
    }
}

/// Σ a_i·b_i over interleaved partial sums (128 bytes of them, so it vectorizes), added up
/// pairwise at the end.
#[inline(always)]
fn dot<T: Scalar>(a: &[T], b: &[T]) -> T {
    if size_of::<T>() == 4 { dot_lanes::<T, 32>(a, b) } else { dot_lanes::<T, 16>(a, b) }
}

#[inline(always)]
fn dot_lanes<T: Scalar, const LANES: usize>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = ca.remainder().iter().zip(cb.remainder()).fold(T::zero(), |s, (&x, &y)| s + x * y);
    for (x, y) in ca.zip(cb) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    // Add the partial sums up pairwise: vector adds, where a running sum would be a chain of
    // LANES dependent scalar adds (as long as the dot product itself at H = 256). `black_box`
    // keeps LLVM from vectorising the main loop for this reduction's pattern (two lanes wide).
    let acc = std::hint::black_box(acc);
    let mut r = [T::zero(); 8];
    for c in acc.chunks_exact(8) {
        for k in 0..8 {
            r[k] += c[k];
        }
    }
    ((r[0] + r[4]) + (r[2] + r[6])) + ((r[1] + r[5]) + (r[3] + r[7])) + tail
}

/// Products below this many flops run on one thread: a split costs a second packing of `b` and
/// a hand-off between threads (tens of microseconds).
const SPLIT_MIN_FLOPS: usize = 1 << 22;
/// Row blocks stay multiples of this (whole kernel tiles).
const SPLIT_ALIGN: usize = 32;

/// Where to split the m output rows in two, if the product is large enough to share and runs on
/// a worker of a rayon pool with other threads (from any other thread, `rayon::join` would hand
/// both halves to the pool and wait).
fn split_rows(m: usize, k: usize, n: usize) -> Option<usize> {
    let top = (m / 2).next_multiple_of(SPLIT_ALIGN);
    let pooled = rayon::current_thread_index().is_some() && rayon::current_num_threads() > 1;
    let worth = 2 * m * k * n >= SPLIT_MIN_FLOPS && top < m && pooled;
    worth.then_some(top)
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
    fn skinny_products_take_the_matrix_vector_path_and_agree() {
        let f = |r: usize, c: usize, s: f64| DMatrix::from_fn(r, c, |i, j| ((i * 7 + j * 3) as f64 * s).sin());
        // (m, k, n, op_a, op_b, the path): the three skinny shapes, each op of b, k = 0, and
        // shapes just past the threshold (the kernel).
        let cases = [
            (37, 2, 50, Op::N, Op::N, Some(Skinny::Inner)),
            (37, 4, 9, Op::N, Op::N, Some(Skinny::Inner)),
            (37, 0, 9, Op::N, Op::N, Some(Skinny::Inner)),
            (37, 300, 2, Op::N, Op::T, Some(Skinny::Columns)),
            (37, 300, 3, Op::N, Op::N, Some(Skinny::Columns)),
            (2, 300, 45, Op::T, Op::N, Some(Skinny::Rows)),
            (4, 33, 45, Op::T, Op::N, Some(Skinny::Rows)),
            (37, 5, 9, Op::N, Op::N, None),
            (2, 300, 45, Op::N, Op::N, None),
            (5, 300, 45, Op::T, Op::N, None),
        ];
        for (m, k, n, op_a, op_b, path) in cases {
            assert_eq!(Skinny::of(m, k, n, op_a, op_b), path, "{m}×{k}×{n}");
            let a = if op_a == Op::N { f(m, k, 0.3) } else { f(k, m, 0.3) };
            let b = if op_b == Op::N { f(k, n, 0.11) } else { f(n, k, 0.11) };
            let opa = if op_a == Op::N { a.clone() } else { a.transpose() };
            let opb = if op_b == Op::N { b.clone() } else { b.transpose() };
            // Into a column block of a wider matrix (a view with a column stride), beta ≠ 0.
            let mut big = f(m + 3, n + 4, 0.7);
            let before = big.view((2, 1), (m, n)).into_owned();
            gemm(0.5, a.as_view(), op_a, b.as_view(), op_b, -2.0, big.view_mut((2, 1), (m, n)));
            let want = 0.5 * &opa * &opb - 2.0 * &before;
            let got = big.view((2, 1), (m, n)).into_owned();
            let err = (&got - &want).abs().max();
            assert!(err <= 1e-12 * (1.0 + k as f64), "{m}×{k}×{n} {op_a:?}{op_b:?}: {err:e}");
            assert!(got.iter().all(|v| v.is_finite()));
            // Nothing outside the block moved.
            assert_eq!(big.row(0), f(m + 3, n + 4, 0.7).row(0));
            // beta = 0 does not read c (a NaN there stays out of the result).
            let mut c = DMatrix::from_element(m, n, f64::NAN);
            gemm(1.0, a.as_view(), op_a, b.as_view(), op_b, 0.0, c.as_view_mut());
            assert!((&c - &opa * &opb).abs().max() <= 1e-12 * (1.0 + k as f64), "{m}×{k}×{n}, beta 0");
        }
    }

    #[test]
    fn small_transposed_left_operands_take_the_packed_kernel_and_agree() {
        let packs = packed::available();
        // The path: ∂L/∂x at the batch-16 bench shape (f32 128 KiB, f64 256 KiB) yes; a left
        // operand past 256 KiB, alpha ≠ 1, beta ∉ {0, 1}, few columns, op(a) = a: no.
        assert_eq!(small_left::<f32>(64, 512, 1600, Op::T, Op::N, 1.0, 0.0), packs);
        assert_eq!(small_left::<f64>(64, 512, 1600, Op::T, Op::N, 1.0, 1.0), packs);
        assert!(!small_left::<f64>(65, 512, 1600, Op::T, Op::N, 1.0, 0.0));
        assert!(!small_left::<f32>(256, 1024, 6400, Op::T, Op::N, 1.0, 0.0));
        assert!(!small_left::<f64>(64, 512, 1600, Op::T, Op::N, 2.0, 0.0));
        assert!(!small_left::<f64>(64, 512, 1600, Op::T, Op::N, 1.0, 0.5));
        assert!(!small_left::<f64>(64, 512, SKINNY, Op::T, Op::N, 1.0, 0.0));
        assert!(!small_left::<f64>(64, 512, 1600, Op::N, Op::N, 1.0, 0.0));
        assert!(!small_left::<f64>(64, 512, 1600, Op::T, Op::T, 1.0, 0.0));
        // Its results, with m and n past whole tiles, into a column block of a wider matrix.
        let f = |r: usize, c: usize, s: f64| DMatrix::from_fn(r, c, |i, j| ((i * 7 + j * 3) as f64 * s).sin());
        for (m, k, n) in [(37, 300, 45), (64, 512, 23), (5, 3, 9)] {
            assert!(small_left::<f64>(m, k, n, Op::T, Op::N, 1.0, 0.0) == packs);
            let (a, b) = (f(k, m, 0.3), f(k, n, 0.11));
            let want = a.transpose() * &b;
            for beta in [0.0, 1.0] {
                let mut big = f(m + 3, n + 4, 0.7);
                let before = big.view((2, 1), (m, n)).into_owned();
                if beta == 0.0 {
                    // beta = 0 does not read c: a NaN there stays out of the result.
                    big.view_mut((2, 1), (m, n)).fill(f64::NAN);
                }
                gemm(1.0, a.as_view(), Op::T, b.as_view(), Op::N, beta, big.view_mut((2, 1), (m, n)));
                let got = big.view((2, 1), (m, n)).into_owned();
                let err = (&got - (&want + beta * &before)).abs().max();
                assert!(got.iter().all(|v| v.is_finite()), "{m}×{k}×{n}, beta {beta}");
                assert!(err <= 1e-12 * (1.0 + k as f64), "{m}×{k}×{n}, beta {beta}: {err:e}");
                // Nothing outside the block moved.
                assert_eq!(big.row(0), f(m + 3, n + 4, 0.7).row(0));
                assert_eq!(big.column(0), f(m + 3, n + 4, 0.7).column(0));
            }
        }
    }

    #[test]
    fn reused_left_operands_pack_only_where_gemm_would_run_its_kernel() {
        // Not for one column, nor for a depth of at most SKINNY (gemm's matrix-vector paths,
        // whose bits differ from the kernels'); else wherever the CPU runs the packed kernel.
        let packs = packed::available();
        let a = DMatrix::from_fn(40, 5, |i, j| (i * 5 + j) as f64);
        let mut buf = PackedMatrix::default();
        assert_eq!(ReusedLeft::new(a.as_view(), Op::N, 16, &mut buf).is_packed(), packs);
        assert_eq!(ReusedLeft::new(a.as_view(), Op::N, 2, &mut buf).is_packed(), packs);
        assert!(!ReusedLeft::new(a.as_view(), Op::N, 1, &mut buf).is_packed());
        assert!(!ReusedLeft::new(a.columns(0, SKINNY), Op::N, 16, &mut buf).is_packed());
        assert_eq!(ReusedLeft::new(a.rows(0, SKINNY + 1), Op::T, 16, &mut buf).is_packed(), packs);
        assert!(!ReusedLeft::new(a.rows(0, SKINNY), Op::T, 16, &mut buf).is_packed());
    }

    #[test]
    fn single_columns_take_the_matrix_vector_path_and_agree() {
        let a = DMatrix::from_fn(9, 7, |i, j| (i as f64 * 0.3 - j as f64 * 0.17).sin());
        let x = DMatrix::from_fn(9, 1, |i, _| (i as f64).cos());
        let y0 = DMatrix::from_fn(7, 1, |i, _| i as f64);
        let mut y = y0.clone();
        gemm(2.0, a.as_view(), Op::T, x.as_view(), Op::N, 0.5, y.as_view_mut());
        assert!((&y - (a.transpose() * &x * 2.0 + &y0 * 0.5)).amax() < 1e-13);
        // Long columns (the vectorised dot products) inside a taller matrix (column stride ≠ rows).
        let tall = DMatrix::from_fn(110, 7, |i, j| ((i * 3 + j * 7) as f64 * 0.13).sin());
        let x = DMatrix::from_fn(100, 1, |i, _| (i as f64 * 0.3).cos());
        let mut y = y0.clone();
        gemm(-1.5, tall.rows(3, 100), Op::T, x.as_view(), Op::N, 2.0, y.as_view_mut());
        assert!((&y - (tall.rows(3, 100).transpose() * &x * -1.5 + &y0 * 2.0)).amax() < 1e-12);
        let mut z = DMatrix::from_element(9, 1, f64::NAN); // beta = 0: never read
        gemm(1.0, a.as_view(), Op::N, y0.as_view(), Op::N, 0.0, z.as_view_mut());
        assert!((&z - &a * &y0).amax() < 1e-13);
    }

    /// A matrix-vector entry point: (op, alpha, a, lda, x, beta, y).
    type Matvec<T> = fn(Op, T, &[T], usize, &[T], T, &mut [T]);

    /// Runs `variant` against the portable [`matvec`] (compiled without target features) on
    /// shapes with tails past every vector width, and asserts the same bits.
    fn same_bits_as_portable<T: Scalar>(variant: Matvec<T>) {
        let (rows, cols, lda) = (203, 45, 211);
        let a: Vec<T> = (0..lda * cols).map(|i| T::of((i as f64 * 0.37).sin())).collect();
        for (op, xn, yn) in [(Op::N, cols, rows), (Op::T, rows, cols)] {
            let x: Vec<T> = (0..xn).map(|i| T::of((i as f64 * 0.23).cos())).collect();
            for beta in [0.0, 1.0, -0.5] {
                let y0: Vec<T> = (0..yn).map(|i| T::of(i as f64 * 0.01)).collect();
                let (mut wide, mut plain) = (y0.clone(), y0);
                variant(op, T::of(1.5), &a, lda, &x, T::of(beta), &mut wide);
                matvec(op, T::of(1.5), &a, lda, &x, T::of(beta), &mut plain);
                assert!(
                    wide.iter().zip(&plain).all(|(w, p)| w.as_f64().to_bits() == p.as_f64().to_bits()),
                    "{op:?} {beta}"
                );
                assert!(plain.iter().all(|v| v.as_f64().is_finite()));
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    #[cfg_attr(not(cpu_avx2), ignore = "this CPU has no AVX2")]
    fn matvec_avx2_has_the_bits_of_the_portable_code() {
        assert!(
            std::arch::is_x86_feature_detected!("avx2"),
            "built on a CPU with AVX2, run on one without: cargo clean"
        );
        // SAFETY: the CPU supports AVX2 (asserted above).
        same_bits_as_portable::<f32>(|op, al, a, l, x, be, y| unsafe { matvec_avx2(op, al, a, l, x, be, y) });
        same_bits_as_portable::<f64>(|op, al, a, l, x, be, y| unsafe { matvec_avx2(op, al, a, l, x, be, y) });
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    #[cfg_attr(not(cpu_avx512f), ignore = "this CPU has no AVX-512F")]
    fn matvec_avx512_has_the_bits_of_the_portable_code() {
        assert!(
            std::arch::is_x86_feature_detected!("avx512f"),
            "built on a CPU with AVX-512F, run on one without: cargo clean"
        );
        // SAFETY: the CPU supports AVX-512F (asserted above).
        same_bits_as_portable::<f32>(|op, al, a, l, x, be, y| unsafe { matvec_avx512(op, al, a, l, x, be, y) });
        same_bits_as_portable::<f64>(|op, al, a, l, x, be, y| unsafe { matvec_avx512(op, al, a, l, x, be, y) });
    }

    #[test]
    fn the_dispatched_matvec_has_the_bits_of_the_portable_code() {
        same_bits_as_portable::<f32>(matvec_dispatch);
        same_bits_as_portable::<f64>(matvec_dispatch);
    }

    #[test]
    fn split_products_are_bitwise_those_of_one_thread() {
        let pool = |threads| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for (m, k, n, op_a) in [(300, 200, 90, Op::N), (513, 64, 130, Op::T), (70, 1000, 64, Op::N)] {
            let (ar, ac) = if op_a == Op::N { (m, k) } else { (k, m) };
            let a = DMatrix::from_fn(ar, ac, |i, j| ((i * 7 + j * 3) as f64 * 0.37).sin());
            let b = DMatrix::from_fn(k, n, |i, j| ((i * 5 + j * 11) as f64 * 0.23).cos());
            let run = |threads| {
                let mut c = DMatrix::from_element(m, n, 0.25);
                pool(threads).install(|| gemm(1.5, a.as_view(), op_a, b.as_view(), Op::N, 0.5, c.as_view_mut()));
                c
            };
            assert!(pool(1).install(|| split_rows(m, k, n)).is_none(), "on one thread nothing is split");
            assert!(pool(2).install(|| split_rows(m, k, n)).is_some(), "({m}, {k}, {n}) is split on 2 threads");
            let (one, two) = (run(1), run(2));
            assert!(one.iter().zip(two.iter()).all(|(x, y)| x.to_bits() == y.to_bits()), "({m}, {k}, {n})");
            let expect =
                (if op_a == Op::N { a.clone() } else { a.transpose() }) * &b * 1.5 + DMatrix::from_element(m, n, 0.125);
            assert!((&one - expect).amax() < 1e-10);
        }
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
