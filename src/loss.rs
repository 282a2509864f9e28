//! Losses summed over steps, batch and outputs (THEORY.md §2): `mse` L = Σ (y - target)² and
//! `ce` L = Σ -log softmax(y)[label], with ∂L/∂y.

use crate::scalar::Scalar;
use nalgebra::DMatrix;

/// Which loss a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Sum of squared errors against `target`.
    Mse,
    /// Softmax cross-entropy against integer `labels`.
    Ce,
}

/// What the outputs are compared with; column t·B + b is step t of sequence b.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets<T: Scalar> {
    /// O × T·B real targets.
    Mse(DMatrix<T>),
    /// T·B class labels, each < O.
    Ce(Vec<usize>),
}

impl<T: Scalar> Targets<T> {
    /// Converts every value to another scalar type.
    pub fn cast<U: Scalar>(&self) -> Targets<U> {
        match self {
            Targets::Mse(t) => Targets::Mse(t.map(|v| U::of(v.as_f64()))),
            Targets::Ce(l) => Targets::Ce(l.clone()),
        }
    }

    pub fn kind(&self) -> LossKind {
        match self {
            Targets::Mse(_) => LossKind::Mse,
            Targets::Ce(_) => LossKind::Ce,
        }
    }
}

/// The loss of outputs `y` (O × T·B) and its gradient ∂L/∂y.
pub fn loss_and_grad<T: Scalar>(y: &DMatrix<T>, targets: &Targets<T>) -> (T, DMatrix<T>) {
    match targets {
        Targets::Mse(target) => {
            debug_assert_eq!(y.shape(), target.shape());
            let diff = y - target;
            (diff.norm_squared(), diff * T::of(2.0))
        }
        Targets::Ce(labels) => {
            debug_assert_eq!(y.ncols(), labels.len());
            let mut total = T::zero();
            let mut dy = y.clone();
            for (mut col, &label) in dy.column_iter_mut().zip(labels) {
                let max = col.max();
                let sum = col.iter().fold(T::zero(), |s, &v| s + (v - max).exp());
                let lse = max + sum.ln();
                total += lse - col[label];
                col.apply(|v| *v = (*v - lse).exp());
                col[label] -= T::one();
            }
            (total, dy)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ce_matches_hand_computation() {
        let y = DMatrix::from_column_slice(3, 1, &[1.0, 2.0, 0.5]);
        let (l, dy) = loss_and_grad(&y, &Targets::Ce(vec![1]));
        let z: f64 = [1.0f64, 2.0, 0.5].iter().map(|v| v.exp()).sum();
        assert!((l - (z.ln() - 2.0)).abs() < 1e-15);
        assert!((dy[1] - (2.0f64.exp() / z - 1.0)).abs() < 1e-15);
        assert!((dy[0] - 1.0f64.exp() / z).abs() < 1e-15);
    }

    #[test]
    fn ce_is_stable_for_huge_logits() {
        let y = DMatrix::from_column_slice(2, 1, &[1000.0, -1000.0]);
        let (l, dy) = loss_and_grad(&y, &Targets::Ce(vec![1]));
        assert_eq!(l, 2000.0);
        assert_eq!(dy[1], -1.0);
    }

    #[test]
    fn mse_is_a_plain_sum_of_squares() {
        let y = DMatrix::from_column_slice(2, 2, &[1.0, 2.0, 3.0, 4.0]);
        let t = DMatrix::from_column_slice(2, 2, &[0.0, 2.0, 1.0, 1.0]);
        let (l, dy) = loss_and_grad(&y, &Targets::Mse(t));
        assert_eq!(l, 1.0 + 4.0 + 9.0);
        assert_eq!(dy.as_slice(), &[2.0, 0.0, 4.0, 6.0]);
    }
}
