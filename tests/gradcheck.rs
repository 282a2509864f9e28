//! Finite-difference checks of the hand-derived BPTT: every parameter, x, h0 and c0, for each
//! cell × loss × 1 and 2 layers × batch 1 and 3, with and without a head.

mod common;

use common::*;
use gradlab::bptt::gradients;
use gradlab::cell::CellKind;

const EPS: f64 = 1e-6;
const TOL: f64 = 1e-6;

/// Returns the worst relative error over all tensors of one configuration.
fn check(kind: CellKind, ce: bool, layers: usize, batch: usize, head: bool, seed: u64) -> f64 {
    let mut r = rng(seed);
    let (input, hidden, steps) = (3, 4, 5);
    let params = random_params(kind, layers, input, hidden, head.then_some(3), 0.8, &mut r);
    let inputs = random_inputs(&params, steps, batch, &mut r);
    let targets = random_targets(&params, steps, batch, ce, &mut r);
    let (_, _, grads) = gradients(&params, &inputs, &targets);
    let mut worst = 0.0_f64;
    let mut report = |name: &str, fd: Vec<f64>, an: &[f64]| {
        let e = rel_err(name, an, &fd);
        assert!(e <= TOL, "{kind} ce={ce} layers={layers} batch={batch} head={head}: {name} rel err {e:.2e}");
        worst = worse(worst, e);
    };

    let mut analytic = grads.params.clone();
    for (ti, (name, an)) in analytic.slices_mut().into_iter().enumerate() {
        let fd =
            fd_grad(&params, an.len(), |p, e| &mut p.slices_mut().swap_remove(ti).1[e], |p| loss(p, &inputs, &targets));
        report(&name, fd, an);
    }
    let fd = fd_grad(&inputs, inputs.x.len(), |i, e| &mut i.x[e], |i| loss(&params, i, &targets));
    report("x", fd, grads.x.as_slice());
    for layer in 0..layers {
        let fd = fd_grad(&inputs, grads.h0[layer].len(), |i, e| &mut i.h0[layer][e], |i| loss(&params, i, &targets));
        report(&format!("h0[{layer}]"), fd, grads.h0[layer].as_slice());
        if kind.has_cell_state() {
            let fd =
                fd_grad(&inputs, grads.c0[layer].len(), |i, e| &mut i.c0[layer][e], |i| loss(&params, i, &targets));
            report(&format!("c0[{layer}]"), fd, grads.c0[layer].as_slice());
        }
    }
    worst
}

/// Central differences of `f` with respect to each of the `len` values `elem(state, e)`.
fn fd_grad<S: Clone>(
    state: &S,
    len: usize,
    elem: impl Fn(&mut S, usize) -> &mut f64,
    f: impl Fn(&S) -> f64,
) -> Vec<f64> {
    (0..len)
        .map(|e| {
            let mut s = state.clone();
            central_diff(&mut s, |s| elem(s, e), EPS, &f)
        })
        .collect()
}

fn check_cell(kind: CellKind) {
    let mut worst = 0.0_f64;
    let mut seed = 0;
    for ce in [false, true] {
        for layers in [1, 2] {
            for batch in [1, 3] {
                for head in [false, true] {
                    seed += 1;
                    worst = worse(worst, check(kind, ce, layers, batch, head, seed));
                }
            }
        }
    }
    println!("{kind}: worst finite-difference relative error {worst:.2e}");
}

#[test]
fn rnn_gradients_match_finite_differences() {
    check_cell(CellKind::Rnn);
}

#[test]
fn lstm_gradients_match_finite_differences() {
    check_cell(CellKind::Lstm);
}

/// The ReLU RNN: its kinks (a = 0) are measure-zero for these random inputs, so central
/// differences see a smooth function; about half the units are dead (a < 0) at any step and
/// pass no gradient, which the differences see too.
#[test]
fn relu_rnn_gradients_match_finite_differences() {
    check_cell(CellKind::RnnRelu);
}

#[test]
fn gru_gradients_match_finite_differences() {
    check_cell(CellKind::Gru);
}

#[test]
fn comparisons_fail_on_non_finite_values() {
    let nan = std::panic::catch_unwind(|| rel_err("w", &[1.0, f64::NAN], &[1.0, 2.0])).unwrap_err();
    let msg = nan.downcast_ref::<String>().unwrap();
    assert!(msg.contains("w: computed value at index 1 is NaN"), "{msg}");
    assert!(std::panic::catch_unwind(|| elementwise_rel_err("w", &[1.0], &[f64::INFINITY], 1e-6)).is_err());
    assert!(worse(0.0, f64::NAN).is_nan() && worse(f64::NAN, 1.0).is_nan() && worse(1.0, 2.0) == 2.0);
}
