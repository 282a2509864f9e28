//! The long-memory tasks of THEORY.md §9, generated from a random stream (so a batch is a
//! function of the seed, bitwise), with their losses and the baselines a memoryless model scores.
//!
//! Layouts (column t·B + b of an I × T·B matrix is step t of sequence b, as everywhere):
//! - copy, lag L: T = L + 20 steps of one-hot inputs over 10 classes: 10 symbols from 1..=8, L − 1
//!   blanks (0), the delimiter (9), 10 blanks. Targets: blank for the first L + 10 steps, then
//!   the 10 symbols. Loss: cross-entropy averaged over the T·B steps. Baseline 10·ln 8 / (L + 20):
//!   blanks predicted with certainty, then a uniform guess over the 8 symbols.
//! - adding, lag L: T = L steps of two channels, a value U(0, 1) and a marker that is 1 at exactly
//!   two steps, one in each half ([0, ⌊L/2⌋) and [⌊L/2⌋, L)). Target at the last step: the sum of
//!   the two marked values. Loss: squared error at the last step averaged over the batch.
//!   Baseline 1/6: always answering 1 (the variance of a sum of two U(0, 1)).

use crate::loss::{Targets, loss_and_grad};
use crate::scalar::Scalar;
use nalgebra::DMatrix;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Which task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Recall 10 symbols after a lag (THEORY.md §9).
    Copy,
    /// Add the two marked values of a sequence (THEORY.md §9).
    Adding,
}

impl TaskKind {
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Copy => "copy",
            TaskKind::Adding => "adding",
        }
    }
}

/// The copy task's alphabet: blank, 8 symbols, delimiter.
const COPY_CLASSES: usize = 10;
const COPY_SYMBOLS: usize = 10;
const DELIMITER: usize = 9;

/// A task at one lag.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Task {
    pub kind: TaskKind,
    pub lag: usize,
}

/// What a batch is to be compared with.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Copy: a class per step and sequence (T·B, column order).
    Classes(Vec<usize>),
    /// Adding: the sum per sequence (B), at the last step.
    Sum(Vec<f64>),
}

/// One batch: inputs I × T·B and targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub x: DMatrix<f64>,
    pub steps: usize,
    pub batch: usize,
    pub target: Target,
}

impl Task {
    /// The shortest lag each task is defined for.
    pub fn min_lag(kind: TaskKind) -> usize {
        match kind {
            TaskKind::Copy => 1,
            TaskKind::Adding => 2,
        }
    }

    /// Sequence length T.
    pub fn steps(&self) -> usize {
        match self.kind {
            TaskKind::Copy => self.lag + 2 * COPY_SYMBOLS,
            TaskKind::Adding => self.lag,
        }
    }

    /// The longest distance in steps between an input and the output that needs it: a symbol and
    /// its recall (copy, L + 10), the first step and the answer (adding, L − 1, as a marker may
    /// fall on step 0). To solve the task, the gradient must carry the loss this far back.
    pub fn dependency(&self) -> usize {
        match self.kind {
            TaskKind::Copy => self.lag + COPY_SYMBOLS,
            TaskKind::Adding => self.lag - 1,
        }
    }

    /// The task whose length is closest to `steps` (the shortest there is, if none is as short).
    pub fn of_length(kind: TaskKind, steps: usize) -> Task {
        let offset = Task { kind, lag: 0 }.steps();
        Task { kind, lag: steps.saturating_sub(offset).max(Task::min_lag(kind)) }
    }

    /// The lag (real-valued) whose longest dependency is `d` steps: [`Task::dependency`] inverted.
    pub fn lag_for_dependency(kind: TaskKind, d: f64) -> f64 {
        match kind {
            TaskKind::Copy => d - COPY_SYMBOLS as f64,
            TaskKind::Adding => d + 1.0,
        }
    }

    /// Input channels I.
    pub fn input_size(&self) -> usize {
        match self.kind {
            TaskKind::Copy => COPY_CLASSES,
            TaskKind::Adding => 2,
        }
    }

    /// Outputs O of the model's head.
    pub fn output_size(&self) -> usize {
        match self.kind {
            TaskKind::Copy => COPY_CLASSES,
            TaskKind::Adding => 1,
        }
    }

    /// The loss of a memoryless model (THEORY.md §9).
    pub fn baseline(&self) -> f64 {
        match self.kind {
            TaskKind::Copy => COPY_SYMBOLS as f64 * 8f64.ln() / self.steps() as f64,
            TaskKind::Adding => 1.0 / 6.0,
        }
    }

    /// `batch` sequences drawn from `rng`.
    pub fn batch(&self, batch: usize, rng: &mut ChaCha8Rng) -> Batch {
        let t = self.steps();
        let mut x = DMatrix::zeros(self.input_size(), t * batch);
        let target = match self.kind {
            TaskKind::Copy => {
                let mut classes = vec![0; t * batch];
                for b in 0..batch {
                    for s in 0..COPY_SYMBOLS {
                        let symbol = rng.random_range(1..=8usize);
                        x[(symbol, s * batch + b)] = 1.0;
                        classes[(self.lag + COPY_SYMBOLS + s) * batch + b] = symbol;
                    }
                    for s in COPY_SYMBOLS..t {
                        let class = if s == self.lag + COPY_SYMBOLS - 1 { DELIMITER } else { 0 };
                        x[(class, s * batch + b)] = 1.0;
                    }
                }
                Target::Classes(classes)
            }
            TaskKind::Adding => {
                let half = t / 2;
                let mut sums = vec![0.0; batch];
                for (b, sum) in sums.iter_mut().enumerate() {
                    for s in 0..t {
                        x[(0, s * batch + b)] = rng.random::<f64>();
                    }
                    for marked in [rng.random_range(0..half), rng.random_range(half..t)] {
                        x[(1, marked * batch + b)] = 1.0;
                        *sum += x[(0, marked * batch + b)];
                    }
                }
                Target::Sum(sums)
            }
        };
        Batch { x, steps: t, batch, target }
    }
}

impl Batch {
    /// The task's loss of outputs `y` (O × T·B) and its gradient ∂loss/∂y: averaged as the task
    /// says, so that losses compare across lags and batch sizes.
    pub fn loss<T: Scalar>(&self, y: &DMatrix<T>) -> (T, DMatrix<T>) {
        match &self.target {
            Target::Classes(classes) => {
                let (sum, dy) = loss_and_grad(y, &Targets::Ce(classes.clone()));
                let n = T::of(classes.len() as f64);
                (sum / n, dy / n)
            }
            Target::Sum(sums) => {
                let (b, last) = (self.batch, (self.steps - 1) * self.batch);
                let mut dy = DMatrix::zeros(y.nrows(), y.ncols());
                let mut total = T::zero();
                for (k, &s) in sums.iter().enumerate() {
                    let d = y[(0, last + k)] - T::of(s);
                    total += d * d;
                    dy[(0, last + k)] = T::of(2.0) * d / T::of(b as f64);
                }
                (total / T::of(b as f64), dy)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    #[test]
    fn copy_layout_and_its_memoryless_baseline() {
        let task = Task { kind: TaskKind::Copy, lag: 7 };
        let (t, b) = (task.steps(), 3);
        assert_eq!(t, 27);
        let batch = task.batch(b, &mut rng(1));
        let Target::Classes(classes) = &batch.target else { panic!("copy has classes") };
        for seq in 0..b {
            let class_at = |s: usize| (0..10).find(|&c| batch.x[(c, s * b + seq)] == 1.0).unwrap();
            for s in 0..t {
                assert_eq!(batch.x.column(s * b + seq).sum(), 1.0, "one-hot");
            }
            let symbols: Vec<usize> = (0..10).map(class_at).collect();
            assert!(symbols.iter().all(|&c| (1..=8).contains(&c)));
            assert!((10..16).all(|s| class_at(s) == 0), "L − 1 = 6 blanks");
            assert_eq!(class_at(16), DELIMITER);
            assert!((17..27).all(|s| class_at(s) == 0));
            let targets: Vec<usize> = (0..t).map(|s| classes[s * b + seq]).collect();
            assert!(targets[..17].iter().all(|&c| c == 0));
            assert_eq!(&targets[17..], &symbols[..], "the symbols come back after the delimiter");
        }
        // A memoryless model: blanks with certainty, then uniform over the 8 symbols.
        let mut y = DMatrix::from_element(10, t * b, f64::NEG_INFINITY);
        for s in 0..t {
            for seq in 0..b {
                if s < 17 {
                    y[(0, s * b + seq)] = 0.0;
                } else {
                    (1..=8).for_each(|c| y[(c, s * b + seq)] = 0.0);
                }
            }
        }
        let (loss, _) = batch.loss(&y);
        assert!((loss - task.baseline()).abs() <= 1e-15 * task.baseline(), "{loss} vs {}", task.baseline());
        assert!((task.baseline() - 10.0 * 8f64.ln() / 27.0).abs() < 1e-15);
    }

    #[test]
    fn adding_layout_and_its_baseline() {
        let task = Task { kind: TaskKind::Adding, lag: 50 };
        let b = 20_000;
        let batch = task.batch(b, &mut rng(2));
        let Target::Sum(sums) = &batch.target else { panic!("adding has sums") };
        for (seq, &target) in sums.iter().enumerate() {
            let marked: Vec<usize> = (0..50).filter(|&s| batch.x[(1, s * b + seq)] == 1.0).collect();
            assert_eq!(marked.len(), 2);
            assert!(marked[0] < 25 && marked[1] >= 25, "one marker in each half: {marked:?}");
            assert_eq!(target, batch.x[(0, marked[0] * b + seq)] + batch.x[(0, marked[1] * b + seq)]);
        }
        // Always answering 1: E[(S − 1)²] = Var S = 1/6; (S − 1)² has sd ≈ 0.197, so the batch
        // mean is within 5 standard errors (0.007) of it.
        let y = DMatrix::from_element(1, 50 * b, 1.0);
        let (loss, dy) = batch.loss(&y);
        assert!((loss - task.baseline()).abs() < 5.0 * 0.197 / (b as f64).sqrt(), "{loss}");
        assert!(dy.columns(0, 49 * b).iter().all(|&v| v == 0.0), "only the last step is scored");
    }

    #[test]
    fn the_longest_dependency_is_the_layouts() {
        // Copy: the symbol at step s is the target at step s + dependency, for every s.
        let task = Task { kind: TaskKind::Copy, lag: 7 };
        let b = task.batch(3, &mut rng(5));
        let Target::Classes(classes) = &b.target else { panic!("copy has classes") };
        for s in 0..COPY_SYMBOLS {
            for seq in 0..3 {
                let symbol = (1..=8).find(|&c| b.x[(c, s * 3 + seq)] == 1.0).expect("a symbol");
                assert_eq!(classes[(s + task.dependency()) * 3 + seq], symbol);
            }
        }
        assert_eq!(task.dependency(), 17);
        // Adding: the largest distance from a marker to the last step over many sequences.
        let task = Task { kind: TaskKind::Adding, lag: 10 };
        let b = task.batch(256, &mut rng(6));
        let far = (0..256)
            .map(|seq| (0..10).find(|&t| b.x[(1, t * 256 + seq)] == 1.0).map(|t| 9 - t).expect("a marker"))
            .max();
        assert_eq!(far, Some(task.dependency()));
        for kind in [TaskKind::Copy, TaskKind::Adding] {
            let t = Task { kind, lag: 40 };
            assert_eq!(Task::lag_for_dependency(kind, t.dependency() as f64), 40.0);
            assert_eq!(Task::of_length(kind, t.steps()), t);
            assert_eq!(Task::of_length(kind, 1).lag, Task::min_lag(kind));
        }
    }

    #[test]
    fn a_batch_is_a_function_of_the_stream() {
        for kind in [TaskKind::Copy, TaskKind::Adding] {
            let task = Task { kind, lag: 12 };
            assert_eq!(task.batch(4, &mut rng(3)), task.batch(4, &mut rng(3)));
            assert_ne!(task.batch(4, &mut rng(3)), task.batch(4, &mut rng(4)));
        }
    }

    #[test]
    fn task_gradients_match_finite_differences_of_the_task_loss() {
        for kind in [TaskKind::Copy, TaskKind::Adding] {
            let task = Task { kind, lag: 3 };
            let batch = task.batch(2, &mut rng(5));
            let mut r = rng(6);
            let y: DMatrix<f64> =
                DMatrix::from_fn(task.output_size(), batch.x.ncols(), |_, _| r.random_range(-1.0..1.0));
            let (_, dy) = batch.loss(&y);
            for i in 0..y.len() {
                let (mut up, mut down) = (y.clone(), y.clone());
                up[i] += 1e-6;
                down[i] -= 1e-6;
                let fd = (batch.loss(&up).0 - batch.loss(&down).0) / 2e-6;
                // Central differences of an O(1) loss at h = 1e-6 carry ~1e-10 of round-off.
                assert!((fd - dy[i]).abs() <= 1e-8, "{kind:?} {i}: {fd} vs {}", dy[i]);
            }
        }
    }
}
