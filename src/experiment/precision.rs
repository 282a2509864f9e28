//! `precision`: where does real arithmetic lose the gradient? The probes are exact in log-space,
//! but training runs plain BPTT in f32 (or f64), where the error signal underflows to subnormals
//! and then to exactly 0 at some distance: from there on, earlier steps get no gradient at all.
//! Per sequence, a loss at the last step with a random unit ∂L/∂h_T is back-propagated by the
//! real batched BPTT ([`crate::bptt::state_gradients`]) in f32 and in f64, beside the exact
//! log-space norm ([`crate::probe::state_error_signal`]). The signal is the whole state's
//! gradient, ∂L/∂(h_s, c_s) for the LSTM: a chrono LSTM keeps its gradient in δc while δh is
//! tiny, and the step's parameters receive both.

use super::charts::{censored_median, censored_median_text, log10_of_ln, median_band};
use super::findings::{Claim, Finding};
use super::grid::{Key, Point, draw, rows_at};
use super::runner::{CurvesAndSummary, Experiment, Products};
use super::spec::Spec;
use crate::bptt::{StateGradients, forward, state_gradients};
use crate::error::Result;
use crate::estimate::{Regime, summarize};
use crate::output::plot::Figure as Chart;
use crate::output::plot::{Dash, Figure, Panel, RefLine, Series};
use crate::params::Params;
use crate::probe::state_error_signal;
use crate::scalar::Scalar;
use nalgebra::DMatrix;
use plotters::prelude::{RGBColor, SeriesLabelPosition};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One distance of one sequence: `curves.csv` (log10; −inf where the plain signal is exactly 0).
/// The signal is ∂L/∂h_s, and ∂L/∂(h_s, c_s) for the LSTM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurveRow {
    /// k = T − s.
    pub distance: usize,
    /// log10 of the exact norm of the signal.
    pub log10_exact: f64,
    /// log10 of its norm as plain f32 BPTT delivers it.
    pub log10_f32: f64,
    /// The same in f64.
    pub log10_f64: f64,
}

/// Per sequence: `summary.csv`. Distances are k = T − s; empty where it does not happen by k = T.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// First k at which every entry of the f32 signal is subnormal or 0 (|x| < 2^−126).
    pub underflow_f32: Option<usize>,
    /// First k at which the signal is exactly 0 in f32 (and stays so: the recursion is linear).
    pub zero_f32: Option<usize>,
    /// As `underflow_f32` in f64 (|x| < 2^−1022).
    pub underflow_f64: Option<usize>,
    pub zero_f64: Option<usize>,
    /// Horizon of the exact signal (norm 1 at k = 0) at the spec's threshold.
    pub horizon: Option<usize>,
    /// Regime of the exact curve.
    pub regime: Regime,
    /// log10 of the exact norm where f32 reaches 0: what the real run throws away.
    pub log10_exact_at_zero_f32: Option<f64>,
    pub log10_exact_at_zero_f64: Option<f64>,
}

/// What the experiment measures: its two tables' rows.
pub type Measured = CurvesAndSummary<CurveRow, SummaryRow>;

pub struct Precision<'a> {
    spec: &'a Spec,
}

impl<'a> Precision<'a> {
    pub fn new(spec: &'a Spec) -> Result<Self> {
        Ok(Precision { spec })
    }
}

/// Per step s = 0..=T of sequence b: (ln ‖(δh_s, δc_s)‖₂, all entries below the smallest normal,
/// all exactly 0), computed in f64 from the stored values.
fn plain_signal<T: Scalar>(d: &StateGradients<T>, steps: usize, batch: usize, b: usize) -> Vec<(f64, bool, bool)> {
    let tiny = T::SMALLEST_NORMAL;
    (0..=steps)
        .map(|s| {
            let j = s * batch + b;
            let col: Vec<f64> = d.h.column(j).iter().chain(d.c.column(j).iter()).map(|v| v.as_f64()).collect();
            let amax = col.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            // Scaled, so squares of subnormals do not underflow.
            let norm = if amax > 0.0 { amax * col.iter().map(|v| (v / amax).powi(2)).sum::<f64>().sqrt() } else { 0.0 };
            (norm.ln(), amax < tiny, amax == 0.0)
        })
        .collect()
}

/// The plain BPTT signal of a loss at the last step with ∂L/∂h_T = `g` (H × B), in T's arithmetic.
fn plain<T: Scalar>(params: &Params<f64>, inputs: &crate::bptt::Inputs<f64>, g: &DMatrix<f64>) -> StateGradients<T> {
    let (p, x) = (params.cast::<T>(), inputs.cast::<T>());
    let tape = forward(&p, &x);
    let (steps, batch) = (x.steps, x.batch);
    let mut dy = DMatrix::<T>::zeros(p.hidden(), steps * batch);
    dy.columns_mut((steps - 1) * batch, batch).copy_from(&g.map(T::of));
    state_gradients(&p, &x, &tape, &dy).swap_remove(0)
}

impl Experiment for Precision<'_> {
    type Measured = Measured;

    fn tables(&self) -> Vec<&'static str> {
        vec!["curves.csv", "summary.csv"]
    }

    fn charts(&self) -> Vec<&'static str> {
        vec!["precision"]
    }

    fn cost(&self, p: &Point) -> f64 {
        let n = if p.cell.has_cell_state() { 2 * p.hidden } else { p.hidden } as f64;
        p.seq_len as f64 * n * n
    }

    fn measure(&self, p: &Point, rng: &mut ChaCha8Rng) -> Result<Measured> {
        let spec = self.spec;
        let (params, inputs) = draw(spec, p, rng);
        let (h, t, batch) = (p.hidden, p.seq_len, spec.batch);
        // A random unit ∂L/∂h_T per sequence.
        let mut g = DMatrix::from_fn(h, batch, |_, _| StandardNormal.sample(rng));
        for mut c in g.column_iter_mut() {
            c /= c.norm();
        }
        let exact_tape = forward(&params, &inputs);
        let (dh32, dh64) = (plain::<f32>(&params, &inputs, &g), plain::<f64>(&params, &inputs, &g));
        let mut out = Measured::default();
        for b in 0..batch {
            let key = Key::new(spec, p, b);
            // By distance k = T − s.
            let mut exact = state_error_signal(&params, &exact_tape, 0, b, g.column(b).as_slice());
            exact.reverse();
            // Plain signals by distance k = T − s.
            let mut s32 = plain_signal(&dh32, t, batch, b);
            let mut s64 = plain_signal(&dh64, t, batch, b);
            s32.reverse();
            s64.reverse();
            let first = |v: &[(f64, bool, bool)], f: fn(&(f64, bool, bool)) -> bool| v.iter().position(f);
            let (zero_f32, zero_f64) = (first(&s32, |x| x.2), first(&s64, |x| x.2));
            let est = summarize(&exact, spec.probes.horizon_threshold);
            out.summary.push((
                key.clone(),
                SummaryRow {
                    underflow_f32: first(&s32, |x| x.1),
                    zero_f32,
                    underflow_f64: first(&s64, |x| x.1),
                    zero_f64,
                    horizon: est.horizon,
                    regime: est.regime,
                    log10_exact_at_zero_f32: zero_f32.map(|k| log10_of_ln(exact[k])),
                    log10_exact_at_zero_f64: zero_f64.map(|k| log10_of_ln(exact[k])),
                },
            ));
            for k in 0..=t {
                out.curves.push((
                    key.clone(),
                    CurveRow {
                        distance: k,
                        log10_exact: log10_of_ln(exact[k]),
                        log10_f32: log10_of_ln(s32[k].0),
                        log10_f64: log10_of_ln(s64[k].0),
                    },
                ));
            }
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
        vec![("precision", self.figure(all))]
    }

    fn read(&self, dir: &Path) -> Result<Measured> {
        CurvesAndSummary::read(dir)
    }
}

impl Precision<'_> {
    /// One panel per (cell, init) at the first hidden size and longest T: exact, f64 and f32
    /// signals against distance, median over sequences (a line ends where the median is 0).
    fn figure(&self, all: &Measured) -> Figure {
        let spec = self.spec;
        let t = *spec.seq_len.iter().max().expect("validated");
        let h = spec.hidden[0];
        type Pick = fn(&CurveRow) -> f64;
        let lines: [(&str, RGBColor, Dash, Pick); 3] = [
            ("exact (log-space)", RGBColor(20, 20, 20), Dash::Solid, |c| c.log10_exact),
            ("plain f64 BPTT", RGBColor(31, 119, 180), Dash::Dashed, |c| c.log10_f64),
            ("plain f32 BPTT", RGBColor(214, 39, 40), Dash::Dashed, |c| c.log10_f32),
        ];
        let panels = spec
            .pairs()
            .into_iter()
            .map(|(cell, init)| {
                let series = lines
                    .iter()
                    .map(|&(label, color, dash, pick)| {
                        let mut by_k: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
                        for (k, c) in &all.curves {
                            if k.cell == cell && k.init == init && k.hidden == h && k.seq_len == t {
                                by_k.entry(c.distance).or_default().push(pick(c));
                            }
                        }
                        let (points, _) = median_band(&by_k, 1.0);
                        Series { dash, ..Series::line(label, color, points) }
                    })
                    .collect();
                Panel::new(format!("{cell} {init}"), series)
            })
            .collect();
        Figure {
            panels,
            shared_y: false,
            legend: SeriesLabelPosition::LowerLeft,
            hlines: vec![RefLine { at: f32::MIN_POSITIVE.log10() as f64, label: "f32 smallest normal".into() }],
            ..Figure::new(
                format!(
                    "Where does arithmetic lose the gradient? dL/dh_s (LSTM: dL/d(h_s, c_s)), loss at T = {t}, H = {h}, median of {}",
                    spec.seeds.len() * spec.batch
                ),
                "distance T − s (steps)",
                "log10 of the gradient norm",
            )
        }
    }

    fn summary(&self, all: &Measured) -> (String, Vec<Finding>, Vec<String>) {
        let spec = self.spec;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Distances k = T − s (median over {} sequences, one that never gets there counting as beyond T; \
             \"none\": most not within T; (k of N): only k within T) at which plain BPTT's ∂L/∂h_s \
             (LSTM: ∂L/∂(h_s, c_s)) is all subnormal, then exactly 0, beside the exact norm there:\n",
            spec.seeds.len() * spec.batch
        );
        let _ = writeln!(
            s,
            "| cell | init | H | T | underflow f32 | zero f32 | exact log10 at zero f32 | underflow f64 | zero f64 | exact log10 at zero f64 | exact horizon |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
        let mut earlier = 0;
        let mut compared = 0;
        let mut lost = Vec::new();
        let mut stalled = Vec::new();
        let mut delivered = Vec::new();
        for &h in &spec.hidden {
            for &t in &spec.seq_len {
                for (cell, init) in spec.pairs() {
                    let rows =
                        rows_at(&all.summary, |k| k.cell == cell && k.init == init && k.hidden == h && k.seq_len == t);
                    let values = |f: fn(&SummaryRow) -> Option<f64>| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
                    let med = |f: fn(&SummaryRow) -> Option<f64>| censored_median(&values(f));
                    let text = |f: fn(&SummaryRow) -> Option<f64>, d: usize| censored_median_text(&values(f), d);
                    let z32 = med(|r| r.zero_f32.map(|k| k as f64));
                    let z64 = med(|r| r.zero_f64.map(|k| k as f64));
                    let at32 = med(|r| r.log10_exact_at_zero_f32);
                    let _ = writeln!(
                        s,
                        "| {cell} | {init} | {h} | {t} | {} | {} | {} | {} | {} | {} | {} |",
                        text(|r| r.underflow_f32.map(|k| k as f64), 0),
                        text(|r| r.zero_f32.map(|k| k as f64), 0),
                        text(|r| r.log10_exact_at_zero_f32, 1),
                        text(|r| r.underflow_f64.map(|k| k as f64), 0),
                        text(|r| r.zero_f64.map(|k| k as f64), 0),
                        text(|r| r.log10_exact_at_zero_f64, 1),
                        text(|r| r.horizon.map(|k| k as f64), 0),
                    );
                    let u32_ = med(|r| r.underflow_f32.map(|k| k as f64));
                    match (u32_, z32) {
                        (None, _) => delivered.push(format!("{cell} {init} (no underflow within T = {t})")),
                        (Some(u), None) => stalled.push(format!("{cell} {init} (subnormal from k = {u:.0}, never 0)")),
                        _ => {}
                    }
                    if let Some(z32) = z32
                        && at32 == Some(f64::NEG_INFINITY)
                    {
                        // A zero Jacobian: the exact signal is exactly 0 there too; f32 lost nothing.
                        delivered
                            .push(format!("{cell} {init} (0 after {z32:.0} steps, where the exact norm is 0 too)"));
                    } else if let Some(z32) = z32 {
                        compared += 1;
                        if z64.is_none_or(|z64| z64 > z32) {
                            earlier += 1;
                        }
                        lost.push(format!(
                            "{cell} {init} (0 after {z32:.0} steps, exact norm there 10^{:.0})",
                            at32.unwrap_or(f64::NAN)
                        ));
                    }
                }
            }
        }
        let sentence = "first distance at which plain f32 BPTT's signal is all subnormal, then exactly 0 (median over \
                        sequences), beside the exact norm there; it holds where f32 does not underflow within T, or reaches 0 \
                        only where the exact norm is 0 too"
            .to_string();
        let fails = lost.iter().chain(&stalled).cloned().collect();
        let findings = vec![Finding::new(Claim::F32Delivers, delivered, fails, sentence)];
        let mut notes = vec![format!(
            "Where f32 reaches 0, f64 reaches it later (or not within T) in {earlier} of {compared} cases."
        )];
        if !stalled.is_empty() {
            notes.push(format!(
                "f32 underflows but does not reach 0 within T under {}: the signal stalls among subnormals (rounding \
                 f·x at the smallest subnormals can return x), a floor of noise rather than a gradient.",
                stalled.join("; ")
            ));
        }
        (s, findings, notes)
    }
}
