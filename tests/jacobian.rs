//! Each cell's analytic one-step Jacobian ∂s_t/∂s_{t-1} (THEORY.md §4) against finite
//! differences, and against backward: δs_{t-1} = J_tᵀ δs_t must hold to round-off.

mod common;

use common::*;
use gradlab::bptt::{Inputs, backward, forward, step_jacobian};
use gradlab::cell::CellKind;
use nalgebra::DMatrix;

/// State (h then c) after one step from `h_prev`, `c_prev` with input `x` (one sequence).
fn one_step(params: &gradlab::params::Params<f64>, x: &DMatrix<f64>, state: &[f64]) -> Vec<f64> {
    let h = params.hidden();
    let mut inp = Inputs::with_zero_state(params, x.clone(), 1, 1);
    inp.h0[0].copy_from_slice(&state[..h]);
    if params.kind().has_cell_state() {
        inp.c0[0].copy_from_slice(&state[h..]);
    }
    let tape = forward(params, &inp);
    let mut s: Vec<f64> = tape.h_n(0).iter().copied().collect();
    s.extend(tape.c_n(0).iter());
    s
}

#[test]
fn jacobians_match_finite_differences() {
    for (n, kind) in CellKind::ALL.into_iter().enumerate() {
        let mut r = rng(100 + n as u64);
        let params = random_params(kind, 1, 3, 5, None, 0.9, &mut r);
        let (steps, batch) = (4, 2);
        let inputs = random_inputs(&params, steps, batch, &mut r);
        let tape = forward(&params, &inputs);
        let mut worst = 0.0_f64;
        for t in 1..=steps {
            for b in 0..batch {
                let j = step_jacobian(&params, &tape, 0, t, b);
                let col = (t - 1) * batch + b;
                let x = inputs.x.columns(col, 1).into_owned();
                let mut prev: Vec<f64> = tape.layers[0].hs.column(col).iter().copied().collect();
                prev.extend(tape.layers[0].cs.column(col).iter());
                assert_eq!(j.shape(), (prev.len(), prev.len()));
                let mut fd = DMatrix::zeros(prev.len(), prev.len());
                for k in 0..prev.len() {
                    let eps = 1e-6;
                    let (mut up, mut down) = (prev.clone(), prev.clone());
                    up[k] += eps;
                    down[k] -= eps;
                    let (su, sd) = (one_step(&params, &x, &up), one_step(&params, &x, &down));
                    for i in 0..prev.len() {
                        fd[(i, k)] = (su[i] - sd[i]) / (2.0 * eps);
                    }
                }
                let e = rel_err(&format!("{kind} t={t} b={b} Jacobian"), j.as_slice(), fd.as_slice());
                assert!(e < 1e-8, "{kind} t={t} b={b}: Jacobian relative error {e:.2e}");
                worst = worse(worst, e);
            }
        }
        println!("{kind}: worst Jacobian relative error {worst:.2e}");
    }
}

#[test]
fn backward_equals_transposed_jacobian() {
    for (n, kind) in CellKind::ALL.into_iter().enumerate() {
        let mut r = rng(200 + n as u64);
        let params = random_params(kind, 1, 3, 6, None, 1.2, &mut r);
        let inputs = random_inputs(&params, 1, 1, &mut r);
        let tape = forward(&params, &inputs);
        let dy = uniform(&mut r, 6, 1, 1.0);
        let grads = backward(&params, &inputs, &tape, &dy);
        let j = step_jacobian(&params, &tape, 0, 1, 0);
        let mut ds = dy.as_slice().to_vec();
        ds.resize(j.nrows(), 0.0); // δc_1 = 0: no loss on c
        let expect = j.transpose() * DMatrix::from_column_slice(ds.len(), 1, &ds);
        let mut got = grads.h0[0].as_slice().to_vec();
        if kind.has_cell_state() {
            got.extend(grads.c0[0].iter());
        }
        let e = rel_err(&format!("{kind} dh0, dc0"), &got, expect.as_slice());
        assert!(e < 1e-13, "{kind}: backward vs Jᵀ relative error {e:.2e}");
    }
}
