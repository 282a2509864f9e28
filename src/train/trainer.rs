//! Training one model on one task: batches drawn from the run's own stream, exact BPTT in f32 or
//! f64, optional global-norm clipping, Adam; per update the loss, the gradient norm before
//! clipping and whether it was clipped; every `probe_every` updates (and at 0 and the end) the
//! horizon of the cell's headline Jacobian product (‖∂h_T/∂h_s‖, the LSTM's (h, c) map) on a
//! held-out sequence, exact in f64; after the last update, the loss on a held-out evaluation batch
//! of [`EVAL_BATCH`] sequences, by which a run counts as solved.
//!
//! Streams: the model, the batches, the held-out sequence and the evaluation batch each come from
//! their own ChaCha8 stream of the seed, so a run is a function of its configuration, on any
//! number of threads.

use super::optim::{Adam, AdamConfig, clip_grad_norm};
use super::tasks::{Batch, Task};
use crate::bptt::{Grads, Inputs, Tape, backward_into, forward, forward_into};
use crate::cell::CellKind;
use crate::estimate::summarize;
use crate::init::InitSpec;
use crate::params::{HeadParams, Params};
use crate::probe::{Quantity, jacobian_flow};
use crate::scalar::Scalar;
use nalgebra::{DMatrix, DVector};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A run counts as solved when its evaluation loss is below this fraction of the task's baseline
/// (THEORY.md §9).
pub const SOLVED_FRACTION: f64 = 0.1;
/// Sequences in the evaluation batch.
pub const EVAL_BATCH: usize = 256;

/// Everything a training run depends on.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub task: Task,
    pub cell: CellKind,
    pub init: InitSpec,
    pub hidden: usize,
    pub batch: usize,
    /// Adam updates.
    pub steps: usize,
    pub adam: AdamConfig,
    /// Global-norm clipping threshold.
    pub clip: Option<f64>,
    pub seed: u64,
    /// Updates between horizon probes (0: only before and after training).
    pub probe_every: usize,
    /// The horizon threshold (absolute, on the norm).
    pub threshold: f64,
}

/// One logged update (`train.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    /// Updates done before this row's batch (0 = at initialisation).
    pub step: usize,
    /// The task loss of this update's batch, before the update.
    pub loss: f64,
    /// Global 2-norm of the gradient before clipping.
    pub grad_norm: f64,
    pub clipped: bool,
    /// The horizon on the held-out sequence, when probed at this step: the smallest distance
    /// after which the norm stays below the threshold; empty if probed and never below, or not
    /// probed (see `probed`).
    pub horizon: Option<usize>,
    pub probed: bool,
}

/// A finished run.
#[derive(Clone, Debug)]
pub struct Trained {
    pub params: Params<f64>,
    pub log: Vec<LogRow>,
    /// The task loss on the evaluation batch after the last update.
    pub eval_loss: f64,
}

impl Trained {
    /// The loss of a training batch after the last update (the last log row).
    pub fn final_loss(&self) -> f64 {
        self.log.last().map_or(f64::NAN, |r| r.loss)
    }

    /// Whether the evaluation loss is below [`SOLVED_FRACTION`] of the baseline of `task`.
    pub fn solved(&self, task: Task) -> bool {
        self.eval_loss < SOLVED_FRACTION * task.baseline()
    }

    /// The first logged update at which the mean training loss over the `window` updates up to it
    /// is below [`SOLVED_FRACTION`] of the baseline: how long a run took to solve `task`.
    pub fn steps_to_solve(&self, task: Task, window: usize) -> Option<usize> {
        let threshold = SOLVED_FRACTION * task.baseline();
        let window = window.max(1);
        let mut sum = 0.0;
        for (i, r) in self.log.iter().enumerate() {
            sum += r.loss;
            if i >= window {
                sum -= self.log[i - window].loss;
            }
            if i + 1 >= window && sum / (window as f64) < threshold {
                return Some(r.step);
            }
        }
        None
    }
}

/// The stream `k` of `seed`: 0 the model, 1 the batches, 2 the held-out sequence, 3 the
/// evaluation batch.
fn stream(seed: u64, k: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(k);
    r
}

/// The initial model: `init` for the recurrent layer, PyTorch's `nn.Linear` default
/// U(−1/√H, 1/√H) for the head.
pub fn initial_params(config: &TrainConfig) -> Params<f64> {
    let mut rng = stream(config.seed, 0);
    let task = config.task;
    let rnn = config.init.build(config.cell, 1, task.input_size(), config.hidden, &mut rng);
    let a = 1.0 / (config.hidden as f64).sqrt();
    let o = task.output_size();
    let weight = DMatrix::from_fn(o, config.hidden, |_, _| rng.random_range(-a..a));
    let bias = DVector::from_fn(o, |_, _| rng.random_range(-a..a));
    Params::new(config.cell, rnn.layers().to_vec(), Some(HeadParams { weight, bias })).expect("shapes built to fit")
}

/// The training batches of a run, in update order (the first is update 0's).
pub fn batches(config: &TrainConfig) -> impl Iterator<Item = Batch> + '_ {
    let mut rng = stream(config.seed, 1);
    std::iter::repeat_with(move || config.task.batch(config.batch, &mut rng))
}

/// The horizon of the headline product on the held-out sequence, exact in f64.
fn horizon(params: &Params<f64>, held_out: &Inputs<f64>, threshold: f64) -> Option<usize> {
    let tape = forward(params, held_out);
    let q = Quantity::headline(params.kind());
    let flow = jacobian_flow(params, &tape, 0, 0, &[q]);
    let by_distance: Vec<f64> = flow.iter().rev().map(|r| r.log_spectral_norm).collect();
    summarize(&by_distance, threshold).horizon
}

/// One update's numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// The task loss of the batch, before the update.
    pub loss: f64,
    /// Global 2-norm of the gradient before clipping.
    pub grad_norm: f64,
    pub clipped: bool,
}

/// A model in training, in precision `T`: its parameters, Adam's state, and the tape and
/// gradients every update reuses (allocated by the first, reallocated only when a batch's shape
/// changes).
pub struct Learner<T: Scalar> {
    pub params: Params<T>,
    adam: Adam<T>,
    clip: Option<f64>,
    buffers: Option<(Tape<T>, Grads<T>)>,
}

impl<T: Scalar> Learner<T> {
    pub fn new(params: Params<T>, adam: AdamConfig, clip: Option<f64>) -> Self {
        let lengths: Vec<usize> = params.clone().slices_mut().iter().map(|(_, s)| s.len()).collect();
        Learner { adam: Adam::new(adam, &lengths), params, clip, buffers: None }
    }

    /// `batch` as the model's inputs, in precision `T`, from a zero state.
    fn inputs(&self, batch: &Batch) -> Inputs<T> {
        Inputs::with_zero_state(&self.params, batch.x.map(T::of), batch.steps, batch.batch)
    }

    /// The task loss of `batch`, without a gradient.
    pub fn loss(&self, batch: &Batch) -> f64 {
        batch.loss(&forward(&self.params, &self.inputs(batch)).y).0.as_f64()
    }

    /// The loss of `batch` and its gradient (clipped to the global norm `clip`); with `update`,
    /// one Adam step on it.
    pub fn step(&mut self, batch: &Batch, update: bool) -> Step {
        let inputs = self.inputs(batch);
        let (tape, grads) = match &mut self.buffers {
            Some((tape, grads)) if tape.steps == batch.steps && tape.batch == batch.batch => {
                forward_into(&self.params, &inputs, tape);
                (tape, grads)
            }
            buffers => {
                let tape = forward(&self.params, &inputs);
                let (tape, grads) = buffers.insert((tape, Grads::empty(&self.params)));
                (tape, grads)
            }
        };
        let (loss, dy) = batch.loss(&tape.y);
        backward_into(&self.params, &inputs, tape, &dy, grads);
        let mut g = grads.params.slices_mut();
        let mut g_refs: Vec<&mut [T]> = g.iter_mut().map(|(_, s)| &mut **s).collect();
        let clipped = clip_grad_norm(&mut g_refs, self.clip);
        if update {
            let g_refs: Vec<&[T]> = g_refs.iter().map(|s| &**s).collect();
            let mut p = self.params.slices_mut();
            let mut p_refs: Vec<&mut [T]> = p.iter_mut().map(|(_, s)| &mut **s).collect();
            self.adam.update(&mut p_refs, &g_refs);
        }
        Step { loss: loss.as_f64(), grad_norm: clipped.norm, clipped: clipped.clipped }
    }
}

/// Trains in precision `T`; `on_row` sees every log row as it is made (a progress bar).
pub fn train<T: Scalar>(config: &TrainConfig, mut on_row: impl FnMut(&LogRow)) -> Trained {
    let task = config.task;
    let mut learner = Learner::<T>::new(initial_params(config).cast(), config.adam, config.clip);
    let mut batches = batches(config);
    let held = task.batch(1, &mut stream(config.seed, 2));
    let held_out = Inputs::with_zero_state(&learner.params.cast::<f64>(), held.x, held.steps, 1);
    let mut log = Vec::with_capacity(config.steps + 1);
    for step in 0..=config.steps {
        let probed = step == 0 || step == config.steps || (config.probe_every > 0 && step % config.probe_every == 0);
        let horizon = probed.then(|| horizon(&learner.params.cast(), &held_out, config.threshold)).flatten();
        let batch = batches.next().expect("an endless stream");
        // The last row measures the trained model: no update after it.
        let s = learner.step(&batch, step < config.steps);
        let row = LogRow { step, loss: s.loss, grad_norm: s.grad_norm, clipped: s.clipped, horizon, probed };
        on_row(&row);
        log.push(row);
    }
    let eval_loss = learner.loss(&task.batch(EVAL_BATCH, &mut stream(config.seed, 3)));
    Trained { params: learner.params.cast(), log, eval_loss }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::tasks::TaskKind;

    fn config(kind: TaskKind, lag: usize, cell: CellKind, steps: usize) -> TrainConfig {
        TrainConfig {
            task: Task { kind, lag },
            cell,
            init: InitSpec::default(),
            hidden: 16,
            batch: 32,
            steps,
            adam: AdamConfig { lr: 0.01, ..AdamConfig::default() },
            clip: Some(1.0),
            seed: 7,
            probe_every: 50,
            threshold: 1e-3,
        }
    }

    #[test]
    fn an_lstm_learns_the_adding_task_at_a_short_lag() {
        let c = config(TaskKind::Adding, 10, CellKind::Lstm, 400);
        let run = train::<f64>(&c, |_| {});
        let baseline = c.task.baseline();
        eprintln!(
            "adding L = 10: loss {} → {} (held out {}, baseline {baseline})",
            run.log[0].loss,
            run.final_loss(),
            run.eval_loss
        );
        assert!(run.log[0].loss > 0.5 * baseline, "an untrained model is no better than the baseline");
        assert!(run.final_loss() < 0.1 * baseline, "final loss {} vs baseline {baseline}", run.final_loss());
        assert!(run.solved(c.task), "held-out loss {} vs baseline {baseline}", run.eval_loss);
        let solved_at = run.steps_to_solve(c.task, 10).expect("solved");
        assert!((10..400).contains(&solved_at), "{solved_at}");
        // The window's mean is below the threshold at that step and at no step before.
        let mean = |s: usize| run.log[s - 9..=s].iter().map(|r| r.loss).sum::<f64>() / 10.0;
        assert!(mean(solved_at) < 0.1 * baseline && mean(solved_at - 1) >= 0.1 * baseline);
        assert_eq!(run.log.len(), 401);
        assert!(run.log.iter().filter(|r| r.probed).count() == 9, "probed at 0, 50, …, 400");
    }
}
