//! `vanishing`: how ‖∂h_T/∂h_s‖₂ decays with the distance k = T − s, per cell and init, and for
//! the LSTM also the exact state map `dstate` and `dc_total` beside `dh` (which holds c_s fixed
//! and so misses what the cell state carries). Per curve: far and near decay rates, horizon and
//! regime ([`crate::estimate`]); per sequence: the leading Lyapunov exponents after a burn-in
//! from a random Q_0, which for a long enough sequence must agree with the far rate of the
//! headline quantity (dh for RNN and GRU, dstate for the LSTM).

use super::charts::{censored_median_text, counts_text, log10_of_ln, mean_sd_text, median_all, median_band};
use super::findings::{Claim, Finding};
use super::grid::{Key, Point, draw, rows_at};
use super::runner::{Experiment, Products};
use super::spec::Spec;
use crate::bptt::forward;
use crate::cell::CellKind;
use crate::error::{Error, Result};
use crate::estimate::{CurveSummary, Regime, summarize};
use crate::output::plot::Figure as Chart;
use crate::output::plot::{Dash, Figure, Panel, RefLine, Scale, Series, style};
use crate::output::read_csv;
use crate::probe::{LyapunovOptions, Q0, Quantity, jacobian_flow, lyapunov};
use plotters::prelude::{RGBColor, SeriesLabelPosition};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One point of one curve: `curves.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurveRow {
    /// k = T − s.
    pub distance: usize,
    pub quantity: Quantity,
    pub log_spectral_norm: f64,
    pub log_frobenius_norm: f64,
}

/// Which curve a row of `summary.csv` is about, and its end; its estimators follow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    pub quantity: Quantity,
    /// ln of the norm at the largest distance (k = T; dc_total: k = T − 1).
    pub log_norm_end: f64,
}

/// A row of `summary.csv` after its key.
pub type SummaryRow = (Curve, CurveSummary);

/// One Lyapunov exponent: `lyapunov.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LyapunovRow {
    pub index: usize,
    pub exponent: f64,
    pub lyapunov_se: Option<f64>,
}

/// What one point produces.
#[derive(Default, Serialize, Deserialize)]
pub struct Measured {
    curves: Vec<(Key, CurveRow)>,
    summary: Vec<(Key, SummaryRow)>,
    lyapunov: Vec<(Key, LyapunovRow)>,
}

pub struct Vanishing<'a> {
    spec: &'a Spec,
}

impl<'a> Vanishing<'a> {
    pub fn new(spec: &'a Spec) -> Result<Self> {
        let q = &spec.probes.quantities;
        let lstm = spec.cells.contains(&CellKind::Lstm);
        if !q.contains(&Quantity::Dh) || (lstm && !q.contains(&Quantity::Dstate)) {
            return Err(Error::Usage(format!(
                "key `probes.quantities`: the vanishing experiment needs `dh`{}; found {q:?}",
                if lstm { " and, with the LSTM, `dstate`" } else { "" }
            )));
        }
        Ok(Vanishing { spec })
    }

    fn longest(&self) -> usize {
        *self.spec.seq_len.iter().max().expect("validated non-empty")
    }
}

impl Experiment for Vanishing<'_> {
    type Measured = Measured;

    fn tables(&self) -> Vec<&'static str> {
        vec!["curves.csv", "summary.csv", "lyapunov.csv"]
    }

    fn charts(&self) -> Vec<&'static str> {
        vec!["decay", "rate"]
    }

    fn measure(&self, p: &Point, rng: &mut ChaCha8Rng) -> Result<Measured> {
        let spec = self.spec;
        let (params, inputs) = draw(spec, p, rng);
        let q0_seed = rng.next_u64();
        let tape = forward(&params, &inputs);
        let mut out = Measured::default();
        for b in 0..spec.batch {
            let key = Key::new(spec, p, b);
            let flow = jacobian_flow(&params, &tape, 0, b, &spec.probes.quantities);
            // Rows come by step s = 0..T; curves go by distance k = T − s = 0..T.
            let mut by_k: BTreeMap<Quantity, Vec<f64>> = BTreeMap::new();
            for row in flow.iter().rev() {
                by_k.entry(row.quantity).or_default().push(row.log_spectral_norm);
                out.curves.push((
                    key.clone(),
                    CurveRow {
                        distance: row.distance,
                        quantity: row.quantity,
                        log_spectral_norm: row.log_spectral_norm,
                        log_frobenius_norm: row.log_frobenius_norm,
                    },
                ));
            }
            for (&quantity, curve) in &by_k {
                let head = Curve { quantity, log_norm_end: *curve.last().expect("T ≥ 2") };
                out.summary.push((key.clone(), (head, summarize(curve, spec.probes.horizon_threshold))));
            }
            if spec.probes.lyapunov > 0 {
                let opts = LyapunovOptions {
                    count: Some(spec.probes.lyapunov),
                    burn_in: spec.probes.lyapunov_burn_in,
                    q0: Q0::Random,
                    seed: q0_seed.wrapping_add(b as u64),
                };
                let est = lyapunov(&params, &tape, 0, b, &opts);
                for (index, (&exponent, &lyapunov_se)) in est.exponents.iter().zip(&est.se).enumerate() {
                    out.lyapunov.push((key.clone(), LyapunovRow { index, exponent, lyapunov_se }));
                }
            }
        }
        Ok(out)
    }

    fn append(all: &mut Measured, one: Measured) {
        all.curves.extend(one.curves);
        all.summary.extend(one.summary);
        all.lyapunov.extend(one.lyapunov);
    }

    fn finish(&self, all: &Measured) -> Result<Products> {
        let mut p = Products::default();
        p.table("curves.csv", &all.curves)?;
        p.table("summary.csv", &all.summary)?;
        if self.spec.probes.lyapunov > 0 {
            p.table("lyapunov.csv", &all.lyapunov)?;
        }
        (p.summary, p.findings, p.notes) = self.summary(all);
        Ok(p)
    }

    fn figures(&self, all: &Measured) -> Vec<(&'static str, Chart)> {
        vec![("decay", self.decay_figure(all)), ("rate", self.rate_figure(all))]
    }

    fn read(&self, dir: &Path) -> Result<Measured> {
        let lyapunov = if self.spec.probes.lyapunov > 0 { read_csv(&dir.join("lyapunov.csv"))? } else { vec![] };
        Ok(Measured {
            curves: read_csv(&dir.join("curves.csv"))?,
            summary: read_csv(&dir.join("summary.csv"))?,
            lyapunov,
        })
    }
}

impl Vanishing<'_> {
    fn seeds_text(&self) -> String {
        let n = self.spec.seeds.len() * self.spec.batch;
        if n == 1 { "1 sequence".into() } else { format!("median and range over {n} sequences") }
    }

    /// log10 norm against distance at the longest T, one panel per cell and hidden size; the
    /// LSTM panel shows dstate (solid), dc_total (dotted) and dh (dashed) per init.
    fn decay_figure(&self, all: &Measured) -> Figure {
        let spec = self.spec;
        let t = self.longest();
        let mut panels = Vec::new();
        for &h in &spec.hidden {
            for &cell in &spec.cells {
                let mut series = Vec::new();
                let quantities: Vec<(Quantity, Dash)> = if cell == CellKind::Lstm {
                    [(Quantity::Dstate, Dash::Solid), (Quantity::DcTotal, Dash::Dotted), (Quantity::Dh, Dash::Dashed)]
                        .into_iter()
                        .filter(|(q, _)| spec.probes.quantities.contains(q))
                        .collect()
                } else {
                    vec![(Quantity::Dh, Dash::Solid)]
                };
                for (i, (_, init)) in spec.pairs().into_iter().filter(|(c, _)| *c == cell).enumerate() {
                    for &(q, dash) in &quantities {
                        let mut by_k: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
                        for (k, c) in &all.curves {
                            if k.cell == cell && k.init == init && k.hidden == h && k.seq_len == t && c.quantity == q {
                                by_k.entry(c.distance).or_default().push(c.log_spectral_norm);
                            }
                        }
                        let (points, band) = median_band(&by_k, 1.0 / std::f64::consts::LN_10);
                        let mut label =
                            if quantities.len() > 1 { format!("{init}: {}", q.name()) } else { init.to_string() };
                        // A median exactly 0 has no place on a log axis: the legend says where it went.
                        if let Some(&(k, _)) = points.iter().find(|(_, y)| *y == f64::NEG_INFINITY) {
                            label += &format!(" (exactly 0 from k = {k})");
                        }
                        let band = if dash == Dash::Solid { band } else { vec![] };
                        series.push(Series { dash, band, ..Series::line(label, style(i).0, points) });
                    }
                }
                let what = if cell == CellKind::Lstm { "LSTM" } else { cell.name() };
                panels.push(Panel::new(format!("{what}, H = {h}"), series));
            }
            if let Some(p) = self.lstm_close_up(all, h) {
                panels.push(p);
            }
        }
        Figure {
            panels,
            shared_y: false,
            hlines: vec![RefLine {
                at: spec.probes.horizon_threshold.log10(),
                label: format!("horizon threshold {:e}", spec.probes.horizon_threshold),
            }],
            ..Figure::new(
                format!("How far back does the gradient reach? T = {t}, {}", self.seeds_text()),
                "distance T − s (steps)",
                "log10 of the spectral norm",
            )
        }
    }

    /// The LSTM init whose dstate decays slowest, its three quantities on their own scale: where
    /// holding c_s fixed (dh) and the full state map differ most visibly.
    fn lstm_close_up(&self, all: &Measured, h: usize) -> Option<Panel> {
        let t = self.longest();
        let at = |k: &Key| k.cell == CellKind::Lstm && k.hidden == h && k.seq_len == t;
        let slowest = all
            .summary
            .iter()
            .filter(|(k, (c, _))| at(k) && c.quantity == Quantity::Dstate)
            .filter_map(|(k, (_, e))| e.decay_rate.map(|d| (k.init.as_str(), d)))
            .max_by(|a, b| a.1.total_cmp(&b.1))?
            .0;
        let (i, _) = self
            .spec
            .pairs()
            .into_iter()
            .filter(|(c, _)| *c == CellKind::Lstm)
            .enumerate()
            .find(|(_, p)| p.1 == slowest)?;
        let colors = [style(i).0, RGBColor(60, 60, 60), RGBColor(214, 39, 40)];
        let series = [(Quantity::Dstate, Dash::Solid), (Quantity::DcTotal, Dash::Dotted), (Quantity::Dh, Dash::Dashed)]
            .into_iter()
            .zip(colors)
            .filter(|((q, _), _)| self.spec.probes.quantities.contains(q))
            .map(|((q, dash), color)| {
                let mut by_k: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
                for (k, c) in &all.curves {
                    if at(k) && k.init == slowest && c.quantity == q {
                        by_k.entry(c.distance).or_default().push(c.log_spectral_norm);
                    }
                }
                let (points, band) = median_band(&by_k, 1.0 / std::f64::consts::LN_10);
                let band = if dash == Dash::Solid { band } else { vec![] };
                Series { dash, band, ..Series::line(format!("{slowest}: {}", q.label()), color, points) }
            })
            .collect();
        Some(Panel {
            legend: Some(SeriesLabelPosition::MiddleRight),
            ..Panel::new(format!("LSTM {slowest} close up: dh holds c_s fixed"), series)
        })
    }

    /// The far decay rate of the headline quantity against T, mean ± sd over sequences.
    fn rate_figure(&self, all: &Measured) -> Figure {
        let spec = self.spec;
        let mut panels = Vec::new();
        for &h in &spec.hidden {
            for &cell in &spec.cells {
                let q = Quantity::headline(cell);
                let series = spec
                    .pairs()
                    .into_iter()
                    .filter(|(c, _)| *c == cell)
                    .enumerate()
                    .map(|(i, (_, init))| {
                        let mut points = Vec::new();
                        let mut error_bars = Vec::new();
                        for &t in &spec.seq_len {
                            let at = |k: &Key| k.cell == cell && k.init == init && k.hidden == h && k.seq_len == t;
                            let v: Vec<f64> = rows_at(&all.summary, at)
                                .into_iter()
                                .filter(|(c, _)| c.quantity == q)
                                .filter_map(|(_, e)| e.decay_rate)
                                .collect();
                            if v.is_empty() {
                                continue;
                            }
                            let (m, sd) = crate::estimate::mean_sd(&v);
                            points.push((t as f64, m));
                            error_bars.push((t as f64, m - sd, m + sd));
                        }
                        let (color, _) = style(i);
                        Series { markers: true, error_bars, ..Series::line(init, color, points) }
                    })
                    .collect();
                let what = if cell == CellKind::Lstm { "LSTM (dstate)" } else { cell.name() };
                panels.push(Panel::new(format!("{what}, H = {h}"), series));
            }
        }
        Figure {
            x_scale: Scale::Log,
            panels,
            legend: SeriesLabelPosition::LowerRight,
            legend_room: 0.5,
            x_ticks: Some(spec.seq_len.iter().map(|&t| t as f64).collect()),
            hlines: vec![RefLine { at: 0.0, label: "0: neither vanishing nor exploding".into() }],
            ..Figure::new(
                "Far-range decay rate (slope over k in [T/2, T]) against sequence length; mean ± sd",
                "sequence length T (steps, log scale)",
                "decay rate (ln of norm per step)",
            )
        }
    }

    /// The Markdown summary (one table at the longest T), the findings and notes computed from it.
    fn summary(&self, all: &Measured) -> (String, Vec<Finding>, Vec<String>) {
        let spec = self.spec;
        let t = self.longest();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "At T = {t}, over {} sequences per row (rates per step, mean ± sd; horizon: median k after which the \
             norm stays below {:e}, a sequence that never does counting as beyond T, \"none\" when most never do, \
             and (k of N) when only k do; λ₁ after a burn-in of {} steps from a random Q₀):\n",
            spec.seeds.len() * spec.batch,
            spec.probes.horizon_threshold,
            spec.probes.lyapunov_burn_in
        );
        let _ = writeln!(
            s,
            "| cell | init | H | quantity | decay_rate (far) | decay_rate_near | horizon | regime | log10 norm at k = T | λ₁ |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        let mut findings_rate = Vec::new();
        let mut lstm_gap = Vec::new();
        // (cell, init, mean far rate, is the majority regime vanishing, regime counts) of the
        // headline quantity.
        let mut headlines: Vec<(CellKind, &str, f64, bool, String)> = Vec::new();
        let mut zeros = Vec::new();
        for &h in &spec.hidden {
            for (cell, init) in spec.pairs() {
                let at = |k: &Key| k.cell == cell && k.init == init && k.hidden == h && k.seq_len == t;
                let lyap: Vec<f64> =
                    all.lyapunov.iter().filter(|(k, l)| at(k) && l.index == 0).map(|(_, l)| l.exponent).collect();
                let mut ends = BTreeMap::new();
                for q in Quantity::PRODUCTS {
                    let (curves, rows): (Vec<&Curve>, Vec<&CurveSummary>) = rows_at(&all.summary, at)
                        .into_iter()
                        .filter(|(c, _)| c.quantity == q)
                        .map(|(c, e)| (c, e)) // &(Curve, CurveSummary) -> (&Curve, &CurveSummary)
                        .unzip();
                    if rows.is_empty() {
                        continue;
                    }
                    let far: Vec<f64> = rows.iter().filter_map(|r| r.decay_rate).collect();
                    let near: Vec<f64> = rows.iter().filter_map(|r| r.decay_rate_near).collect();
                    let horizons: Vec<Option<f64>> = rows.iter().map(|r| r.horizon.map(|k| k as f64)).collect();
                    let regimes: Vec<Regime> = rows.iter().map(|r| r.regime).collect();
                    let horizon = censored_median_text(&horizons, 0);
                    let end = median_all(&curves.iter().map(|c| log10_of_ln(c.log_norm_end)).collect::<Vec<_>>());
                    let zero = curves.iter().filter(|c| c.log_norm_end == f64::NEG_INFINITY).count();
                    if zero > 0 {
                        zeros.push(format!(
                            "**Warning**: {cell} {init} H = {h} {q} is exactly 0 at k = T in {zero} of {} sequences: the \
                             product of Jacobians is exactly 0 (W_hh = 0; units or gates saturated to the last bit; \
                             or ReLU units each dead at some step, which zeroes their rows), so its decay rates are \
                             undefined (—), its horizon is where it reaches 0, and its chart line stops there.",
                            curves.len()
                        ));
                    }
                    ends.insert(q, end);
                    let lyap_text = if q == Quantity::headline(cell) { mean_sd_text(&lyap, 4) } else { String::new() };
                    let _ = writeln!(
                        s,
                        "| {cell} | {init} | {h} | {q} | {} | {} | {horizon} | {} | {end:.1} | {lyap_text} |",
                        mean_sd_text(&far, 4),
                        mean_sd_text(&near, 4),
                        counts_text(&regimes)
                    );
                    // A curve exactly 0 at k = T has no rate; it vanished all the same (rate −∞).
                    if q == Quantity::headline(cell) && (!far.is_empty() || zero == curves.len()) {
                        let vanishing = regimes.iter().filter(|&&r| r == Regime::Vanishing).count();
                        let mean = if far.is_empty() { f64::NEG_INFINITY } else { crate::estimate::mean_sd(&far).0 };
                        headlines.push((cell, init, mean, 2 * vanishing > regimes.len(), counts_text(&regimes)));
                    }
                    if q == Quantity::headline(cell) && !far.is_empty() && !lyap.is_empty() {
                        let (mf, ml) = (crate::estimate::mean_sd(&far).0, crate::estimate::mean_sd(&lyap).0);
                        findings_rate.push((cell, init, mf, ml));
                    }
                }
                if let (Some(dh), Some(ds)) = (ends.get(&Quantity::Dh), ends.get(&Quantity::Dstate)) {
                    lstm_gap.push((init, *dh, *ds));
                }
            }
        }
        let mut findings = Vec::new();
        let rnn: Vec<_> = headlines.iter().filter(|h| h.0 == CellKind::Rnn).collect();
        if !rnn.is_empty() {
            let holds = rnn.iter().filter(|h| h.3).map(|h| format!("{} ({:+.4}/step)", h.1, h.2)).collect();
            let fails = rnn.iter().filter(|h| !h.3).map(|h| format!("{} ({:+.4}/step, {})", h.1, h.2, h.4)).collect();
            let sentence = format!("far decay rate of ‖dh_T/dh_s‖₂ at T = {t} per init, vanishing when most seeds are");
            findings.push(Finding::new(Claim::RnnVanishes, holds, fails, sentence));
        }
        // The slowest-vanishing tanh RNN is what an LSTM must beat.
        let reference = rnn.iter().filter(|h| h.3).max_by(|a, b| a.2.total_cmp(&b.2));
        let lstm: Vec<_> = headlines.iter().filter(|h| h.0 == CellKind::Lstm).collect();
        if let Some(r) = reference
            && !lstm.is_empty()
        {
            let item = |h: &&(CellKind, &str, f64, bool, String)| format!("{} ({:+.4}/step)", h.1, h.2);
            let holds = lstm.iter().filter(|h| h.2 > r.2).map(item).collect();
            let fails = lstm.iter().filter(|h| h.2 <= r.2).map(item).collect();
            let sentence = format!(
                "far decay rate of the LSTM's state map d(h,c)_T/d(h,c)_s at T = {t} against the slowest-vanishing \
                 tanh RNN, {} ({:+.4}/step)",
                r.1, r.2
            );
            findings.push(Finding::new(Claim::LstmRemembers, holds, fails, sentence));
        }
        let mut notes = zeros;
        let agree = |mf: f64, ml: f64| (ml - mf).abs() <= 0.2 * mf.abs().max(1e-3);
        let good = findings_rate.iter().filter(|r| agree(r.2, r.3)).count();
        let bad: Vec<String> = findings_rate
            .iter()
            .filter(|r| !agree(r.2, r.3))
            .map(|(c, i, mf, ml)| format!("{c} {i} (rate {mf:+.4}, λ₁ {ml:+.4})"))
            .collect();
        notes.push(format!(
            "λ₁ agrees with the far decay rate of the full state map within 20% for {good} of {} (cell, init) pairs{}.",
            findings_rate.len(),
            if bad.is_empty() {
                String::new()
            } else {
                format!(
                    "; it does not for {} (a finite sequence: λ₁ has not converged, or the curve is not one exponential)",
                    bad.join(", ")
                )
            }
        ));
        for (init, dh, ds) in lstm_gap {
            if dh == f64::NEG_INFINITY || ds == f64::NEG_INFINITY {
                if ds > dh {
                    notes.push(format!(
                        "LSTM {init}: at k = T, ‖dh‖ is exactly 0 but log10 ‖dstate‖ = {ds:.1}: holding c_s fixed \
                         loses all the state carries."
                    ));
                }
                continue;
            }
            notes.push(format!(
                "LSTM {init}: at k = T, log10 ‖dh‖ = {dh:.1} but log10 ‖dstate‖ = {ds:.1}: holding c_s fixed {} \
                 what the state carries by {:.1} decades.",
                if ds >= dh { "understates" } else { "overstates" },
                (ds - dh).abs()
            ));
        }
        (s, findings, notes)
    }
}
