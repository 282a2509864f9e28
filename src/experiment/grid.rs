//! The grid of an experiment: a flat, ordered list of points, each carrying its own parameters
//! and its own random stream, so results do not depend on thread count or run order.

use super::spec::Spec;
use crate::cell::CellKind;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One run of the experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Position in grid order.
    pub index: usize,
    pub cell: CellKind,
    /// Index into `Spec::inits`.
    pub init: usize,
    pub hidden: usize,
    pub seq_len: usize,
    pub seed: u64,
}

/// The Cartesian product in a fixed order: cell, init, hidden, seq_len, seed; an init is paired
/// only with the cells it applies to.
pub fn expand(spec: &Spec) -> Vec<Point> {
    let mut points = Vec::new();
    for &cell in &spec.cells {
        for (init, named) in spec.inits.iter().enumerate() {
            if !named.applies_to(cell) {
                continue;
            }
            for &hidden in &spec.hidden {
                for &seq_len in &spec.seq_len {
                    for &seed in &spec.seeds {
                        points.push(Point { index: points.len(), cell, init, hidden, seq_len, seed });
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

/// FNV-1a, 64 bit: a fixed, platform-independent string hash.
fn fnv1a(bytes: &[u8]) -> u64 {
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
        // rnn: pytorch, small, orthogonal, large; lstm: pytorch, forget1, chrono; gru: pytorch, orthogonal.
        assert_eq!(points.len(), 9 * per);
        assert!(points.iter().enumerate().all(|(i, p)| p.index == i));
        assert!(points.iter().all(|p| spec.inits[p.init].applies_to(p.cell)));
    }
}
