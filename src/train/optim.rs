//! Adam (Kingma & Ba 2015) and global-norm gradient clipping (Pascanu, Mikolov & Bengio 2013),
//! in the operation order of PyTorch's `torch.optim.Adam` (single-tensor path) and
//! `torch.nn.utils.clip_grad_norm_`, so that a run reproduces PyTorch's to round-off:
//!
//!   m ← lerp(m, g, 1 − β₁)            v ← β₂·v + (1 − β₂)·g²
//!   θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
//!
//! and clipping multiplies every gradient by min(1, c / (‖g‖ + 10⁻⁶)), ‖g‖ the 2-norm of all
//! tensors together.

use crate::scalar::Scalar;

/// Adam's settings; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// Adam's state for a list of tensors (flat slices, in a fixed order).
#[derive(Clone, Debug)]
pub struct Adam<T: Scalar> {
    pub config: AdamConfig,
    m: Vec<Vec<T>>,
    v: Vec<Vec<T>>,
    step: i32,
}

/// `torch.lerp(start, end, w)`: start + w·(end − start) for w < ½, else end − (end − start)·(1 − w).
fn lerp<T: Scalar>(start: T, end: T, w: T) -> T {
    if w < T::of(0.5) { start + w * (end - start) } else { end - (end - start) * (T::one() - w) }
}

impl<T: Scalar> Adam<T> {
    /// Zero moments for tensors of these lengths.
    pub fn new(config: AdamConfig, lengths: &[usize]) -> Self {
        let zeros = || lengths.iter().map(|&n| vec![T::zero(); n]).collect();
        Adam { config, m: zeros(), v: zeros(), step: 0 }
    }

    /// Updates steps taken.
    pub fn steps(&self) -> i32 {
        self.step
    }

    /// One update of `params` by `grads` (same tensors, same order).
    pub fn update(&mut self, params: &mut [&mut [T]], grads: &[&[T]]) {
        assert_eq!(params.len(), self.m.len(), "Adam was made for {} tensors", self.m.len());
        self.step += 1;
        let c = self.config;
        let (b1, b2, eps) = (T::of(c.beta1), T::of(c.beta2), T::of(c.eps));
        let bias1 = T::one() - b1.powi(self.step);
        let bias2_sqrt = (T::one() - b2.powi(self.step)).sqrt();
        let step_size = T::of(c.lr) / bias1;
        for (((p, g), m), v) in params.iter_mut().zip(grads).zip(&mut self.m).zip(&mut self.v) {
            assert_eq!((p.len(), g.len()), (m.len(), m.len()), "a tensor changed length");
            for (((p, &g), m), v) in p.iter_mut().zip(g.iter()).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = lerp(*m, g, T::one() - b1);
                *v = *v * b2 + g * g * (T::one() - b2);
                let denom = v.sqrt() / bias2_sqrt + eps;
                *p -= step_size * (*m / denom);
            }
        }
    }
}

/// What clipping did: the gradient's global 2-norm before, and whether it was scaled down.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clipped {
    pub norm: f64,
    pub clipped: bool,
}

/// The global 2-norm of `grads` (PyTorch: the norm of the per-tensor norms), and with
/// `max_norm`, every gradient scaled by min(1, max_norm / (norm + 10⁻⁶)).
pub fn clip_grad_norm<T: Scalar>(grads: &mut [&mut [T]], max_norm: Option<f64>) -> Clipped {
    let per_tensor: Vec<T> = grads.iter().map(|g| g.iter().fold(T::zero(), |s, &v| s + v * v).sqrt()).collect();
    let norm = per_tensor.iter().fold(T::zero(), |s, &n| s + n * n).sqrt();
    let Some(max) = max_norm else { return Clipped { norm: norm.as_f64(), clipped: false } };
    let coef = T::of(max) / (norm + T::of(1e-6));
    if coef < T::one() {
        grads.iter_mut().for_each(|g| g.iter_mut().for_each(|v| *v *= coef));
    }
    Clipped { norm: norm.as_f64(), clipped: coef < T::one() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_gradient_moves_every_step_by_lr() {
        // m/(1 − β₁ᵗ) = c and √v/√(1 − β₂ᵗ) = |c| (to round-off): a step of lr·c/(|c| + ε).
        let config = AdamConfig { lr: 0.01, ..AdamConfig::default() };
        let mut adam = Adam::<f64>::new(config, &[2]);
        let (mut theta, g) = ([1.0, -2.0], [3.0, -0.5]);
        for t in 1..=50 {
            adam.update(&mut [&mut theta], &[&g]);
            for (k, (&th, &gk)) in theta.iter().zip(&g).enumerate() {
                let start = [1.0, -2.0][k];
                let expected = start - t as f64 * 0.01 * gk / (gk.abs() + 1e-8);
                assert!((th - expected).abs() <= 1e-12, "step {t}, θ{k}: {th} vs {expected}");
            }
        }
    }

    /// Kingma & Ba's Algorithm 1 as written (m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ),
    /// θ −= α m̂/(√v̂ + ε)): an independent route to the same trajectory.
    fn algorithm_1(theta: f64, grad: impl Fn(f64) -> f64, c: AdamConfig, steps: i32) -> Vec<f64> {
        let (mut th, mut m, mut v, mut out) = (theta, 0.0, 0.0, Vec::new());
        for t in 1..=steps {
            let g = grad(th);
            m = c.beta1 * m + (1.0 - c.beta1) * g;
            v = c.beta2 * v + (1.0 - c.beta2) * g * g;
            let (mh, vh) = (m / (1.0 - c.beta1.powi(t)), v / (1.0 - c.beta2.powi(t)));
            th -= c.lr * mh / (vh.sqrt() + c.eps);
            out.push(th);
        }
        out
    }

    #[test]
    fn a_quadratic_follows_algorithm_1() {
        // f(θ) = ½·a·(θ − 3)²: Adam oscillates in towards 3.
        let a = 4.0;
        let grad = |th: f64| a * (th - 3.0);
        let config = AdamConfig { lr: 0.1, beta1: 0.8, beta2: 0.99, eps: 1e-8 };
        let reference = algorithm_1(-1.0, grad, config, 200);
        let mut adam = Adam::<f64>::new(config, &[1]);
        let mut theta = [-1.0];
        for (t, &r) in reference.iter().enumerate() {
            let g = [grad(theta[0])];
            adam.update(&mut [&mut theta], &[&g]);
            assert!((theta[0] - r).abs() <= 1e-12 * r.abs().max(1.0), "step {}: {} vs {r}", t + 1, theta[0]);
        }
        assert!((theta[0] - 3.0).abs() < 0.05, "converges: {}", theta[0]);
        assert_eq!(adam.steps(), 200);
    }

    #[test]
    fn clipping_scales_the_global_norm_as_pytorch() {
        // Norms 3 and 4 per tensor, 5 together.
        let (mut a, mut b) = ([3.0f64, 0.0], [0.0f64, 4.0]);
        let c = clip_grad_norm(&mut [&mut a, &mut b], Some(1.0));
        assert_eq!(c, Clipped { norm: 5.0, clipped: true });
        let coef = 1.0 / (5.0 + 1e-6);
        assert_eq!((a[0], b[1]), (3.0 * coef, 4.0 * coef));
        // Below the threshold: untouched, bit for bit.
        let (mut a, mut b) = ([0.3f64, 0.1], [0.2f64, -0.4]);
        let c = clip_grad_norm(&mut [&mut a, &mut b], Some(10.0));
        assert!(!c.clipped && (c.norm - 0.3f64.hypot(0.1).hypot(0.2f64.hypot(0.4))).abs() < 1e-15);
        assert_eq!((a, b), ([0.3, 0.1], [0.2, -0.4]));
        // Without a threshold the norm is still measured.
        let c = clip_grad_norm(&mut [&mut [6.0f64, 8.0][..]], None);
        assert_eq!(c, Clipped { norm: 10.0, clipped: false });
    }
}
