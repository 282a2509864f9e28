//! `memory`: is ∂c_T/∂c_s the product of forget gates? Seed 001's multi-step argument says
//! ∏_t f_t carries the gradient along the cell state. Per distance k = T − s this experiment
//! writes the exact `dc_total` (c_s moving h_s with it) and `dstate` beside three stand-ins that
//! the argument suggests: ∏ f of the unit that keeps the most (`log_prod_f_max`), the mean over
//! units of ∏ f (`log_prod_f_mean`), and the sum of the one-step log-norms Σ ln‖∂c_t/∂c_{t-1}‖₂
//! (an upper bound on ln‖∏‖ by submultiplicativity, if the product were of those matrices).
//! None of them equals dc_total (THEORY.md §5): the paths through the output gate are missing.

use super::charts::{log10_of_ln, median_all, median_band};
use super::findings::{Claim, Finding};
use super::grid::{Key, Point, draw, rows_at};
use super::runner::{CurvesAndSummary, Experiment, Products};
use super::spec::Spec;
use crate::bptt::forward;
use crate::cell::CellKind;
use crate::error::{Error, Result};
use crate::estimate::{far_range, slope};
use crate::output::plot::Figure as Chart;
use crate::output::plot::{Dash, Figure, Panel, RefLine, Series};
use crate::probe::{Quantity, Term, jacobian_flow, lstm_decomposition};
use crate::scalar::Scalar;
use plotters::prelude::{RGBColor, SeriesLabelPosition};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One distance of one sequence: `curves.csv`. Natural logs; empty where undefined.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurveRow {
    /// k = T − s.
    pub distance: usize,
    /// ln‖∂c_T/∂c_s‖₂ with h_s = o_s ⊙ tanh(c_s) moving with c_s (s ≥ 1).
    pub log_dc_total: Option<f64>,
    /// ln‖∂(h_T, c_T)/∂(h_s, c_s)‖₂.
    pub log_dstate: f64,
    /// ln max_i ∏_{t=s+1..T} f_t,i.
    pub log_prod_f_max: f64,
    /// ln mean_i ∏_{t=s+1..T} f_t,i.
    pub log_prod_f_mean: f64,
    /// Σ_{t=s+1..T} ln‖∂c_t/∂c_{t-1}‖₂ (t ≥ 2, so s ≥ 1).
    pub sum_log_onestep: Option<f64>,
}

/// Per sequence: `summary.csv`. Rates are least-squares slopes over k ∈ [⌊(T−1)/2⌋, T − 1],
/// the far range every curve shares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub rate_dc_total: Option<f64>,
    pub rate_dstate: Option<f64>,
    pub rate_prod_f_max: Option<f64>,
    pub rate_prod_f_mean: Option<f64>,
    pub rate_sum_log_onestep: Option<f64>,
    /// At k = T − 1: ln ∏ f (max unit) − ln‖dc_total‖ (> 0: the product of gates overstates).
    pub gap_prod_f_max: f64,
    /// At k = T − 1: Σ ln‖one-step‖ − ln‖dc_total‖.
    pub gap_sum_log_onestep: f64,
}

/// What the experiment measures: its two tables' rows.
pub type Measured = CurvesAndSummary<CurveRow, SummaryRow>;

pub struct Memory<'a> {
    spec: &'a Spec,
}

impl<'a> Memory<'a> {
    pub fn new(spec: &'a Spec) -> Result<Self> {
        if spec.cells != [CellKind::Lstm] {
            return Err(Error::Usage(
                "key `cells`: the memory experiment follows the LSTM's cell state; allowed: [\"lstm\"]".into(),
            ));
        }
        if let Some(t) = spec.seq_len.iter().find(|&&t| t < 4) {
            return Err(Error::Usage(format!("key `seq_len`: {t} is too short for the memory experiment (T ≥ 4)")));
        }
        Ok(Memory { spec })
    }
}

/// ln σ(a_f) from f = σ(a_f) and σ'(a_f) = f(1 − f), exact where f rounds to 1:
/// ln f = ln(1 − (1 − f)) with 1 − f = σ'(a_f)/f.
fn ln_gate(f: f64, df: f64) -> f64 {
    (-df / f).ln_1p()
}

/// ln Σ_i e^{v_i}.
fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

impl Experiment for Memory<'_> {
    type Measured = Measured;

    fn tables(&self) -> Vec<&'static str> {
        vec!["curves.csv", "summary.csv"]
    }

    fn charts(&self) -> Vec<&'static str> {
        vec!["memory"]
    }

    fn measure(&self, p: &Point, rng: &mut ChaCha8Rng) -> Result<Measured> {
        let (params, inputs) = draw(self.spec, p, rng);
        let tape = forward(&params, &inputs);
        let (t_len, h) = (p.seq_len, p.hidden);
        let mut out = Measured::default();
        for b in 0..self.spec.batch {
            let key = Key::new(self.spec, p, b);
            let flow = jacobian_flow(&params, &tape, 0, b, &[Quantity::Dstate, Quantity::DcTotal]);
            let mut dstate = vec![f64::NAN; t_len + 1];
            let mut dc_total = vec![None; t_len + 1];
            for r in &flow {
                match r.quantity {
                    Quantity::Dstate => dstate[r.distance] = r.log_spectral_norm,
                    Quantity::DcTotal => dc_total[r.distance] = Some(r.log_spectral_norm),
                    _ => {}
                }
            }
            // ln‖∂c_t/∂c_{t-1}‖₂ for t = 2..T.
            let mut onestep = vec![f64::NAN; t_len + 1];
            for r in lstm_decomposition(&params, &tape, 0, b).iter().filter(|r| r.term == Term::Sum) {
                onestep[r.step] = r.spectral_norm.ln();
            }
            let mut log_prod = vec![0.0; h]; // per unit: Σ_{t=s+1..T} ln f_t,i
            let mut sum_onestep = 0.0;
            let mut curve = Vec::with_capacity(t_len + 1);
            for k in 0..=t_len {
                let s = t_len - k;
                if k > 0 {
                    // Extend the products by step t = s + 1.
                    let step = tape.step(0, s + 1, b);
                    let (f, df) = (step.block(1), step.block(5));
                    for (lp, (&fi, &dfi)) in log_prod.iter_mut().zip(f.iter().zip(df)) {
                        *lp += ln_gate(fi.as_f64(), dfi.as_f64());
                    }
                    sum_onestep += onestep[s + 1];
                }
                curve.push(CurveRow {
                    distance: k,
                    log_dc_total: dc_total[k],
                    log_dstate: dstate[k],
                    log_prod_f_max: log_prod.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    log_prod_f_mean: log_sum_exp(&log_prod) - (h as f64).ln(),
                    sum_log_onestep: (s >= 1).then_some(sum_onestep),
                });
            }
            let far = far_range(t_len - 1);
            let rate = |f: &dyn Fn(&CurveRow) -> f64| slope(&curve.iter().map(f).collect::<Vec<_>>(), far.clone());
            let last = &curve[t_len - 1];
            let dc_last = last.log_dc_total.expect("defined for s ≥ 1");
            out.summary.push((
                key.clone(),
                SummaryRow {
                    rate_dc_total: rate(&|c| c.log_dc_total.unwrap_or(f64::NAN)),
                    rate_dstate: rate(&|c| c.log_dstate),
                    rate_prod_f_max: rate(&|c| c.log_prod_f_max),
                    rate_prod_f_mean: rate(&|c| c.log_prod_f_mean),
                    rate_sum_log_onestep: rate(&|c| c.sum_log_onestep.unwrap_or(f64::NAN)),
                    gap_prod_f_max: last.log_prod_f_max - dc_last,
                    gap_sum_log_onestep: last.sum_log_onestep.expect("defined for s ≥ 1") - dc_last,
                },
            ));
            out.curves.extend(curve.into_iter().map(|c| (key.clone(), c)));
        }
        Ok(out)
    }

    fn append(all: &mut Measured, one: Measured) {
        all.append(one);
    }

    fn finish(&self, all: &Measured) -> Result<Products> {
        all.products(self.summary(all))
    }

    fn figures(&self, all: &Measured) -> Vec<(&'static str, Chart)> {
        vec![("memory", self.figure(all))]
    }

    fn read(&self, dir: &Path) -> Result<Measured> {
        CurvesAndSummary::read(dir)
    }
}

/// The five curves: (label, colour, dash, value of a row), drawn in this order (dc_total dashed
/// over dstate, which it nearly equals).
type Curve = (&'static str, RGBColor, Dash, fn(&CurveRow) -> Option<f64>);

const CURVES: [Curve; 5] = [
    ("d(h,c)_T/d(h,c)_s (exact)", RGBColor(31, 119, 180), Dash::Solid, |c| Some(c.log_dstate)),
    ("dc_T/dc_s (total, exact)", RGBColor(20, 20, 20), Dash::Dashed, |c| c.log_dc_total),
    ("prod f, max over units", RGBColor(214, 39, 40), Dash::Dashed, |c| Some(c.log_prod_f_max)),
    ("prod f, mean over units", RGBColor(255, 127, 14), Dash::Dotted, |c| Some(c.log_prod_f_mean)),
    ("sum of ln |dc_t/dc_(t-1)|", RGBColor(44, 160, 44), Dash::Dashed, |c| c.sum_log_onestep),
];

impl Memory<'_> {
    /// One panel per init (first hidden size, longest T): the five curves in log10, median over
    /// sequences; each panel on its own scale.
    fn figure(&self, all: &Measured) -> Figure {
        let spec = self.spec;
        let t = *spec.seq_len.iter().max().expect("validated");
        let h = spec.hidden[0];
        let panels = spec
            .inits
            .iter()
            .map(|init| {
                let series = CURVES
                    .iter()
                    .map(|&(label, color, dash, value)| {
                        let mut by_k: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
                        for (k, c) in &all.curves {
                            if k.init == init.label
                                && k.hidden == h
                                && k.seq_len == t
                                && let Some(v) = value(c)
                            {
                                by_k.entry(c.distance).or_default().push(v);
                            }
                        }
                        let (points, _) = median_band(&by_k, 1.0 / std::f64::consts::LN_10);
                        Series { dash, ..Series::line(label, color, points) }
                    })
                    .collect();
                Panel::new(format!("LSTM {}", init.label), series)
            })
            .collect();
        Figure {
            panels,
            shared_y: false,
            hlines: vec![RefLine { at: 0.0, label: "norm 1".into() }],
            legend: SeriesLabelPosition::LowerLeft,
            ..Figure::new(
                format!(
                    "Is dc_T/dc_s the product of forget gates? H = {h}, T = {t}, median over {} sequences",
                    spec.seeds.len() * spec.batch
                ),
                "distance T − s (steps)",
                "log10 (norm or product)",
            )
        }
    }

    fn summary(&self, all: &Measured) -> (String, Vec<Finding>, Vec<String>) {
        let spec = self.spec;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Far-range rates (per step, slope over k in [(T−1)/2, T−1]) and, at k = T − 1, how far each stand-in is \
             from the exact dc_total (log10, median over {} sequences; > 0 overstates):\n",
            spec.seeds.len() * spec.batch
        );
        let _ = writeln!(
            s,
            "| init | H | T | rate dc_total | rate dstate | rate ∏f (max unit) | rate ∏f (mean) | rate Σ ln‖one-step‖ | ∏f (max) − dc_total | Σ ln‖one-step‖ − dc_total |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        let mut tracks = Vec::new();
        let mut misses = Vec::new();
        for &h in &spec.hidden {
            for &t in &spec.seq_len {
                for init in &spec.inits {
                    let rows = rows_at(&all.summary, |k| k.init == init.label && k.hidden == h && k.seq_len == t);
                    let med = |f: &dyn Fn(&SummaryRow) -> Option<f64>| {
                        median_all(&rows.iter().map(|r| f(r).unwrap_or(f64::NAN)).collect::<Vec<_>>())
                    };
                    let (dc, prod) = (med(&|r| r.rate_dc_total), med(&|r| r.rate_prod_f_max));
                    let gap = log10_of_ln(med(&|r| Some(r.gap_prod_f_max)));
                    let _ = writeln!(
                        s,
                        "| {} | {h} | {t} | {dc:+.4} | {:+.4} | {prod:+.4} | {:+.4} | {:+.4} | {gap:+.1} | {:+.1} |",
                        init.label,
                        med(&|r| r.rate_dstate),
                        med(&|r| r.rate_prod_f_mean),
                        med(&|r| r.rate_sum_log_onestep),
                        log10_of_ln(med(&|r| Some(r.gap_sum_log_onestep))),
                    );
                    let item = format!("{} (rate {prod:+.4} vs {dc:+.4}, {gap:+.1} decades at k = T − 1)", init.label);
                    if (prod - dc).abs() <= 0.2 * dc.abs().max(1e-3) { tracks.push(item) } else { misses.push(item) }
                }
            }
        }
        let sentence = "far-range rate of ∏ f (the best-kept unit) against the exact dc_total, per init; it holds \
                        where the two agree within 20%"
            .to_string();
        (s, vec![Finding::new(Claim::ProdFCarries, tracks, misses, sentence)], vec![])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gate_is_exact_in_saturation_and_log_sum_exp_is_stable() {
        // f = σ(40) rounds to 1, but ln f = −ln(1 + e^{−40}) ≈ −e^{−40}.
        let a = 40.0f64;
        let (f, df) = (1.0 / (1.0 + (-a).exp()), (-a).exp() / (1.0 + (-a).exp()).powi(2));
        assert_eq!(f, 1.0);
        assert!((ln_gate(f, df) / -(-a).exp() - 1.0).abs() < 1e-12);
        assert!((ln_gate(0.25, 0.25 * 0.75) - 0.25f64.ln()).abs() < 1e-15);
        assert!((log_sum_exp(&[-1000.0, -1000.0]) - (-1000.0 + 2f64.ln())).abs() < 1e-12);
        assert_eq!(log_sum_exp(&[f64::NEG_INFINITY]), f64::NEG_INFINITY);
    }
}
