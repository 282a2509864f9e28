//! Closed-form saturated LSTM and GRU: every unit far out on its tanh (|a| > 20), where sech²(a)
//! = 4e^{−2|a|}/(1 + e^{−2|a|})² is tiny but not 0, and a derivative taken as 1 − tanh² from the
//! output is exactly 0. With zero input and W_hh = 0 (or a diagonal W_hh) the gradients are
//! products and sums of per-unit scalars, computed here from the forward values alone.

use gradlab::bptt::{Inputs, backward, forward, state_gradients};
use gradlab::cell::CellKind;
use gradlab::params::{LayerParams, Params};
use nalgebra::{DMatrix, DVector};

/// ln sech²(a), exactly: ln 4 − 2|a| − 2 ln(1 + e^{−2|a|}).
fn ln_sech2(a: f64) -> f64 {
    4f64.ln() - 2.0 * a.abs() - 2.0 * (-2.0 * a.abs()).exp().ln_1p()
}

fn sigmoid(a: f64) -> f64 {
    1.0 / (1.0 + (-a).exp())
}

/// σ'(a) = σ(a)σ(−a), without cancellation.
fn sigmoid_prime(a: f64) -> f64 {
    sigmoid(a) * sigmoid(-a)
}

fn close(what: &str, got: f64, expected: f64, tol: f64) {
    assert!(got.is_finite() && expected.is_finite(), "{what}: {got} vs {expected}");
    assert!((got - expected).abs() <= tol * expected.abs(), "{what}: {got} vs {expected} (rel tol {tol:e})");
}

/// LSTM with zero input and W_hh = 0: the gates are the constants σ(b_i), σ(b_f), tanh(b_g),
/// σ(b_o) of the biases (gate order i, f, g, o), so c_t = f c_{t−1} + i g climbs past 20 and
/// h_t = o tanh(c_t) saturates. For L = Σ_units h_T:
///   ∂L/∂c_0   = o sech²(c_T) f^T
///   ∂L/∂b_g   = o sech²(c_T) i sech²(b_g) Σ_{t=1..T} f^{T−t}
///   ∂L/∂b_i   = o sech²(c_T) g σ'(b_i) Σ_{t=1..T} f^{T−t}
///   ∂L/∂b_o   = tanh(c_T) σ'(b_o)
/// (each for bias_ih and bias_hh alike).
#[test]
fn saturated_lstm_gradients_match_their_closed_form() {
    let (h, t) = (3, 30);
    let (b_i, b_f, b_g, b_o) = (25.0, 30.0, 25.0, 0.5);
    let mut bias = DVector::zeros(4 * h);
    for u in 0..h {
        for (gate, b) in [b_i, b_f, b_g, b_o].into_iter().enumerate() {
            bias[gate * h + u] = b;
        }
    }
    let layer = LayerParams {
        weight_ih: DMatrix::from_element(4 * h, 2, 0.3),
        weight_hh: DMatrix::zeros(4 * h, h),
        bias_ih: DVector::zeros(4 * h),
        bias_hh: bias,
    };
    let params = Params::new(CellKind::Lstm, vec![layer], None).unwrap();
    let inputs = Inputs::with_zero_state(&params, DMatrix::zeros(2, t), t, 1);
    let tape = forward(&params, &inputs);
    let c_t = tape.c_n(0)[0];
    assert!(c_t > 20.0 && tape.output().column(t - 1)[0] == sigmoid(b_o), "c_T = {c_t}: tanh(c_T) rounds to 1");

    let mut dy = DMatrix::zeros(h, t);
    dy.column_mut(t - 1).fill(1.0);
    let grads = backward(&params, &inputs, &tape, &dy);
    let (i, f, g, o) = (sigmoid(b_i), sigmoid(b_f), b_g.tanh(), sigmoid(b_o));
    let sech2_c = ln_sech2(c_t).exp();
    let geometric: f64 = (1..=t).map(|s| f.powi((t - s) as i32)).sum();
    let layer = &grads.params.layers()[0];
    for u in 0..h {
        close(&format!("c0[{u}]"), grads.c0[0][u], o * sech2_c * f.powi(t as i32), 1e-12);
        for bias in [&layer.bias_ih, &layer.bias_hh] {
            close(&format!("b_g[{u}]"), bias[2 * h + u], o * sech2_c * i * ln_sech2(b_g).exp() * geometric, 1e-12);
            close(&format!("b_i[{u}]"), bias[u], o * sech2_c * g * sigmoid_prime(b_i) * geometric, 1e-12);
            close(&format!("b_o[{u}]"), bias[3 * h + u], c_t.tanh() * sigmoid_prime(b_o), 1e-12);
        }
    }
}

/// GRU with zero input, U_r = U_z = 0, U_n = u·I and biases putting every unit's candidate at
/// |a_n| > 20 (gate order r, z, n). Per unit, ∂h_t/∂h_{t−1} = z + (1 − z) sech²(a_n,t) r u with
/// a_n,t = b_in + r (u h_{t−1} + b_hn), so for a loss at step T with ∂L/∂h_T = 1:
///   ∂L/∂h_s = Π_{t=s+1..T} (z + (1 − z) sech²(a_n,t) r u)
///   ∂L/∂b_in = Σ_t ∂L/∂h_t (1 − z) sech²(a_n,t)
/// With z = σ(−60) ≈ 1e−26 the sech² term (≈ 1e−21) carries the product; 1 − n² would leave z.
#[test]
fn saturated_gru_gradients_match_their_closed_form() {
    let (h, t, u) = (3, 10, 0.5);
    let (b_r, b_z, b_in, b_hn) = (2.0, -60.0, 24.0, 1.0);
    let mut bias_ih = DVector::zeros(3 * h);
    let mut bias_hh = DVector::zeros(3 * h);
    let mut weight_hh = DMatrix::zeros(3 * h, h);
    for k in 0..h {
        bias_ih[k] = b_r;
        bias_ih[h + k] = b_z;
        bias_ih[2 * h + k] = b_in;
        bias_hh[2 * h + k] = b_hn;
        weight_hh[(2 * h + k, k)] = u;
    }
    let layer = LayerParams { weight_ih: DMatrix::from_element(3 * h, 2, 0.3), weight_hh, bias_ih, bias_hh };
    let params = Params::new(CellKind::Gru, vec![layer], None).unwrap();
    let inputs = Inputs::with_zero_state(&params, DMatrix::zeros(2, t), t, 1);
    let tape = forward(&params, &inputs);
    let (r, z) = (sigmoid(b_r), sigmoid(b_z));
    // h_0 = 0; h_t from the tape; a_n,t from h_{t−1}.
    let hs: Vec<f64> = std::iter::once(0.0).chain((0..t).map(|s| tape.output().column(s)[0])).collect();
    let a_n: Vec<f64> = (1..=t).map(|s| b_in + r * (u * hs[s - 1] + b_hn)).collect();
    assert!(a_n.iter().all(|&a| a > 20.0) && hs[t] == 1.0, "every candidate saturated: tanh rounds to 1");
    let ln_j: Vec<f64> = a_n.iter().map(|&a| (z + (1.0 - z) * ln_sech2(a).exp() * r * u).ln()).collect();

    let mut dy = DMatrix::zeros(h, t);
    dy.column_mut(t - 1).fill(1.0);
    let plain = state_gradients(&params, &inputs, &tape, &dy).swap_remove(0);
    // ∂L/∂h_s for s = T−1 down to 0 (column s of plain.h), as ln.
    let mut expected_ln = 0.0;
    let mut dl_dh = vec![0.0; t + 1];
    dl_dh[t] = 1.0;
    for s in (0..t).rev() {
        expected_ln += ln_j[s];
        dl_dh[s] = expected_ln.exp();
        for k in 0..h {
            let v = plain.h.column(s)[k];
            assert!(v > 0.0, "s = {s}, unit {k}: {v}");
            close(&format!("ln ∂L/∂h_{s}[{k}]"), v.ln(), expected_ln, 1e-12);
        }
    }
    let grads = backward(&params, &inputs, &tape, &dy);
    let expected_b_in: f64 = (1..=t).map(|s| dl_dh[s] * (1.0 - z) * ln_sech2(a_n[s - 1]).exp()).sum();
    for k in 0..h {
        close(&format!("b_in[{k}]"), grads.params.layers()[0].bias_ih[2 * h + k], expected_b_in, 1e-12);
    }
}
