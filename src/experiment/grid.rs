//! The grid of an experiment: a flat, ordered list of points, each carrying its own parameters
//! and its own random stream, so results do not depend on thread count or run order; and what a
//! point draws from its stream first (its network and inputs).

use super::spec::{InputDist, Spec};
use crate::bptt::Inputs;
use crate::cell::CellKind;
use crate::params::Params;
use crate::train::tasks::Task;
use nalgebra::DMatrix;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// One run of the experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Position in grid order.
    pub index: usize,
    pub cell: CellKind,
    /// Index into `Spec::inits`.
    pub init: usize,
    pub hidden: usize,
    /// Sequence length T (of a training run: its task's).
    pub seq_len: usize,
    pub seed: u64,
    /// The training run of a trainability point.
    pub train: Option<TrainRun>,
}

/// What a trainability point trains on: the grid's task axes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainRun {
    pub task: Task,
    /// Global-norm clipping threshold (`None`: unclipped).
    pub clip: Option<f64>,
}

/// The grid point and sequence a row belongs to: the leading columns of every experiment CSV
/// (written as the first half of a `(Key, Row)` pair, which the csv crate flattens).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Key {
    pub cell: CellKind,
    pub init: String,
    pub hidden: usize,
    pub seq_len: usize,
    pub seed: u64,
    /// Sequence index within the point's batch.
    pub batch: usize,
}

impl Key {
    pub fn new(spec: &Spec, p: &Point, batch: usize) -> Key {
        Key {
            cell: p.cell,
            init: spec.inits[p.init].label.clone(),
            hidden: p.hidden,
            seq_len: p.seq_len,
            seed: p.seed,
            batch,
        }
    }
}

/// The rows whose key satisfies `at`, in order: the rows of one group for a summary or a chart.
pub fn rows_at<R>(rows: &[(Key, R)], at: impl Fn(&Key) -> bool) -> Vec<&R> {
    rows.iter().filter(|(k, _)| at(k)).map(|(_, r)| r).collect()
}

/// The Cartesian product in a fixed order: cell, init, hidden, seq_len, seed; an init is paired
/// only with the cells it applies to. A trainability spec's product is cell, init, hidden, task,
/// lag, seed, clip, with the task's length as `seq_len`.
pub fn expand(spec: &Spec) -> Vec<Point> {
    let mut points = Vec::new();
    for &cell in &spec.cells {
        for (init, named) in spec.inits.iter().enumerate() {
            if !named.applies_to(cell) {
                continue;
            }
            for &hidden in &spec.hidden {
                let mut push = |seq_len, seed, train| {
                    points.push(Point { index: points.len(), cell, init, hidden, seq_len, seed, train })
                };
                match &spec.train {
                    None => {
                        for &seq_len in &spec.seq_len {
                            for &seed in &spec.seeds {
                                push(seq_len, seed, None);
                            }
                        }
                    }
                    Some(t) => {
                        for task in t.task_lags() {
                            for &seed in &spec.seeds {
                                for &clip in &t.clips {
                                    push(task.steps(), seed, Some(TrainRun { task, clip }));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    points
}

/// The point's random stream, derived from the spec seed and (cell, init, hidden, seed) but not
/// from the sequence length: a longer sequence extends the same network and input stream.
pub fn point_rng(spec: &Spec, p: &Point) -> ChaCha8Rng {
    let key = format!("{}|{}|{}|{}", p.cell.name(), spec.inits[p.init].label, p.hidden, p.seed);
    ChaCha8Rng::seed_from_u64(splitmix64(spec.seed ^ fnv1a(key.as_bytes())))
}

/// A point's network (one layer, f64) and input batch with zero initial state, drawn from `rng`
/// in that order: weights, then inputs column by column.
pub fn draw(spec: &Spec, p: &Point, rng: &mut ChaCha8Rng) -> (Params<f64>, Inputs<f64>) {
    let params = spec.inits[p.init].spec.build(p.cell, 1, spec.input_size, p.hidden, rng);
    let n = spec.input_size * p.seq_len * spec.batch;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(match spec.input {
            InputDist::Gaussian(sd) => sd * Distribution::<f64>::sample(&StandardNormal, rng),
            InputDist::Uniform(a) => rng.random_range(-a..a),
            InputDist::Zeros => 0.0,
        });
    }
    let x = DMatrix::from_vec(spec.input_size, p.seq_len * spec.batch, v);
    let inputs = Inputs::with_zero_state(&params, x, p.seq_len, spec.batch);
    (params, inputs)
}

/// FNV-1a, 64 bit: a fixed, platform-independent string hash.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// SplitMix64's finaliser: spreads nearby seeds over the whole range.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn vanishing_grid_pairs_inits_with_their_cells() {
        let spec = Spec::built_in("vanishing").unwrap();
        let points = expand(&spec);
        let per = spec.hidden.len() * spec.seq_len.len() * spec.seeds.len();
        // rnn: pytorch, small, orthogonal, large; rnn-relu: pytorch, irnn; lstm: pytorch, forget1,
        // chrono; gru: pytorch, orthogonal.
        assert_eq!(points.len(), 11 * per);
        assert!(points.iter().enumerate().all(|(i, p)| p.index == i));
        assert!(points.iter().all(|p| spec.inits[p.init].applies_to(p.cell)));
    }
}
