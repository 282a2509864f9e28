//! Named initialisation schemes (THEORY.md §7), parsed from strings such as `gaussian(0.5)` and
//! composed per parameter group: recurrent weights, input weights, biases and LSTM gate biases.
//! Within a group the schemes apply in order, so `["gaussian(1)", "spectral-radius(0.9)"]`
//! draws and then rescales.

use crate::cell::CellKind;
use crate::error::{Error, Result};
use crate::params::{LayerParams, Params};
use nalgebra::{DMatrix, DVector};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// The schemes, as written in specs; listed in error messages.
pub const SCHEMES: &str = "uniform-pytorch, gaussian(g), xavier(gain), orthogonal(gain), identity(scale), \
spectral-radius(rho), spectral-norm(s), zeros, constant(v); gate biases (LSTM): forget-bias(b), chrono(T_max)";

/// One initialisation step for a group of parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Scheme {
    /// Every entry U(-1/√H, 1/√H) (PyTorch's default for recurrent cells).
    UniformPytorch,
    /// Entries N(0, g²/fan_in) (biases: N(0, g²)).
    Gaussian(f64),
    /// Per gate block U(-a, a), a = gain·√(6/(fan_in + fan_out)), fan_out = H.
    Xavier(f64),
    /// Each gate block gain·Q, Q from the QR of a Gaussian matrix with the sign fix (Saxe et al.).
    Orthogonal(f64),
    /// Each gate block scale·I (IRNN).
    Identity(f64),
    /// Rescale each square gate block to spectral radius ρ.
    SpectralRadius(f64),
    /// Rescale each gate block to largest singular value s.
    SpectralNorm(f64),
    /// All zero.
    Zeros,
    /// All equal to v.
    Constant(f64),
    /// LSTM forget-gate bias b (in `bias_hh`; `bias_ih`'s forget block set to 0).
    ForgetBias(f64),
    /// LSTM chrono init: b_f = ln U(1, T_max - 1), b_i = -b_f (in `bias_hh`).
    Chrono(f64),
}

impl Scheme {
    /// Parses `name` or `name(number)`.
    pub fn parse(text: &str) -> Result<Scheme> {
        let (name, arg) = parse_call(text)?;
        let need = |a: Option<f64>| a.ok_or_else(|| bad(text, "this scheme takes a number, e.g. gaussian(1.0)"));
        let none = |s: Scheme| if arg.is_some() { Err(bad(text, "this scheme takes no argument")) } else { Ok(s) };
        let positive = |v: f64| if v > 0.0 { Ok(v) } else { Err(bad(text, "the argument must be positive")) };
        match name {
            "uniform-pytorch" => none(Scheme::UniformPytorch),
            "zeros" => none(Scheme::Zeros),
            "gaussian" => Ok(Scheme::Gaussian(need(arg)?)),
            "xavier" => Ok(Scheme::Xavier(need(arg)?)),
            "orthogonal" => Ok(Scheme::Orthogonal(need(arg)?)),
            "identity" => Ok(Scheme::Identity(need(arg)?)),
            "spectral-radius" => Ok(Scheme::SpectralRadius(positive(need(arg)?)?)),
            "spectral-norm" => Ok(Scheme::SpectralNorm(positive(need(arg)?)?)),
            "constant" => Ok(Scheme::Constant(need(arg)?)),
            "forget-bias" => Ok(Scheme::ForgetBias(need(arg)?)),
            "chrono" => {
                let v = need(arg)?;
                if v > 2.0 { Ok(Scheme::Chrono(v)) } else { Err(bad(text, "chrono needs T_max > 2")) }
            }
            _ => Err(bad(text, &format!("unknown scheme; allowed: {SCHEMES}"))),
        }
    }

    fn is_gate_bias(&self) -> bool {
        matches!(self, Scheme::ForgetBias(_) | Scheme::Chrono(_))
    }
}

fn bad(text: &str, why: &str) -> Error {
    Error::Usage(format!("`{text}`: {why}"))
}

/// Splits `name(number)` or `name` into its parts; the number must be finite.
pub(crate) fn parse_call(text: &str) -> Result<(&str, Option<f64>)> {
    let t = text.trim();
    let Some((name, rest)) = t.split_once('(') else { return Ok((t, None)) };
    let inner = rest.strip_suffix(')').ok_or_else(|| bad(text, "missing `)`"))?;
    let v: f64 = inner.trim().parse().map_err(|_| bad(text, "the argument must be a number"))?;
    if !v.is_finite() {
        return Err(bad(text, "the argument must be finite"));
    }
    Ok((name.trim(), Some(v)))
}

/// How to initialise every parameter group; an empty group keeps PyTorch's default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InitSpec {
    pub recurrent: Vec<Scheme>,
    pub input: Vec<Scheme>,
    pub bias: Vec<Scheme>,
    pub gate_bias: Vec<Scheme>,
}

impl InitSpec {
    /// Checks that each scheme fits its group and the cell.
    pub fn validate(&self, cell: CellKind, label: &str) -> Result<()> {
        let err = |group: &str, s: &Scheme, why: &str| Error::Usage(format!("init `{label}`, {group}: {s:?} {why}"));
        for (group, list) in [("recurrent", &self.recurrent), ("input", &self.input), ("bias", &self.bias)] {
            if let Some(s) = list.iter().find(|s| s.is_gate_bias()) {
                return Err(err(group, s, "sets LSTM gate biases; put it under gate_bias"));
            }
        }
        if let Some(s) = self.bias.iter().find(|s| {
            matches!(
                s,
                Scheme::Orthogonal(_)
                    | Scheme::Identity(_)
                    | Scheme::SpectralRadius(_)
                    | Scheme::SpectralNorm(_)
                    | Scheme::Xavier(_)
            )
        }) {
            return Err(err("bias", s, "applies to weight matrices, not biases"));
        }
        if let Some(s) = self.input.iter().find(|s| matches!(s, Scheme::Identity(_) | Scheme::SpectralRadius(_))) {
            return Err(err("input", s, "needs square blocks; use it under recurrent"));
        }
        if let Some(s) = self.gate_bias.iter().find(|s| !s.is_gate_bias()) {
            return Err(err("gate_bias", s, "is not a gate-bias scheme (forget-bias(b), chrono(T_max))"));
        }
        if cell != CellKind::Lstm && !self.gate_bias.is_empty() {
            return Err(err("gate_bias", &self.gate_bias[0], &format!("is for the LSTM, not the {cell}")));
        }
        Ok(())
    }

    /// Draws a model from `rng`: per layer W_ih, W_hh, b_ih, b_hh in that order, then gate biases.
    pub fn build(
        &self,
        cell: CellKind,
        layers: usize,
        input: usize,
        hidden: usize,
        rng: &mut ChaCha8Rng,
    ) -> Params<f64> {
        let g = cell.gates();
        let pytorch = [Scheme::UniformPytorch];
        let or_default =
            |list: &[Scheme]| -> Vec<Scheme> { if list.is_empty() { pytorch.to_vec() } else { list.to_vec() } };
        let (rec, inp, bias) = (or_default(&self.recurrent), or_default(&self.input), or_default(&self.bias));
        let mut out = Vec::with_capacity(layers);
        for k in 0..layers {
            let i_k = if k == 0 { input } else { hidden };
            let mut layer = LayerParams {
                weight_ih: DMatrix::zeros(g * hidden, i_k),
                weight_hh: DMatrix::zeros(g * hidden, hidden),
                bias_ih: DVector::zeros(g * hidden),
                bias_hh: DVector::zeros(g * hidden),
            };
            apply_matrix(&inp, &mut layer.weight_ih, g, hidden, rng);
            apply_matrix(&rec, &mut layer.weight_hh, g, hidden, rng);
            for b in [&mut layer.bias_ih, &mut layer.bias_hh] {
                let mut m = DMatrix::from_column_slice(b.len(), 1, b.as_slice());
                apply_matrix(&bias, &mut m, g, hidden, rng);
                b.copy_from_slice(m.as_slice());
            }
            for s in &self.gate_bias {
                apply_gate_bias(s, &mut layer, hidden, rng);
            }
            out.push(layer);
        }
        Params::new(cell, out, None).expect("shapes are built to fit")
    }
}

/// Applies `schemes` to `m` (G·H rows, or a G·H bias as a column), gate block by gate block.
fn apply_matrix(schemes: &[Scheme], m: &mut DMatrix<f64>, gates: usize, hidden: usize, rng: &mut ChaCha8Rng) {
    let fan_in = m.ncols().max(1) as f64;
    for s in schemes {
        for gate in 0..gates {
            let mut block = m.rows_mut(gate * hidden, hidden);
            let (r, c) = block.shape();
            match *s {
                Scheme::UniformPytorch => {
                    let a = 1.0 / (hidden as f64).sqrt();
                    block.apply(|v| *v = rng.random_range(-a..a));
                }
                Scheme::Gaussian(g) => {
                    let sd = g / fan_in.sqrt(); // biases: one column, so N(0, g²)
                    block.apply(|v| *v = sd * Distribution::<f64>::sample(&StandardNormal, rng));
                }
                Scheme::Xavier(gain) => {
                    let a = gain * (6.0 / (fan_in + hidden as f64)).sqrt();
                    block.apply(|v| *v = if a > 0.0 { rng.random_range(-a..a) } else { 0.0 });
                }
                Scheme::Orthogonal(gain) => block.copy_from(&(orthogonal(r, c, rng) * gain)),
                Scheme::Identity(scale) => block.copy_from(&(DMatrix::identity(r, c) * scale)),
                Scheme::SpectralRadius(rho) => {
                    let current =
                        block.clone_owned().complex_eigenvalues().iter().map(|z| z.norm()).fold(0.0, f64::max);
                    if current > 0.0 {
                        block *= rho / current;
                    }
                }
                Scheme::SpectralNorm(target) => {
                    let current = block.clone_owned().singular_values().max();
                    if current > 0.0 {
                        block *= target / current;
                    }
                }
                Scheme::Zeros => block.fill(0.0),
                Scheme::Constant(v) => block.fill(v),
                Scheme::ForgetBias(_) | Scheme::Chrono(_) => unreachable!("rejected by InitSpec::validate"),
            }
        }
    }
}

/// An r×c matrix with orthonormal columns (r ≥ c) or rows (r < c): Q·diag(sign(diag R)) from the
/// QR of a standard Gaussian matrix, which makes it Haar-distributed.
fn orthogonal(r: usize, c: usize, rng: &mut ChaCha8Rng) -> DMatrix<f64> {
    let (n, k) = (r.max(c), r.min(c));
    let a = DMatrix::from_fn(n, k, |_, _| StandardNormal.sample(rng));
    let qr = a.qr();
    let mut q = qr.q();
    let rdiag = qr.r().diagonal();
    for (mut col, d) in q.column_iter_mut().zip(rdiag.iter()) {
        if *d < 0.0 {
            col.neg_mut();
        }
    }
    if r >= c { q } else { q.transpose() }
}

/// LSTM gate biases (gate order i, f, g, o), all in `bias_hh` with `bias_ih`'s block zeroed.
fn apply_gate_bias(s: &Scheme, layer: &mut LayerParams<f64>, hidden: usize, rng: &mut ChaCha8Rng) {
    let (i, f) = (0..hidden, hidden..2 * hidden);
    match *s {
        Scheme::ForgetBias(b) => {
            layer.bias_ih.rows_mut(f.start, hidden).fill(0.0);
            layer.bias_hh.rows_mut(f.start, hidden).fill(b);
        }
        Scheme::Chrono(t_max) => {
            for j in 0..hidden {
                let bf = rng.random_range(1.0..t_max - 1.0_f64).ln();
                layer.bias_hh[f.start + j] = bf;
                layer.bias_hh[i.start + j] = -bf;
            }
            layer.bias_ih.rows_mut(f.start, hidden).fill(0.0);
            layer.bias_ih.rows_mut(i.start, hidden).fill(0.0);
        }
        _ => unreachable!("rejected by InitSpec::validate"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(Scheme::parse("gaussian(0.5)").unwrap(), Scheme::Gaussian(0.5));
        assert_eq!(Scheme::parse(" uniform-pytorch ").unwrap(), Scheme::UniformPytorch);
        for bad in
            ["gausian(1)", "gaussian", "zeros(1)", "gaussian(x)", "chrono(1)", "spectral-radius(-1)", "orthogonal(1"]
        {
            assert!(Scheme::parse(bad).is_err(), "{bad}");
        }
        let msg = Scheme::parse("gausian(1)").unwrap_err().to_string();
        assert!(msg.contains("gausian(1)") && msg.contains("gaussian(g)"), "{msg}");
    }

    #[test]
    fn orthogonal_blocks_are_orthogonal_and_rescaling_hits_its_target() {
        let spec = InitSpec { recurrent: vec![Scheme::Orthogonal(0.9)], ..Default::default() };
        let p = spec.build(CellKind::Lstm, 1, 3, 6, &mut rng());
        for gate in 0..4 {
            let u = p.layers()[0].weight_hh.rows(gate * 6, 6).into_owned();
            assert!((u.transpose() * &u - DMatrix::identity(6, 6) * 0.81).amax() < 1e-14);
        }
        let spec =
            InitSpec { recurrent: vec![Scheme::Gaussian(1.0), Scheme::SpectralRadius(0.7)], ..Default::default() };
        let w = spec.build(CellKind::Rnn, 1, 3, 20, &mut rng()).layers()[0].weight_hh.clone();
        let rho = w.complex_eigenvalues().iter().map(|z| z.norm()).fold(0.0, f64::max);
        assert!((rho - 0.7).abs() < 1e-12);
        let spec = InitSpec { recurrent: vec![Scheme::Gaussian(1.0), Scheme::SpectralNorm(1.5)], ..Default::default() };
        let w = spec.build(CellKind::Rnn, 1, 3, 20, &mut rng()).layers()[0].weight_hh.clone();
        assert!((w.singular_values().max() - 1.5).abs() < 1e-12);
    }

    #[test]
    fn gate_biases_land_in_the_right_blocks() {
        let spec = InitSpec { gate_bias: vec![Scheme::Chrono(100.0)], ..Default::default() };
        let l = spec.build(CellKind::Lstm, 1, 2, 4, &mut rng()).layers()[0].clone();
        for j in 0..4 {
            let bf = l.bias_hh[4 + j] + l.bias_ih[4 + j];
            assert!(bf > 0.0 && bf < 99f64.ln());
            assert_eq!(l.bias_hh[j] + l.bias_ih[j], -bf);
        }
        let spec = InitSpec { gate_bias: vec![Scheme::ForgetBias(1.0)], ..Default::default() };
        let l = spec.build(CellKind::Lstm, 1, 2, 4, &mut rng()).layers()[0].clone();
        assert!((4..8).all(|j| l.bias_hh[j] + l.bias_ih[j] == 1.0));
        assert!(spec.validate(CellKind::Gru, "x").is_err());
    }

    #[test]
    fn identity_and_zeros_make_an_irnn() {
        let spec = InitSpec { recurrent: vec![Scheme::Identity(1.0)], bias: vec![Scheme::Zeros], ..Default::default() };
        let l = spec.build(CellKind::Rnn, 1, 2, 5, &mut rng()).layers()[0].clone();
        assert_eq!(l.weight_hh, DMatrix::identity(5, 5));
        assert_eq!(l.bias_hh.amax(), 0.0);
    }

    #[test]
    fn same_seed_same_weights() {
        let spec = InitSpec::default();
        assert_eq!(spec.build(CellKind::Gru, 2, 3, 4, &mut rng()), spec.build(CellKind::Gru, 2, 3, 4, &mut rng()));
    }
}
