//! The exact cases of THEORY.md §6 the probes must reproduce: zero input with W_hh = g·Q gives
//! every Lyapunov exponent ln g (IRNN: 0), the Pascanu bound holds on random RNNs, and a
//! saturated RNN at T = 1000 still has finite log-norms, hundreds below zero.

use gradlab::bptt::{Inputs, forward};
use gradlab::cell::CellKind;
use gradlab::init::{InitSpec, Scheme};
use gradlab::probe::{LyapunovOptions, Quantity, jacobian_flow, lyapunov};
use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn zero_input_tape(
    spec: &InitSpec,
    hidden: usize,
    steps: usize,
    seed: u64,
) -> (gradlab::params::Params<f64>, gradlab::bptt::Tape<f64>) {
    let params = spec.build(CellKind::Rnn, 1, 3, hidden, &mut ChaCha8Rng::seed_from_u64(seed));
    let inputs = Inputs::with_zero_state(&params, DMatrix::zeros(3, steps), steps, 1);
    let tape = forward(&params, &inputs);
    (params, tape)
}

#[test]
fn orthogonal_times_g_gives_every_exponent_ln_g() {
    for g in [0.5, 0.9, 1.3] {
        let spec = InitSpec {
            recurrent: vec![Scheme::Orthogonal(g)],
            input: vec![],
            bias: vec![Scheme::Zeros],
            gate_bias: vec![],
        };
        let (params, tape) = zero_input_tape(&spec, 12, 50, 1);
        assert_eq!(tape.layers[0].hs.amax(), 0.0, "h must stay 0");
        for (i, l) in lyapunov(&params, &tape, 0, 0, &LyapunovOptions::finite_time(None)).exponents.iter().enumerate() {
            assert!((l - g.ln()).abs() < 1e-13, "g = {g}: exponent {i} = {l}, expected {}", g.ln());
        }
        // And ∂h_T/∂h_s = (gQ)^{T-s}: every singular value g^{T-s}.
        for row in jacobian_flow(&params, &tape, 0, 0, &[Quantity::Dh]) {
            let k = row.distance as f64;
            assert!((row.log_spectral_norm - k * g.ln()).abs() < 1e-11, "{row:?}");
            assert!((row.log_frobenius_norm - (k * g.ln() + 0.5 * 12f64.ln())).abs() < 1e-11, "{row:?}");
        }
    }
}

#[test]
fn identity_recurrence_has_zero_exponents() {
    let spec = InitSpec {
        recurrent: vec![Scheme::Identity(1.0)],
        input: vec![],
        bias: vec![Scheme::Zeros],
        gate_bias: vec![],
    };
    let (params, tape) = zero_input_tape(&spec, 8, 40, 2);
    assert!(
        lyapunov(&params, &tape, 0, 0, &LyapunovOptions::finite_time(None)).exponents.iter().all(|l| l.abs() < 1e-15)
    );
}

#[test]
fn pascanu_bound_holds_on_random_rnns() {
    for (seed, g) in [(1, 0.6), (2, 1.0), (3, 1.8), (4, 3.0)] {
        let spec = InitSpec {
            recurrent: vec![Scheme::Gaussian(g)],
            input: vec![Scheme::Gaussian(1.0)],
            bias: vec![Scheme::Gaussian(0.1)],
            gate_bias: vec![],
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let params = spec.build(CellKind::Rnn, 1, 4, 24, &mut rng);
        let x = DMatrix::from_fn(4, 60, |i, j| ((i * 7 + j * 3) as f64).sin());
        let tape = forward(&params, &Inputs::with_zero_state(&params, x, 60, 1));
        let sigma = params.layers()[0].weight_hh.clone().singular_values().max();
        let gamma = tape.layers[0].cache.amax(); // max tanh'(a) over the trajectory, ≤ 1
        assert!(gamma <= 1.0);
        let mut tight = f64::INFINITY;
        for row in jacobian_flow(&params, &tape, 0, 0, &[Quantity::Dh]) {
            let bound = row.distance as f64 * (gamma * sigma).ln();
            assert!(row.log_spectral_norm <= bound + 1e-12, "g = {g}: {} > bound {bound}", row.log_spectral_norm);
            if row.distance > 0 {
                tight = tight.min(bound - row.log_spectral_norm);
            }
        }
        assert!(tight.is_finite());
    }
}

#[test]
fn saturated_rnn_at_t_1000_has_finite_log_norms() {
    let spec = InitSpec {
        recurrent: vec![Scheme::Gaussian(8.0)],
        input: vec![Scheme::Gaussian(20.0)],
        bias: vec![Scheme::Zeros],
        gate_bias: vec![],
    };
    let params = spec.build(CellKind::Rnn, 1, 4, 16, &mut ChaCha8Rng::seed_from_u64(5));
    let x = DMatrix::from_fn(4, 1000, |i, j| ((i * 13 + j * 5) as f64 * 0.37).cos());
    let tape = forward(&params, &Inputs::with_zero_state(&params, x, 1000, 1));
    let rows = jacobian_flow(&params, &tape, 0, 0, &[Quantity::Dh]);
    assert_eq!(rows.len(), 1001);
    for r in &rows {
        assert!(r.log_spectral_norm.is_finite() && r.log_frobenius_norm.is_finite(), "{r:?}");
        assert!(r.log_spectral_norm <= r.log_frobenius_norm + 1e-9);
    }
    let end = rows[0].log_spectral_norm;
    assert!(end < -745.0, "ln‖∂h_T/∂h_0‖ = {end}: expected far below f64's range");
    assert_eq!(rows[0].spectral_norm, 0.0, "the plain norm underflows to 0 while its log stays exact");
    println!("saturated RNN: ln ‖∂h_1000/∂h_0‖₂ = {end:.1}");
}

#[test]
fn leading_lyapunov_exponents_match_the_full_spectrum() {
    let spec = InitSpec {
        recurrent: vec![Scheme::Gaussian(1.5)],
        input: vec![Scheme::Gaussian(1.0)],
        bias: vec![],
        gate_bias: vec![],
    };
    for cell in CellKind::ALL {
        let params = spec.build(cell, 1, 3, 10, &mut ChaCha8Rng::seed_from_u64(9));
        let x = DMatrix::from_fn(3, 80, |i, j| ((i * 5 + j * 11) as f64 * 0.21).sin());
        let tape = forward(&params, &Inputs::with_zero_state(&params, x, 80, 1));
        let full = lyapunov(&params, &tape, 0, 0, &LyapunovOptions::finite_time(None)).exponents;
        let top = lyapunov(&params, &tape, 0, 0, &LyapunovOptions::finite_time(Some(3))).exponents;
        assert_eq!(top.len(), 3);
        for (a, b) in top.iter().zip(&full) {
            assert!((a - b).abs() < 1e-12, "{cell}: {a} vs {b}");
        }
    }
}

#[test]
fn probe_spectral_norms_match_a_plain_svd_on_large_states() {
    // H = 64 (LSTM state 128), norms by the warm-started Lanczos process: every norm must agree
    // with an SVD of the plainly multiplied product.
    for (cell, q) in [(CellKind::Rnn, Quantity::Dh), (CellKind::Lstm, Quantity::Dstate), (CellKind::Gru, Quantity::Dh)]
    {
        let spec = InitSpec {
            recurrent: vec![Scheme::Orthogonal(1.0)],
            input: vec![Scheme::Gaussian(1.0)],
            bias: vec![],
            gate_bias: vec![],
        };
        let params = spec.build(cell, 1, 3, 64, &mut ChaCha8Rng::seed_from_u64(11));
        let x = DMatrix::from_fn(3, 40, |i, j| ((i * 3 + j * 7) as f64 * 0.41).sin());
        let tape = forward(&params, &Inputs::with_zero_state(&params, x, 40, 1));
        let rows: Vec<_> = jacobian_flow(&params, &tape, 0, 0, &[q]).into_iter().collect();
        let n = if cell == CellKind::Lstm { 128 } else { 64 };
        let mut p = DMatrix::<f64>::identity(n, n);
        for s in (0..=40).rev() {
            if s < 40 {
                p = &p * gradlab::bptt::step_jacobian(&params, &tape, 0, s + 1, 0);
            }
            let exact = p.clone().singular_values().max().ln();
            let got = rows.iter().find(|r| r.step == s).unwrap().log_spectral_norm;
            assert!((got - exact).abs() < 1e-11, "{cell} s = {s}: {got} vs {exact}");
        }
    }
}
