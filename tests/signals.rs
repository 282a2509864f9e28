//! The probes' error signal and Jacobian norms against routes that share no code with them, in
//! regimes where a wrong derivative shows: `err` (log-space, rescaled every step) against the
//! plain f64 BPTT of the same last-step loss, for every cell, at ordinary and saturating gains;
//! and a saturated tanh RNN whose ‖∂h_T/∂h_s‖ has a closed form through sech²(a) =
//! 4e^{−2|a|}/(1 + e^{−2|a|})², where an implementation taking 1 − h² gets exactly 0.

use gradlab::bptt::{Inputs, forward, state_gradients};
use gradlab::cell::CellKind;
use gradlab::init::{InitSpec, Scheme};
use gradlab::params::{LayerParams, Params};
use gradlab::probe::{Quantity, error_signal, jacobian_flow, state_error_signal};
use nalgebra::{DMatrix, DVector};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

#[test]
fn error_signal_equals_plain_bptt_of_a_last_step_loss() {
    let (h, t) = (12, 40);
    for kind in CellKind::ALL {
        for gain in [1.0, 4.0] {
            let spec = InitSpec {
                recurrent: vec![Scheme::Gaussian(gain)],
                input: vec![Scheme::Gaussian(gain)],
                bias: vec![Scheme::Gaussian(1.0)],
                gate_bias: vec![],
            };
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            let params = spec.build(kind, 1, 3, h, &mut rng);
            let x = DMatrix::from_fn(3, t, |_, _| StandardNormal.sample(&mut rng));
            let inputs = Inputs::with_zero_state(&params, x, t, 1);
            let tape = forward(&params, &inputs);
            let g: Vec<f64> = (0..h).map(|i| ((i as f64) * 0.7).sin() + 0.2).collect();
            let mut dy = DMatrix::zeros(h, t);
            dy.column_mut(t - 1).copy_from(&DVector::from_column_slice(&g));
            let plain = state_gradients(&params, &inputs, &tape, &dy).swap_remove(0);
            let err = error_signal(&params, &tape, 0, 0, &g);
            assert_eq!(err.len(), t + 1);
            let mut checked = 0;
            for row in &err {
                assert_eq!(row.quantity, Quantity::Err);
                let norm = plain.h.column(row.step).norm();
                // Compare where the plain product is comfortably inside f64's normal range.
                if norm > 1e-250 {
                    let (ours, reference) = (row.log_spectral_norm, norm.ln());
                    assert!(
                        (ours - reference).abs() <= 1e-9 * reference.abs().max(1.0),
                        "{kind} gain {gain} s = {}: ln‖err‖ {ours} vs plain BPTT {reference}",
                        row.step
                    );
                    checked += 1;
                }
            }
            assert!(checked >= 10, "{kind} gain {gain}: only {checked} steps compared");
            // The whole state's signal: ∂L/∂(h_s, c_s) for the LSTM, ∂L/∂h_s otherwise.
            let whole = state_error_signal(&params, &tape, 0, 0, &g);
            assert_eq!(whole.len(), t + 1);
            for (s, &ours) in whole.iter().enumerate() {
                let norm = plain.h.column(s).norm_squared();
                let norm = (norm + if plain.c.is_empty() { 0.0 } else { plain.c.column(s).norm_squared() }).sqrt();
                if norm > 1e-250 {
                    let reference = norm.ln();
                    assert!(
                        (ours - reference).abs() <= 1e-9 * reference.abs().max(1.0),
                        "{kind} gain {gain} s = {s}: ln‖state err‖ {ours} vs plain BPTT {reference}"
                    );
                }
            }
        }
    }
}

/// A tanh RNN with zero input, W_hh = w·I and biases ±b: every unit sits at a_1 = ±b, then at
/// a = ±(b + w) (tanh(b) rounds to 1 for b = 25).
fn saturated_rnn(h: usize, w: f64, b: f64) -> Params<f64> {
    let bias = DVector::from_fn(h, |i, _| if i % 2 == 0 { b } else { -b });
    let layer = LayerParams {
        weight_ih: DMatrix::from_element(h, 2, 0.3),
        weight_hh: DMatrix::identity(h, h) * w,
        bias_ih: DVector::zeros(h),
        bias_hh: bias,
    };
    Params::new(CellKind::Rnn, vec![layer], None).unwrap()
}

/// ln sech²(a), exactly: ln 4 − 2|a| − 2 ln(1 + e^{−2|a|}).
fn ln_sech2(a: f64) -> f64 {
    4f64.ln() - 2.0 * a.abs() - 2.0 * (-2.0 * a.abs()).exp().ln_1p()
}

#[test]
fn saturated_rnn_matches_its_closed_form() {
    let (h, t, w, b) = (4, 20, 0.5, 25.0);
    let params = saturated_rnn(h, w, b);
    let inputs = Inputs::with_zero_state(&params, DMatrix::zeros(2, t), t, 1);
    let tape = forward(&params, &inputs);
    assert_eq!(tape.output().column(3)[0], 1.0, "tanh(25.5) rounds to 1: 1 − h² would be 0");
    // ‖∂h_T/∂h_s‖₂ = Π_{t=s+1..T} w·sech²(a_t), a_1 = 25, a_t = 25.5 after.
    let per_step = w.ln() + ln_sech2(b + w);
    for row in jacobian_flow(&params, &tape, 0, 0, &[Quantity::Dh]) {
        let k = row.distance as f64;
        let expected = if row.step == 0 { (k - 1.0) * per_step + w.ln() + ln_sech2(b) } else { k * per_step };
        assert!(
            (row.log_spectral_norm - expected).abs() <= 1e-12 * expected.abs().max(1.0),
            "s = {}: {} vs {expected}",
            row.step,
            row.log_spectral_norm
        );
    }
    // The probe's error signal from ∂L/∂h_T = (1, …, 1): the same product times √H, at every
    // distance (down to e^{-1030}, far below f64: only its per-step rescaling keeps it finite).
    let ones = vec![1.0; h];
    for row in error_signal(&params, &tape, 0, 0, &ones) {
        let k = row.distance as f64;
        let product = if row.step == 0 { (k - 1.0) * per_step + w.ln() + ln_sech2(b) } else { k * per_step };
        let expected = product + (h as f64).sqrt().ln();
        assert!(
            (row.log_frobenius_norm - expected).abs() <= 1e-12 * expected.abs().max(1.0),
            "err at s = {}: {} vs {expected}",
            row.step,
            row.log_frobenius_norm
        );
    }
    // Plain f64 BPTT of a last-step loss with ∂L/∂h_T = 1: each unit's gradient is the same
    // product, down to e^{-250} (k = 5).
    let mut dy = DMatrix::zeros(h, t);
    dy.column_mut(t - 1).fill(1.0);
    let plain = state_gradients(&params, &inputs, &tape, &dy).swap_remove(0);
    for k in 1..=5 {
        let expected = k as f64 * per_step;
        for (i, &v) in plain.h.column(t - k).iter().enumerate() {
            assert!(v > 0.0, "k = {k}, unit {i}: {v} (a 1 − h² derivative gives 0)");
            assert!(
                (v.ln() - expected).abs() <= 1e-12 * expected.abs(),
                "k = {k}, unit {i}: ln {} vs {expected}",
                v.ln()
            );
        }
    }
}

/// The recorded error signal of a batch is, column by column, that of each sequence run alone:
/// two layers, three sequences, every cell (recording indexes the columns as t·B + b).
#[test]
fn batched_state_gradients_are_those_of_each_sequence_alone() {
    let (steps, batch, hidden) = (5, 3, 4);
    for kind in CellKind::ALL {
        let spec = InitSpec {
            recurrent: vec![Scheme::Gaussian(1.5)],
            input: vec![Scheme::Gaussian(1.0)],
            bias: vec![Scheme::Gaussian(0.5)],
            gate_bias: vec![],
        };
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let params = spec.build(kind, 2, 3, hidden, &mut rng);
        let mut normal = |r: usize, c: usize| DMatrix::from_fn(r, c, |_, _| StandardNormal.sample(&mut rng));
        let mut inputs = Inputs::with_zero_state(&params, normal(3, steps * batch), steps, batch);
        for s in inputs.h0.iter_mut().chain(inputs.c0.iter_mut()) {
            *s = normal(hidden, batch) * 0.5;
        }
        let dy = normal(hidden, steps * batch);
        let batched = state_gradients(&params, &inputs, &forward(&params, &inputs), &dy);
        for b in 0..batch {
            let pick = |m: &DMatrix<f64>, cols: usize| DMatrix::from_fn(m.nrows(), cols, |i, t| m[(i, t * batch + b)]);
            let mut alone = Inputs::with_zero_state(&params, pick(&inputs.x, steps), steps, 1);
            for (one, all) in alone.h0.iter_mut().chain(alone.c0.iter_mut()).zip(inputs.h0.iter().chain(&inputs.c0)) {
                *one = all.columns(b, 1).into_owned();
            }
            let single = state_gradients(&params, &alone, &forward(&params, &alone), &pick(&dy, steps));
            for (layer, (all, one)) in batched.iter().zip(&single).enumerate() {
                for (what, a, o) in [("h", &all.h, &one.h), ("c", &all.c, &one.c)] {
                    assert_eq!(a.shape(), (o.nrows(), (steps + 1) * batch), "{kind} layer {layer} {what}");
                    let a = pick(a, steps + 1);
                    let finite = a.iter().chain(o.iter()).all(|v| v.is_finite());
                    assert!(finite && (o.amax() > 0.0 || o.is_empty()), "{kind} layer {layer} {what}: {o}");
                    let diff = (&a - o).amax();
                    assert!(diff <= 1e-12 * o.amax().max(1.0), "{kind} layer {layer} sequence {b} {what}: {diff:.2e}");
                }
            }
        }
    }
}

/// A ReLU RNN whose units are all dead (pre-activations < 0 at every step): ∂h_T/∂h_s and the
/// error signal are exactly zero before T, so their logs are −∞ — never NaN (the rescaling of
/// a zero product must not divide by its zero maximum).
#[test]
fn dead_relu_network_reports_minus_infinity_not_nan() {
    let (h, t) = (3, 6);
    let layer = LayerParams {
        weight_ih: DMatrix::from_element(h, 2, 0.1),
        weight_hh: DMatrix::from_element(h, h, 0.2),
        bias_ih: DVector::from_element(h, -5.0),
        bias_hh: DVector::zeros(h),
    };
    let params = Params::new(CellKind::RnnRelu, vec![layer], None).unwrap();
    let inputs = Inputs::with_zero_state(&params, DMatrix::from_element(2, t, 1.0), t, 1);
    let tape = forward(&params, &inputs);
    assert_eq!(tape.output().amax(), 0.0, "every unit is dead");
    let rows = jacobian_flow(&params, &tape, 0, 0, &[Quantity::Dh]);
    assert_eq!(rows.len(), t + 1);
    for row in &rows {
        // At s = T the product is the identity: ‖I‖₂ = 1, ‖I‖_F = √H.
        let expected = |at_t: f64| if row.step == t { at_t } else { f64::NEG_INFINITY };
        assert_eq!(row.log_spectral_norm, expected(0.0), "ln‖∂h_T/∂h_s‖₂ at s = {}", row.step);
        let frobenius = expected((h as f64).sqrt().ln());
        assert!(
            row.log_frobenius_norm == frobenius || (row.log_frobenius_norm - frobenius).abs() < 1e-15,
            "ln‖∂h_T/∂h_s‖_F at s = {}: {}",
            row.step,
            row.log_frobenius_norm
        );
    }
    let g = [1.0, -2.0, 0.5];
    let at = |s: usize| if s == t { (1.0f64 + 4.0 + 0.25).sqrt().ln() } else { f64::NEG_INFINITY }; // ln‖g‖ at T
    for row in &error_signal(&params, &tape, 0, 0, &g) {
        assert_eq!(row.log_frobenius_norm, at(row.step), "ln‖err‖ at s = {}", row.step);
    }
    for (s, &v) in state_error_signal(&params, &tape, 0, 0, &g).iter().enumerate() {
        assert_eq!(v, at(s), "ln‖state err‖ at s = {s}");
    }
}
