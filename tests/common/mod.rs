//! Shared helpers for the integration tests: small random models and finite differences.
#![allow(dead_code)]

use gradlab::bptt::{Inputs, forward};
use gradlab::cell::CellKind;
use gradlab::loss::{Targets, loss_and_grad};
use gradlab::params::{HeadParams, LayerParams, Params};
use nalgebra::{DMatrix, DVector};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn uniform(rng: &mut ChaCha8Rng, rows: usize, cols: usize, scale: f64) -> DMatrix<f64> {
    DMatrix::from_fn(rows, cols, |_, _| scale * rng.random_range(-1.0..1.0))
}

fn uniform_vec(rng: &mut ChaCha8Rng, len: usize, scale: f64) -> DVector<f64> {
    DVector::from_fn(len, |_, _| scale * rng.random_range(-1.0..1.0))
}

/// A random model; `scale` multiplies U(-1, 1) weights.
pub fn random_params(
    kind: CellKind,
    layers: usize,
    input: usize,
    hidden: usize,
    head: Option<usize>,
    scale: f64,
    rng: &mut ChaCha8Rng,
) -> Params<f64> {
    let g = kind.gates() * hidden;
    let layers = (0..layers)
        .map(|k| LayerParams {
            weight_ih: uniform(rng, g, if k == 0 { input } else { hidden }, scale),
            weight_hh: uniform(rng, g, hidden, scale),
            bias_ih: uniform_vec(rng, g, scale),
            bias_hh: uniform_vec(rng, g, scale),
        })
        .collect();
    let head = head.map(|o| HeadParams { weight: uniform(rng, o, hidden, scale), bias: uniform_vec(rng, o, scale) });
    Params::new(kind, layers, head).unwrap()
}

/// Random inputs with random (non-zero) initial states.
pub fn random_inputs(params: &Params<f64>, steps: usize, batch: usize, rng: &mut ChaCha8Rng) -> Inputs<f64> {
    let mut inp = Inputs::with_zero_state(params, uniform(rng, params.input(), steps * batch, 1.0), steps, batch);
    for h in inp.h0.iter_mut().chain(inp.c0.iter_mut()) {
        *h = uniform(rng, h.nrows(), h.ncols(), 0.5);
    }
    inp
}

pub fn random_targets(
    params: &Params<f64>,
    steps: usize,
    batch: usize,
    ce: bool,
    rng: &mut ChaCha8Rng,
) -> Targets<f64> {
    let o = params.output();
    if ce {
        Targets::Ce((0..steps * batch).map(|_| rng.random_range(0..o)).collect())
    } else {
        Targets::Mse(uniform(rng, o, steps * batch, 1.0))
    }
}

pub fn loss(params: &Params<f64>, inputs: &Inputs<f64>, targets: &Targets<f64>) -> f64 {
    loss_and_grad(&forward(params, inputs).y, targets).0
}

/// Central difference of `f` with respect to the value `elem` picks in `state` (restored after).
pub fn central_diff<S>(state: &mut S, elem: impl Fn(&mut S) -> &mut f64, eps: f64, f: impl Fn(&S) -> f64) -> f64 {
    let orig = *elem(state);
    *elem(state) = orig + eps;
    let up = f(state);
    *elem(state) = orig - eps;
    let down = f(state);
    *elem(state) = orig;
    (up - down) / (2.0 * eps)
}

/// Panics unless every value of `a` (computed) and `b` (reference) is finite, naming `what` and
/// the index: a comparison must not let NaN or ±inf through.
pub fn assert_finite(what: &str, a: &[f64], b: &[f64]) {
    for (side, v) in [("computed", a), ("reference", b)] {
        if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            panic!("{what}: {side} value at index {i} is {x}, expected a finite number");
        }
    }
}

/// The larger of two errors, NaN if either is NaN (`f64::max` would drop the NaN).
pub fn worse(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}

/// max |a - b| / max |b|: the norm-wise relative error of `a` against reference `b` (`what`
/// names them in a failure).
pub fn rel_err(what: &str, a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    assert_finite(what, a, b);
    let scale = b.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(b).fold(0.0_f64, |m, (x, y)| m.max((x - y).abs()));
    if scale == 0.0 { diff } else { diff / scale }
}

/// The worst element-wise relative error |a - b| / |b|, over elements with |b| ≥ `floor`·max |b|
/// (tinier ones are judged against that floor instead).
pub fn elementwise_rel_err(what: &str, a: &[f64], b: &[f64], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    assert_finite(what, a, b);
    let scale = b.iter().fold(0.0_f64, |m, v| m.max(v.abs())) * floor;
    a.iter().zip(b).fold(0.0_f64, |m, (x, y)| {
        let d = y.abs().max(scale);
        if d == 0.0 { m.max((x - y).abs()) } else { m.max((x - y).abs() / d) }
    })
}

/// A built-in spec shrunk to a few seconds in a debug build: small H and T, two seeds, a short
/// burn-in; everything else (kind, cells, inits, probes) as built in.
pub fn shrunk_built_in(name: &str) -> String {
    let text = gradlab::experiment::BUILT_IN.iter().find(|(n, _)| *n == name).unwrap().1;
    let mut t: toml::Table = text.parse().unwrap();
    let ints = |v: &[i64]| toml::Value::Array(v.iter().map(|&i| toml::Value::Integer(i)).collect());
    t.insert("hidden".into(), ints(&[6]));
    match t.get_mut("train").and_then(|p| p.as_table_mut()) {
        // Training runs: two short lags, a few updates of small batches.
        Some(train) => {
            train.insert("lags".into(), ints(&[4, 8]));
            for (k, v) in [("steps", 30), ("batch", 8), ("probe_every", 10), ("log_every", 5)] {
                train.insert(k.into(), toml::Value::Integer(v));
            }
        }
        None => {
            t.insert("seq_len".into(), ints(&[30]));
        }
    }
    t.insert("seeds".into(), toml::Value::Array(vec![toml::Value::Integer(0), toml::Value::Integer(1)]));
    if let Some(p) = t.get_mut("probes").and_then(|p| p.as_table_mut())
        && p.contains_key("lyapunov_burn_in")
    {
        p.insert("lyapunov_burn_in".into(), toml::Value::Integer(10));
    }
    toml::to_string(&t).unwrap()
}
