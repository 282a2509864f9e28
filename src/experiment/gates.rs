//! `gates`: where does seed 001's "F = diag(f_t) dominates ∂c_t/∂c_{t-1}" hold, and where does
//! it fail? The LSTM's one-step ∂c_t/∂c_{t-1} = F + T_f + T_i + T_g (THEORY.md §4) is split at
//! every step t = 2..T, and per sequence the share of steps with ‖F‖₂ ≥ ‖T_f + T_i + T_g‖₂, the
//! median and max of their ratio, and the largest term are recorded ([`crate::probe::f_dominance`]).
//! The inits run from PyTorch's small weights to saturating gains, so the experiment can show the
//! claim failing.

use super::charts::{counts_text, mean_sd_text};
use super::findings::{Claim, Finding};
use super::grid::{Key, Point, draw, rows_at};
use super::runner::{Experiment, Products};
use super::spec::Spec;
use crate::bptt::forward;
use crate::cell::CellKind;
use crate::error::{Error, Result};
use crate::estimate::median;
use crate::output::plot::Figure as Chart;
use crate::output::plot::{Figure, Panel, RefLine, Scale, Series, style};
use crate::output::read_csv;
use crate::probe::{Term, f_dominance, lstm_decomposition};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Per sequence: `summary.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Share of steps t = 2..T with ‖F‖₂ ≥ ‖T_f + T_i + T_g‖₂.
    pub f_dominant_frac: f64,
    pub nonf_over_f_median: f64,
    pub nonf_over_f_max: f64,
    /// Median of ‖T_f + T_i + T_g‖₂ / mean_i f_i (the typical unit's gate, not the largest).
    pub nonf_over_fmean_median: f64,
    /// The term with the largest spectral norm at the most steps.
    pub dominant_term: Term,
    /// Median over t of ‖∂c_t/∂c_{t-1}‖₂.
    pub onestep_norm_median: f64,
}

/// One term at one step: `decomp.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecompRow {
    pub step: usize,
    pub term: Term,
    pub spectral_norm: f64,
    pub frobenius_norm: f64,
    pub mean_abs_diag: f64,
}

#[derive(Default, Serialize, Deserialize)]
pub struct Measured {
    summary: Vec<(Key, SummaryRow)>,
    decomp: Vec<(Key, DecompRow)>,
}

pub struct Gates<'a> {
    spec: &'a Spec,
}

impl<'a> Gates<'a> {
    pub fn new(spec: &'a Spec) -> Result<Self> {
        if spec.cells != [CellKind::Lstm] {
            return Err(Error::Usage(format!(
                "key `cells`: the gates experiment splits the LSTM's dc_t/dc_(t-1); allowed: [\"lstm\"], found {:?}",
                spec.cells.iter().map(|c| c.name()).collect::<Vec<_>>()
            )));
        }
        Ok(Gates { spec })
    }
}

impl Experiment for Gates<'_> {
    type Measured = Measured;

    fn tables(&self) -> Vec<&'static str> {
        vec!["summary.csv", "decomp.csv"]
    }

    fn charts(&self) -> Vec<&'static str> {
        vec!["ratio"]
    }

    fn cost(&self, p: &Point) -> f64 {
        (p.seq_len * p.hidden * p.hidden * p.hidden) as f64
    }

    fn measure(&self, p: &Point, rng: &mut ChaCha8Rng) -> Result<Measured> {
        let (params, inputs) = draw(self.spec, p, rng);
        let tape = forward(&params, &inputs);
        let mut out = Measured::default();
        for b in 0..self.spec.batch {
            let key = Key::new(self.spec, p, b);
            let rows = lstm_decomposition(&params, &tape, 0, b);
            let d = f_dominance(&rows).expect("seq_len ≥ 2 gives steps 2..T");
            let onestep: Vec<f64> = rows.iter().filter(|r| r.term == Term::Sum).map(|r| r.spectral_norm).collect();
            out.summary.push((
                key.clone(),
                SummaryRow {
                    f_dominant_frac: d.f_dominant_frac,
                    nonf_over_f_median: d.nonf_over_f_median,
                    nonf_over_f_max: d.nonf_over_f_max,
                    nonf_over_fmean_median: d.nonf_over_fmean_median,
                    dominant_term: d.dominant_term,
                    onestep_norm_median: median(&onestep),
                },
            ));
            out.decomp.extend(rows.into_iter().map(|r| {
                (
                    key.clone(),
                    DecompRow {
                        step: r.step,
                        term: r.term,
                        spectral_norm: r.spectral_norm,
                        frobenius_norm: r.frobenius_norm,
                        mean_abs_diag: r.mean_abs_diag,
                    },
                )
            }));
        }
        Ok(out)
    }

    fn append(all: &mut Measured, one: Measured) {
        all.summary.extend(one.summary);
        all.decomp.extend(one.decomp);
    }

    fn finish(&self, all: &Measured) -> Result<Products> {
        let mut p = Products::default();
        p.table("summary.csv", &all.summary)?;
        p.table("decomp.csv", &all.decomp)?;
        (p.summary, p.findings, p.notes) = self.summary(all);
        Ok(p)
    }

    fn figures(&self, all: &Measured) -> Vec<(&'static str, Chart)> {
        vec![("ratio", self.ratio_figure(all))]
    }

    fn read(&self, dir: &Path) -> Result<Measured> {
        Ok(Measured { summary: read_csv(&dir.join("summary.csv"))?, decomp: read_csv(&dir.join("decomp.csv"))? })
    }
}

/// (seed, batch) → (‖F‖₂, ‖T_f + T_i + T_g‖₂) at one step.
type BySequence = BTreeMap<(u64, usize), (f64, f64)>;

/// Steps in the centred rolling median of the ratio chart.
const SMOOTHING: usize = 9;

impl Gates<'_> {
    /// ‖T_f + T_i + T_g‖₂ / ‖F‖₂ against t per init (median over sequences, then a centred
    /// rolling median), at the longest T, one panel per hidden size; the line 1 drawn.
    fn ratio_figure(&self, all: &Measured) -> Figure {
        let spec = self.spec;
        let t = *spec.seq_len.iter().max().expect("validated");
        let panels = spec
            .hidden
            .iter()
            .map(|&h| {
                let series = spec
                    .inits
                    .iter()
                    .enumerate()
                    .map(|(i, init)| {
                        // step → (seed, batch) → (‖F‖₂, ‖nonF‖₂).
                        let mut by_step: BTreeMap<usize, BySequence> = BTreeMap::new();
                        for (k, d) in &all.decomp {
                            if k.init == init.label && k.hidden == h && k.seq_len == t {
                                let e = by_step.entry(d.step).or_default().entry((k.seed, k.batch)).or_default();
                                match d.term {
                                    Term::F => e.0 = d.spectral_norm,
                                    Term::NonF => e.1 = d.spectral_norm,
                                    _ => {}
                                }
                            }
                        }
                        let steps: Vec<f64> = by_step.keys().map(|&s| s as f64).collect();
                        let ratios: Vec<f64> = by_step
                            .values()
                            .map(|m| median(&m.values().map(|(f, n)| n / f).collect::<Vec<_>>()))
                            .collect();
                        let smooth: Vec<f64> = (0..ratios.len())
                            .map(|j| {
                                let half = SMOOTHING / 2;
                                median(&ratios[j.saturating_sub(half)..(j + half + 1).min(ratios.len())])
                            })
                            .collect();
                        let (color, dash) = style(i);
                        Series {
                            dash,
                            ..Series::line(init.label.clone(), color, steps.into_iter().zip(smooth).collect())
                        }
                    })
                    .collect();
                Panel::new(format!("LSTM, H = {h}, T = {t}"), series)
            })
            .collect();
        Figure {
            y_scale: Scale::Log,
            panels,
            hlines: vec![RefLine { at: 1.0, label: "above 1: Tf + Ti + Tg outweighs F".into() }],
            legend: plotters::prelude::SeriesLabelPosition::LowerRight,
            legend_room: 0.6,
            ..Figure::new(
                format!(
                    "Does F = diag(f_t) dominate dc_t/dc_(t-1)? |Tf + Ti + Tg|₂ / |F|₂, median over {} sequences",
                    spec.seeds.len() * spec.batch
                ),
                format!("time step t ({SMOOTHING}-step rolling median)"),
                "ratio of spectral norms (log scale)",
            )
        }
    }

    fn summary(&self, all: &Measured) -> (String, Vec<Finding>, Vec<String>) {
        let spec = self.spec;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Per init at each hidden size and T: mean ± sd over {} sequences of the share of steps where \
             ‖F‖₂ ≥ ‖T_f + T_i + T_g‖₂ (‖F‖₂ = max_i f_i), and medians over sequences of the rest.\n",
            spec.seeds.len() * spec.batch
        );
        let _ = writeln!(
            s,
            "| init | H | T | f_dominant_frac | nonf_over_f_median | nonf_over_f_max | nonf over mean f (median) | dominant term | ‖dc_t/dc_(t-1)‖₂ (median) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        let mut holds = Vec::new();
        let mut fails = Vec::new();
        for &h in &spec.hidden {
            for &t in &spec.seq_len {
                for init in &spec.inits {
                    let rows = rows_at(&all.summary, |k| k.init == init.label && k.hidden == h && k.seq_len == t);
                    let frac: Vec<f64> = rows.iter().map(|r| r.f_dominant_frac).collect();
                    let med = |f: fn(&SummaryRow) -> f64| median(&rows.iter().map(|r| f(r)).collect::<Vec<_>>());
                    let terms: Vec<Term> = rows.iter().map(|r| r.dominant_term).collect();
                    let mean_frac = crate::estimate::mean_sd(&frac).0;
                    let _ = writeln!(
                        s,
                        "| {} | {h} | {t} | {} | {:.3} | {:.3} | {:.3} | {} | {:.3} |",
                        init.label,
                        mean_sd_text(&frac, 3).trim_start_matches('+'),
                        med(|r| r.nonf_over_f_median),
                        med(|r| r.nonf_over_f_max),
                        med(|r| r.nonf_over_fmean_median),
                        counts_text(&terms),
                        med(|r| r.onestep_norm_median),
                    );
                    let item = format!("{} ({:.0}%)", init.label, 100.0 * mean_frac);
                    if mean_frac >= 0.5 { holds.push(item) } else { fails.push(item) }
                }
            }
        }
        let sentence = "share of steps where ‖F‖₂ = max_i f_i is at least ‖T_f + T_i + T_g‖₂, per init (mean over \
                        sequences); it holds where that share is at least 50%"
            .to_string();
        (s, vec![Finding::new(Claim::FDominates, holds, fails, sentence)], vec![])
    }
}
