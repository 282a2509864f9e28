//! Running grid points: one point is a sequential, seeded computation; the runner maps points in
//! parallel and concatenates their rows in grid order, so outputs are identical on any number of
//! threads. No floating-point reduction crosses threads.

use super::grid::{Point, point_rng};
use super::spec::{InputDist, Spec};
use super::stats::{horizon, linear_fit};
use crate::bptt::{Inputs, forward};
use crate::cell::CellKind;
use crate::probe::{jacobian_flow, lstm_decomposition, lyapunov};
use indicatif::ProgressBar;
use nalgebra::DMatrix;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::Serialize;

/// One point of one curve: `curves.csv`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CurveRow {
    pub cell: &'static str,
    pub init: String,
    pub hidden: usize,
    pub seq_len: usize,
    pub seed: u64,
    pub batch: usize,
    /// k = T - s.
    pub distance: usize,
    /// `dh`, `dc`, `dstate` or `dc_total`.
    pub quantity: &'static str,
    pub log_spectral_norm: f64,
    pub log_frobenius_norm: f64,
}

/// Per point and sequence: `summary.csv`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SummaryRow {
    pub cell: &'static str,
    pub init: String,
    pub hidden: usize,
    pub seq_len: usize,
    pub seed: u64,
    pub batch: usize,
    /// Least-squares slope of ln ‖∂h_T/∂h_s‖₂ against k = T - s over k = 1..T (per step).
    pub decay_rate: f64,
    /// R² of that fit.
    pub decay_r2: f64,
    /// First k with ‖∂h_T/∂h_{T-k}‖₂ below threshold × its k = 1 value; empty if never.
    pub horizon: Option<usize>,
    /// ln ‖∂h_T/∂h_0‖₂.
    pub log_norm_end: f64,
    /// The same fit for the LSTM's ‖∂c_T/∂c_s‖₂; empty for other cells or when not probed.
    pub dc_decay_rate: Option<f64>,
    /// Largest Lyapunov exponent (per step); empty when not probed.
    pub top_lyapunov: Option<f64>,
    /// LSTM at the longest T: mean over t of ‖F‖₂ / (‖F‖₂ + ‖T_f + T_i + T_g‖₂); empty otherwise.
    pub f_share: Option<f64>,
}

/// One term of the LSTM decomposition at one step: `decomp.csv`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecompPointRow {
    pub cell: &'static str,
    pub init: String,
    pub hidden: usize,
    pub seq_len: usize,
    pub seed: u64,
    pub batch: usize,
    pub step: usize,
    pub term: &'static str,
    pub spectral_norm: f64,
    pub frobenius_norm: f64,
    pub mean_abs_diag: f64,
}

/// One Lyapunov exponent: `lyapunov.csv`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LyapunovPointRow {
    pub cell: &'static str,
    pub init: String,
    pub hidden: usize,
    pub seq_len: usize,
    pub seed: u64,
    pub batch: usize,
    pub index: usize,
    pub exponent: f64,
}

/// Everything the experiment measured, in grid order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Results {
    pub curves: Vec<CurveRow>,
    pub summary: Vec<SummaryRow>,
    pub decomp: Vec<DecompPointRow>,
    pub lyapunov: Vec<LyapunovPointRow>,
}

impl Results {
    fn extend(&mut self, other: Results) {
        self.curves.extend(other.curves);
        self.summary.extend(other.summary);
        self.decomp.extend(other.decomp);
        self.lyapunov.extend(other.lyapunov);
    }
}

/// Runs every point on the current rayon pool; `progress` ticks once per point. Points start
/// longest first, so no core idles on one late, long point; results are put back in grid order.
pub fn run_all(spec: &Spec, points: &[Point], progress: &ProgressBar) -> Results {
    let mut order: Vec<&Point> = points.iter().collect();
    order.sort_by_key(|p| std::cmp::Reverse(cost(p)));
    let mut per_point: Vec<(usize, Results)> = order
        .par_iter()
        .with_max_len(1)
        .map(|p| {
            let r = run_point(spec, p);
            progress.inc(1);
            (p.index, r)
        })
        .collect();
    per_point.sort_by_key(|(index, _)| *index);
    let mut all = Results::default();
    for (_, r) in per_point {
        all.extend(r);
    }
    all
}

/// A rough cost of a point for scheduling: T steps of products of the state dimension cubed.
fn cost(p: &Point) -> usize {
    let n = if p.cell == CellKind::Lstm { 2 * p.hidden } else { p.hidden };
    p.seq_len * n * n * n
}

/// Draws `rows × cols` inputs, column by column, from `dist`.
fn draw_inputs(dist: InputDist, rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> DMatrix<f64> {
    let mut v = Vec::with_capacity(rows * cols);
    for _ in 0..rows * cols {
        v.push(match dist {
            InputDist::Gaussian(sd) => sd * Distribution::<f64>::sample(&StandardNormal, rng),
            InputDist::Uniform(a) => rng.random_range(-a..a),
            InputDist::Zeros => 0.0,
        });
    }
    DMatrix::from_vec(rows, cols, v)
}

/// One point: draw the network and inputs, run forward, probe every sequence of the batch.
pub fn run_point(spec: &Spec, p: &Point) -> Results {
    let mut rng = point_rng(spec, p);
    let init = &spec.inits[p.init];
    let params = init.spec.build(p.cell, 1, spec.input_size, p.hidden, &mut rng);
    let x = draw_inputs(spec.input, spec.input_size, p.seq_len * spec.batch, &mut rng);
    let tape = forward(&params, &Inputs::with_zero_state(&params, x, p.seq_len, spec.batch));
    let probes = &spec.probes;
    let lstm = p.cell == CellKind::Lstm;
    let mut out = Results::default();
    for b in 0..spec.batch {
        let which: Vec<&str> = probes.quantities.iter().map(String::as_str).collect();
        let flow = jacobian_flow(&params, &tape, 0, b, &which);
        // Rows come by step s = 0..T; curves go by distance k = T - s = 0..T.
        let mut by_k: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
        for row in flow.iter().rev() {
            if probes.quantities.iter().any(|q| q == row.quantity) {
                by_k.entry(row.quantity).or_default().push(row.log_spectral_norm);
                out.curves.push(CurveRow {
                    cell: p.cell.name(),
                    init: init.label.clone(),
                    hidden: p.hidden,
                    seq_len: p.seq_len,
                    seed: p.seed,
                    batch: b,
                    distance: row.distance,
                    quantity: row.quantity,
                    log_spectral_norm: row.log_spectral_norm,
                    log_frobenius_norm: row.log_frobenius_norm,
                });
            }
        }
        let ks: Vec<f64> = (0..=p.seq_len).map(|k| k as f64).collect();
        let fit = |q: &str| by_k.get(q).and_then(|y| linear_fit(&ks[1..], &y[1..]));
        let dh = &by_k["dh"];
        let (decay_rate, decay_r2) = fit("dh").unwrap_or((f64::NAN, f64::NAN));
        let top_lyapunov = (probes.lyapunov > 0).then(|| lyapunov(&params, &tape, 0, b, Some(probes.lyapunov)));
        if let Some(exps) = &top_lyapunov {
            for (index, &exponent) in exps.iter().enumerate() {
                out.lyapunov.push(LyapunovPointRow {
                    cell: p.cell.name(),
                    init: init.label.clone(),
                    hidden: p.hidden,
                    seq_len: p.seq_len,
                    seed: p.seed,
                    batch: b,
                    index,
                    exponent,
                });
            }
        }
        let mut f_share = None;
        // The split of ∂c_t/∂c_{t-1} depends only on steps ≤ t, which every sequence length shares
        // (inputs do not depend on T), so it is computed once, at the longest T.
        let longest = spec.seq_len.iter().max() == Some(&p.seq_len);
        if lstm && probes.decomposition && longest {
            let rows = lstm_decomposition(&params, &tape, 0, b);
            let norm = |t: usize, term: &str| {
                rows.iter().find(|r| r.step == t && r.term == term).map_or(0.0, |r| r.spectral_norm)
            };
            let shares: Vec<f64> = (2..=p.seq_len)
                .map(|t| {
                    let f = norm(t, "F");
                    f / (f + norm(t, "nonF"))
                })
                .collect();
            f_share = Some(shares.iter().sum::<f64>() / shares.len() as f64);
            out.decomp.extend(rows.into_iter().map(|r| DecompPointRow {
                cell: p.cell.name(),
                init: init.label.clone(),
                hidden: p.hidden,
                seq_len: p.seq_len,
                seed: p.seed,
                batch: b,
                step: r.step,
                term: r.term,
                spectral_norm: r.spectral_norm,
                frobenius_norm: r.frobenius_norm,
                mean_abs_diag: r.mean_abs_diag,
            }));
        }
        out.summary.push(SummaryRow {
            cell: p.cell.name(),
            init: init.label.clone(),
            hidden: p.hidden,
            seq_len: p.seq_len,
            seed: p.seed,
            batch: b,
            decay_rate,
            decay_r2,
            horizon: horizon(dh, probes.horizon_threshold),
            log_norm_end: dh[p.seq_len],
            dc_decay_rate: if lstm { fit("dc").map(|f| f.0) } else { None },
            top_lyapunov: top_lyapunov.map(|e| e[0]),
            f_share,
        });
    }
    out
}
