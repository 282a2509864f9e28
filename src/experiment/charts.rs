//! The experiment's charts as pure data preparation: results in, [`Figure`]s out.
//! (a) log10 ‖∂h_T/∂h_s‖₂ against distance, median over seeds with a min–max band;
//! (b) decay rate against sequence length, mean ± sd over seeds;
//! (c) the LSTM split of ∂c_t/∂c_{t-1} over time, F against T_f, T_i, T_g.

use super::run::Results;
use super::spec::Spec;
use crate::cell::CellKind;
use crate::output::plot::{Figure, Panel, Scale, Series};
use plotters::prelude::{RGBColor, SeriesLabelPosition};
use std::collections::BTreeMap;

/// Colour of the `i`-th init of a cell: reds for the RNN, blues for the LSTM, greens for the GRU.
fn color(cell: &str, i: usize) -> RGBColor {
    let palette: &[RGBColor] = match cell {
        "rnn" => &[RGBColor(200, 30, 40), RGBColor(240, 130, 20), RGBColor(140, 70, 30), RGBColor(200, 40, 170)],
        "lstm" => &[RGBColor(20, 60, 160), RGBColor(40, 140, 230), RGBColor(20, 170, 190), RGBColor(100, 90, 200)],
        _ => &[RGBColor(30, 140, 50), RGBColor(120, 190, 40), RGBColor(20, 100, 90), RGBColor(90, 160, 120)],
    };
    palette[i % palette.len()]
}

/// (cell, init) pairs in grid order with each one's colour.
fn pairs(spec: &Spec) -> Vec<(CellKind, String, RGBColor)> {
    let mut out = Vec::new();
    for &cell in &spec.cells {
        for (i, init) in spec.inits.iter().filter(|n| n.applies_to(cell)).enumerate() {
            out.push((cell, init.label.clone(), color(cell.name(), i)));
        }
    }
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
}

/// Chart (a): at the longest sequence length, one panel per hidden size.
pub fn decay_figure(spec: &Spec, r: &Results) -> Figure {
    let t = *spec.seq_len.iter().max().expect("validated non-empty");
    let panels = spec
        .hidden
        .iter()
        .map(|&h| {
            let series = pairs(spec)
                .into_iter()
                .filter_map(|(cell, init, color)| {
                    let mut by_k: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
                    for c in r.curves.iter().filter(|c| {
                        c.cell == cell.name() && c.init == init && c.hidden == h && c.seq_len == t && c.quantity == "dh"
                    }) {
                        by_k.entry(c.distance).or_default().push(c.log_spectral_norm / std::f64::consts::LN_10);
                    }
                    if by_k.is_empty() {
                        return None;
                    }
                    let mut points = Vec::new();
                    let mut band = Vec::new();
                    for (k, mut v) in by_k {
                        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        points.push((k as f64, median(&mut v)));
                        band.push((k as f64, lo, hi));
                    }
                    Some(Series { label: format!("{cell} {init}"), color, points, band, error_bars: vec![] })
                })
                .collect();
            Panel {
                title: format!("H = {h}, T = {t}: median and range over {} seeds", spec.seeds.len() * spec.batch),
                series,
            }
        })
        .collect();
    Figure {
        title: "How far back does the gradient reach? ‖∂h_T/∂h_s‖₂ against distance".into(),
        x_label: "distance T − s (steps)".into(),
        y_label: "log₁₀ ‖∂h_T/∂h_s‖₂".into(),
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
        panels,
        legend: SeriesLabelPosition::LowerLeft,
        legend_room: 0.0,
        x_ticks: None,
    }
}

/// Chart (b): one panel per hidden size.
pub fn rate_figure(spec: &Spec, r: &Results) -> Figure {
    let panels = spec
        .hidden
        .iter()
        .map(|&h| {
            let series = pairs(spec)
                .into_iter()
                .map(|(cell, init, color)| {
                    let mut points = Vec::new();
                    let mut error_bars = Vec::new();
                    for &t in &spec.seq_len {
                        let v: Vec<f64> = r
                            .summary
                            .iter()
                            .filter(|s| s.cell == cell.name() && s.init == init && s.hidden == h && s.seq_len == t)
                            .map(|s| s.decay_rate)
                            .filter(|v| v.is_finite())
                            .collect();
                        if v.is_empty() {
                            continue;
                        }
                        let (m, sd) = super::stats::mean_sd(&v);
                        points.push((t as f64, m));
                        error_bars.push((t as f64, m - sd, m + sd));
                    }
                    Series { label: format!("{cell} {init}"), color, points, band: vec![], error_bars }
                })
                .collect();
            Panel { title: format!("H = {h}: mean ± sd over seeds; below 0 vanishes, above 0 explodes"), series }
        })
        .collect();
    Figure {
        title: "Decay rate of ‖∂h_T/∂h_s‖₂ against sequence length".into(),
        x_label: "sequence length T (steps, log scale)".into(),
        y_label: "decay rate (ln of norm per step)".into(),
        x_scale: Scale::Log,
        y_scale: Scale::Linear,
        panels,
        legend: SeriesLabelPosition::LowerRight,
        legend_room: 0.5,
        x_ticks: Some(spec.seq_len.iter().map(|&t| t as f64).collect()),
    }
}

/// Steps in the rolling window of chart (c).
const SMOOTHING: usize = 25;

/// Centred rolling geometric mean (the window shrinks at the ends); suits values on a log axis.
fn rolling_geometric_mean(v: &[f64], window: usize) -> Vec<f64> {
    let logs: Vec<f64> = v.iter().map(|x| x.ln()).collect();
    let half = window / 2;
    (0..v.len())
        .map(|i| {
            let w = &logs[i.saturating_sub(half)..(i + half + 1).min(v.len())];
            (w.iter().sum::<f64>() / w.len() as f64).exp()
        })
        .collect()
}

/// Chart (c): one panel per LSTM init, at the longest sequence length and first hidden size;
/// `None` without LSTM decomposition rows.
pub fn decomposition_figure(spec: &Spec, r: &Results) -> Option<Figure> {
    let t = *spec.seq_len.iter().max()?;
    let h = *spec.hidden.first()?;
    let terms = [
        ("F", "F = diag(f_t), the forget gate", RGBColor(20, 60, 160)),
        ("Tf", "T_f (through f)", RGBColor(230, 120, 20)),
        ("Ti", "T_i (through i)", RGBColor(30, 150, 60)),
        ("Tg", "T_g (through g)", RGBColor(200, 30, 40)),
    ];
    let panels: Vec<Panel> = spec
        .inits
        .iter()
        .filter(|n| n.applies_to(CellKind::Lstm) && spec.cells.contains(&CellKind::Lstm))
        .map(|init| {
            let series = terms
                .iter()
                .map(|&(term, label, color)| {
                    let mut by_step: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
                    for d in r
                        .decomp
                        .iter()
                        .filter(|d| d.init == init.label && d.hidden == h && d.seq_len == t && d.term == term)
                    {
                        by_step.entry(d.step).or_default().push(d.spectral_norm);
                    }
                    let steps: Vec<f64> = by_step.keys().map(|&s| s as f64).collect();
                    let means: Vec<f64> = by_step.values().map(|v| v.iter().sum::<f64>() / v.len() as f64).collect();
                    let points = steps.into_iter().zip(rolling_geometric_mean(&means, SMOOTHING)).collect();
                    Series { label: label.into(), color, points, band: vec![], error_bars: vec![] }
                })
                .collect();
            Panel { title: format!("LSTM {}", init.label), series }
        })
        .filter(|p: &Panel| p.series.iter().any(|s| !s.points.is_empty()))
        .collect();
    if panels.is_empty() {
        return None;
    }
    Some(Figure {
        title: format!("LSTM: ∂c_t/∂c_t−1 = F + T_f + T_i + T_g (H = {h}, mean over seeds)"),
        x_label: format!("time step t ({SMOOTHING}-step rolling mean)"),
        y_label: "spectral norm (log scale)".into(),
        x_scale: Scale::Linear,
        y_scale: Scale::Log,
        panels,
        legend: SeriesLabelPosition::LowerRight,
        legend_room: 0.6,
        x_ticks: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_geometric_mean_smooths_and_keeps_constants() {
        assert_eq!(rolling_geometric_mean(&[2.0; 5], 3), vec![2.0; 5]);
        let r = rolling_geometric_mean(&[1.0, 100.0, 1.0], 3);
        assert!((r[1] - 100f64.powf(1.0 / 3.0)).abs() < 1e-12);
        assert!((r[0] - 10.0).abs() < 1e-12);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
