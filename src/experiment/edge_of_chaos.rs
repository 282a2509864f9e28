//! `edge-of-chaos`: a wide tanh RNN with recurrent weights N(0, g²/H) across gains g, its measured
//! far decay rate of ‖∂h_T/∂h_s‖₂ and top Lyapunov exponent against the mean-field prediction
//! ½ ln χ(q*) ([`crate::meanfield`], THEORY.md §6), and the measured pre-activation variance
//! against q*. Every init must be `recurrent = ["gaussian(g)"]` with `input` `gaussian(s)` or
//! `zeros` and `bias` `zeros` or `gaussian(b)`: the drive variance σ_in² = s²·Var(x) + 2b² (two
//! biases) follows from them and the spec's `input` distribution.

use super::charts::mean_sd_text;
use super::findings::{Claim, Finding};
use super::grid::{Key, Point, draw, rows_at};
use super::runner::{Experiment, Products};
use super::spec::{InputDist, NamedInit, Spec};
use crate::bptt::forward;
use crate::cell::CellKind;
use crate::error::{Error, Result};
use crate::estimate::{mean_sd, summarize};
use crate::init::Scheme;
use crate::meanfield::{edge_gain, predicted_rate};
use crate::output::plot::Figure as Chart;
use crate::output::plot::{Dash, Figure, Panel, RefLine, Series};
use crate::output::read_csv;
use crate::probe::{LyapunovOptions, Q0, Quantity, jacobian_flow, lyapunov};
use nalgebra::{DVector, DVectorView};
use plotters::prelude::{RGBColor, SeriesLabelPosition};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// Per sequence: `summary.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub gain: f64,
    /// Far-range slope of ln‖∂h_T/∂h_s‖₂ (k ∈ [T/2, T]).
    pub decay_rate: Option<f64>,
    pub decay_rate_se: Option<f64>,
    pub decay_rate_near: Option<f64>,
    /// λ₁ after the spec's burn-in from a random Q₀.
    pub top_lyapunov: f64,
    pub top_lyapunov_se: Option<f64>,
    /// Mean-field fixed point of the pre-activation variance.
    pub q_star: f64,
    /// Measured mean of a_t² over units and the steps after the burn-in.
    pub q_measured: f64,
    /// ½ ln χ(q*).
    pub meanfield_rate: f64,
}

/// One init's mean-field inputs and prediction.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Theory {
    gain: f64,
    input_variance: f64,
    q_star: f64,
    /// ½ ln χ(q*).
    rate: f64,
}

pub struct EdgeOfChaos<'a> {
    spec: &'a Spec,
    /// Per init of the spec.
    theory: Vec<Theory>,
    /// The drive variance shared by all inits, if it is shared (then one theory curve and one
    /// edge), and the edge gain (χ = 1) for it.
    common: Option<(f64, Option<f64>)>,
}

fn input_variance(dist: InputDist) -> f64 {
    match dist {
        InputDist::Gaussian(sd) => sd * sd,
        InputDist::Uniform(a) => a * a / 3.0,
        InputDist::Zeros => 0.0,
    }
}

/// The gain and drive variance of an init, or an error naming its table.
fn theory_of(init: &NamedInit, x_var: f64) -> Result<Theory> {
    let bad = |why: &str| {
        Error::Usage(format!(
            "key `init.{}`: {why}; the edge-of-chaos experiment needs recurrent = [\"gaussian(g)\"], input = \
             [\"gaussian(s)\"] or [\"zeros\"], bias = [\"zeros\"] or [\"gaussian(b)\"]",
            init.label
        ))
    };
    let s = &init.spec;
    let gain = match s.recurrent.as_slice() {
        [Scheme::Gaussian(g)] => *g,
        _ => return Err(bad(&format!("recurrent is {:?}", s.recurrent))),
    };
    let input = match s.input.as_slice() {
        [Scheme::Gaussian(u)] => u * u * x_var,
        [Scheme::Zeros] => 0.0,
        _ => return Err(bad(&format!("input is {:?}", s.input))),
    };
    let bias = match s.bias.as_slice() {
        [Scheme::Zeros] => 0.0,
        [Scheme::Gaussian(b)] => 2.0 * b * b,
        _ => return Err(bad(&format!("bias is {:?}", s.bias))),
    };
    if !s.gate_bias.is_empty() {
        return Err(bad("gate_bias is set"));
    }
    let (q_star, rate) = predicted_rate(gain, input + bias);
    Ok(Theory { gain, input_variance: input + bias, q_star, rate })
}

impl<'a> EdgeOfChaos<'a> {
    pub fn new(spec: &'a Spec) -> Result<Self> {
        if spec.cells != [CellKind::Rnn] {
            return Err(Error::Usage(
                "key `cells`: the edge-of-chaos experiment is for the tanh RNN; allowed: [\"rnn\"]".into(),
            ));
        }
        if spec.probes.lyapunov == 0 {
            return Err(Error::Usage("key `probes.lyapunov`: the edge-of-chaos experiment needs ≥ 1".into()));
        }
        let x_var = input_variance(spec.input);
        let theory = spec.inits.iter().map(|i| theory_of(i, x_var)).collect::<Result<Vec<_>>>()?;
        let v = theory[0].input_variance;
        let common = theory.iter().all(|t| t.input_variance == v).then(|| (v, edge_gain(v, 0.05, 10.0)));
        Ok(EdgeOfChaos { spec, theory, common })
    }
}

impl Experiment for EdgeOfChaos<'_> {
    type Measured = Vec<(Key, SummaryRow)>;

    fn tables(&self) -> Vec<&'static str> {
        vec!["summary.csv"]
    }

    fn charts(&self) -> Vec<&'static str> {
        vec!["edge"]
    }

    fn measure(&self, p: &Point, rng: &mut ChaCha8Rng) -> Result<Self::Measured> {
        let spec = self.spec;
        let (params, inputs) = draw(spec, p, rng);
        let q0_seed = rng.next_u64();
        let tape = forward(&params, &inputs);
        let th = self.theory[p.init];
        let (q_star, meanfield_rate) = (th.q_star, th.rate);
        let layer = &params.layers()[0];
        let burn_in = spec.probes.lyapunov_burn_in;
        let mut out = Vec::new();
        for b in 0..spec.batch {
            let flow = jacobian_flow(&params, &tape, 0, b, &[Quantity::Dh]);
            let curve: Vec<f64> = flow.iter().rev().map(|r| r.log_spectral_norm).collect();
            let s = summarize(&curve, spec.probes.horizon_threshold);
            let opts =
                LyapunovOptions { count: Some(1), burn_in, q0: Q0::Random, seed: q0_seed.wrapping_add(b as u64) };
            let lyap = lyapunov(&params, &tape, 0, b, &opts);
            // a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh over the steps after the burn-in, summed
            // in that order, in two buffers.
            let (mut a, mut wh) = (DVector::zeros(p.hidden), DVector::zeros(p.hidden));
            let mut sum_sq = 0.0;
            for t in burn_in + 1..=p.seq_len {
                let col = (t - 1) * spec.batch + b;
                let h_prev = DVectorView::from_slice(tape.step(0, t, b).h_prev, p.hidden);
                a.gemv(1.0, &layer.weight_ih, &inputs.x.column(col), 0.0);
                a += &layer.bias_ih;
                wh.gemv(1.0, &layer.weight_hh, &h_prev, 0.0);
                a += &wh;
                a += &layer.bias_hh;
                sum_sq += a.norm_squared();
            }
            let q_measured = sum_sq / ((p.seq_len - burn_in) * p.hidden) as f64;
            out.push((
                Key::new(spec, p, b),
                SummaryRow {
                    gain: th.gain,
                    decay_rate: s.decay_rate,
                    decay_rate_se: s.decay_rate_se,
                    decay_rate_near: s.decay_rate_near,
                    top_lyapunov: lyap.exponents[0],
                    top_lyapunov_se: lyap.se[0],
                    q_star,
                    q_measured,
                    meanfield_rate,
                },
            ));
        }
        Ok(out)
    }

    fn append(all: &mut Self::Measured, one: Self::Measured) {
        all.extend(one);
    }

    fn finish(&self, rows: &Self::Measured) -> Result<Products> {
        let mut p = Products::default();
        p.table("summary.csv", rows)?;
        (p.summary, p.findings, p.notes) = self.summary(rows);
        Ok(p)
    }

    fn figures(&self, rows: &Self::Measured) -> Vec<(&'static str, Chart)> {
        vec![("edge", self.figure(rows))]
    }

    fn read(&self, dir: &Path) -> Result<Self::Measured> {
        read_csv(&dir.join("summary.csv"))
    }
}

/// Measured decay rates within this of ½ ln χ count as agreeing (THEORY.md §6: about 0.01 per
/// step at H = 256).
const AGREEMENT: f64 = 0.01;

impl EdgeOfChaos<'_> {
    /// (init index, hidden, T) groups in spec order with their rows.
    fn groups<'r>(&self, rows: &'r [(Key, SummaryRow)]) -> Vec<(usize, usize, usize, Vec<&'r SummaryRow>)> {
        let mut out = Vec::new();
        for &h in &self.spec.hidden {
            for &t in &self.spec.seq_len {
                for (i, init) in self.spec.inits.iter().enumerate() {
                    let r = rows_at(rows, |k| k.init == init.label && k.hidden == h && k.seq_len == t);
                    out.push((i, h, t, r));
                }
            }
        }
        out
    }

    fn figure(&self, rows: &[(Key, SummaryRow)]) -> Figure {
        let spec = self.spec;
        let mut panels = Vec::new();
        for &h in &spec.hidden {
            let mut measured = Vec::new();
            let mut lyap = Vec::new();
            let mut theory = Vec::new();
            let mut resid = Vec::new();
            let mut resid_lyap = Vec::new();
            for (i, hh, _, r) in self.groups(rows) {
                if hh != h || r.is_empty() {
                    continue;
                }
                let g = self.theory[i].gain;
                let rates: Vec<f64> = r.iter().filter_map(|r| r.decay_rate).collect();
                let lyaps: Vec<f64> = r.iter().map(|r| r.top_lyapunov).collect();
                let theory_g = r[0].meanfield_rate;
                for (v, pts, res) in [(rates, &mut measured, &mut resid), (lyaps, &mut lyap, &mut resid_lyap)] {
                    if !v.is_empty() {
                        let (m, sd) = mean_sd(&v);
                        pts.push((g, m, sd));
                        res.push((g, m - theory_g, sd));
                    }
                }
                if self.common.is_none() {
                    theory.push((g, r[0].meanfield_rate));
                }
            }
            if let Some((var, _)) = self.common {
                let (lo, hi) =
                    self.theory.iter().fold((f64::INFINITY, 0.0f64), |(a, b), t| (a.min(t.gain), b.max(t.gain)));
                theory =
                    (0..=40).map(|j| lo + (hi - lo) * j as f64 / 40.0).map(|g| (g, predicted_rate(g, var).1)).collect();
            }
            let bars = |v: &[(f64, f64, f64)]| v.iter().map(|&(g, m, sd)| (g, m - sd, m + sd)).collect::<Vec<_>>();
            let line = |v: &[(f64, f64, f64)]| v.iter().map(|&(g, m, _)| (g, m)).collect::<Vec<_>>();
            let series = vec![
                Series::line("mean field: ½ ln χ(q*)", RGBColor(20, 20, 20), theory),
                Series {
                    markers: true,
                    error_bars: bars(&measured),
                    ..Series::line("measured decay rate (far range)", RGBColor(31, 119, 180), line(&measured))
                },
                Series {
                    dash: Dash::Dashed,
                    markers: true,
                    error_bars: bars(&lyap),
                    ..Series::line("measured λ₁ (burn-in, random Q₀)", RGBColor(255, 127, 14), line(&lyap))
                },
            ];
            panels.push(Panel::new(
                format!("tanh RNN, H = {h}, mean ± sd over {} sequences", spec.seeds.len() * spec.batch),
                series,
            ));
            let gains: Vec<f64> = resid.iter().map(|r| r.0).collect();
            let band = Series {
                band: gains.iter().map(|&g| (g, -AGREEMENT, AGREEMENT)).collect(),
                ..Series::line(
                    format!("± {AGREEMENT}: agreement"),
                    RGBColor(127, 127, 127),
                    gains.iter().map(|&g| (g, 0.0)).collect(),
                )
            };
            let residuals = vec![
                band,
                Series {
                    markers: true,
                    error_bars: bars(&resid),
                    ..Series::line("decay rate − ½ ln χ", RGBColor(31, 119, 180), line(&resid))
                },
                Series {
                    dash: Dash::Dashed,
                    markers: true,
                    error_bars: bars(&resid_lyap),
                    ..Series::line("λ₁ − ½ ln χ", RGBColor(255, 127, 14), line(&resid_lyap))
                },
            ];
            panels.push(Panel::new(format!("measured − mean field, H = {h}"), residuals));
        }
        let mut vlines = Vec::new();
        if let Some((_, Some(g))) = self.common {
            vlines.push(RefLine { at: g, label: format!("edge χ = 1 at g = {g:.3}") });
        }
        Figure {
            panels,
            vlines,
            shared_y: false,
            legend: SeriesLabelPosition::LowerRight,
            legend_room: 0.3,
            ..Figure::new(
                "Edge of chaos: gradient decay per step against the recurrent gain g",
                "recurrent gain g (W_hh entries N(0, g²/H))",
                "rate per step (ln of norm)",
            )
        }
    }

    fn summary(&self, rows: &[(Key, SummaryRow)]) -> (String, Vec<Finding>, Vec<String>) {
        let spec = self.spec;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Per gain (mean ± sd over {} sequences; rates per step; λ₁ after a burn-in of {} steps from a random Q₀):\n",
            spec.seeds.len() * spec.batch,
            spec.probes.lyapunov_burn_in
        );
        let _ = writeln!(s, "| g | H | T | q* | q measured | ½ ln χ | decay_rate (far) | λ₁ | rate − ½ ln χ |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        let (mut agree, mut disagree) = (Vec::new(), Vec::new());
        let mut worst: Option<(f64, f64)> = None;
        for (i, h, t, r) in self.groups(rows) {
            if r.is_empty() {
                continue;
            }
            let g = self.theory[i].gain;
            let rates: Vec<f64> = r.iter().filter_map(|r| r.decay_rate).collect();
            let lyaps: Vec<f64> = r.iter().map(|r| r.top_lyapunov).collect();
            let qm: Vec<f64> = r.iter().map(|r| r.q_measured).collect();
            let theory = r[0].meanfield_rate;
            let diff = mean_sd(&rates).0 - theory;
            let item = format!("g = {g} (H = {h}: {diff:+.4})");
            if diff.abs() <= AGREEMENT {
                agree.push(item)
            } else {
                disagree.push(item)
            }
            if worst.is_none_or(|w| diff.abs() > w.1.abs()) {
                worst = Some((g, diff));
            }
            let _ = writeln!(
                s,
                "| {g} | {h} | {t} | {:.4} | {} | {theory:+.4} | {} | {} | {diff:+.4} |",
                r[0].q_star,
                mean_sd_text(&qm, 4).trim_start_matches('+'),
                mean_sd_text(&rates, 4),
                mean_sd_text(&lyaps, 4),
            );
        }
        let sentence = format!(
            "measured far decay rate of ‖dh_T/dh_s‖₂ minus ½ ln χ(q*) per gain (mean over sequences); it holds within \
             {AGREEMENT} per step"
        );
        let findings = vec![Finding::new(Claim::MeanFieldRate, agree, disagree, sentence)];
        let mut notes = Vec::new();
        if let Some((g, d)) = worst {
            notes.push(format!("The largest deviation is {d:+.4} per step, at g = {g}."));
        }
        if let Some((var, Some(edge))) = self.common {
            notes.push(format!(
                "Mean field puts the edge of chaos (χ = 1) at g = {edge:.3} for this input drive (σ_in² = {var})."
            ));
        }
        (s, findings, notes)
    }
}
