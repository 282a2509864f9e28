//! `gradlab probe`: gradient-flow probes of a user's model on a user's batch, written as
//! `probe.csv`, `summary.csv` (the estimators of every curve), `decomp.csv` (LSTM) and
//! `lyapunov.csv` in one folder.

use crate::bptt::{Tape, forward};
use crate::cli::ProbeArgs;
use crate::error::{Error, Result};
use crate::estimate::{CurveSummary, summarize};
use crate::loss::{Targets, loss_and_grad};
use crate::model_file::{assumed_line, load_inputs, load_params, load_targets, read_weights, skipped_line};
use crate::output::write_csv;
use crate::params::Params;
use crate::probe::{
    FlowRow, LyapunovOptions, LyapunovRow, Quantity, error_signal, jacobian_flow, lstm_decomposition, lyapunov_rows,
};
use crate::tensors::{TensorFile, check_writable};
use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Which curve of `probe.csv` a row of `summary.csv` is about; its estimators follow.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Curve {
    pub layer: usize,
    pub batch: usize,
    pub quantity: Quantity,
}

/// A row of `summary.csv`.
type SummaryRow = (Curve, CurveSummary);

/// Runs the command; returns the report to print.
pub fn run(args: &ProbeArgs) -> Result<String> {
    let (weights, skipped) = read_weights(&args.model.weights, args.model.prefix.as_deref())?;
    let params = load_params::<f64>(&weights, args.model.cell)?;
    let input = TensorFile::read(&args.input)?;
    let inputs = load_inputs(&input, &params)?;
    let targets = load_targets(&input, &params, &inputs, None)?;
    let lstm = params.kind().has_cell_state();
    let mut files = vec!["probe.csv", "summary.csv", "lyapunov.csv"];
    if lstm {
        files.insert(2, "decomp.csv");
    }
    if args.burn_in >= inputs.steps {
        return Err(Error::Usage(format!(
            "--burn-in {}: must be shorter than the sequence (T = {} in {})",
            args.burn_in,
            inputs.steps,
            args.input.display()
        )));
    }
    if !(args.threshold > 0.0 && args.threshold < 1.0) {
        return Err(Error::Usage(format!("--threshold {}: must be in (0, 1)", args.threshold)));
    }
    for f in &files {
        check_writable(&args.out.join(f), args.force)?;
    }
    let lyap_opts = LyapunovOptions { count: None, burn_in: args.burn_in, q0: args.q0, seed: args.seed };

    let tape = forward(&params, &inputs);
    let n_layers = params.layers().len();
    let top_error = targets.as_ref().map(|t| last_step_error(&params, &tape, t));
    let jobs: Vec<(usize, usize)> = (0..n_layers).flat_map(|l| (0..tape.batch).map(move |b| (l, b))).collect();
    let results: Vec<_> = jobs
        .par_iter()
        .map(|&(layer, b)| {
            let mut flow = jacobian_flow(&params, &tape, layer, b, &Quantity::PRODUCTS);
            if let Some(g) = top_error.as_ref().filter(|_| layer + 1 == n_layers) {
                flow.extend(error_signal(&params, &tape, layer, b, g.column(b).as_slice()));
            }
            let decomp = if lstm { lstm_decomposition(&params, &tape, layer, b) } else { Vec::new() };
            (flow, decomp, lyapunov_rows(&params, &tape, layer, b, &lyap_opts))
        })
        .collect();
    let mut flow = Vec::new();
    let mut decomp = Vec::new();
    let mut lyap = Vec::new();
    for (f, d, l) in results {
        flow.extend(f);
        decomp.extend(d);
        lyap.extend(l);
    }
    let summary = summaries(&flow, args.threshold);
    write_csv(&args.out.join("probe.csv"), &flow, args.force)?;
    write_csv(&args.out.join("summary.csv"), &summary, args.force)?;
    if lstm {
        write_csv(&args.out.join("decomp.csv"), &decomp, args.force)?;
    }
    write_csv(&args.out.join("lyapunov.csv"), &lyap, args.force)?;
    let report = report(&params, &tape, &summary, &lyap, &files, args);
    let notes = [skipped_line(args.model.prefix.as_deref(), &skipped), assumed_line(params.kind(), args.model.cell)];
    Ok(notes.into_iter().flatten().chain(std::iter::once(report)).collect::<Vec<_>>().join("\n"))
}

/// The estimators of every (layer, sequence, quantity) curve of `flow`.
fn summaries(flow: &[FlowRow], threshold: f64) -> Vec<SummaryRow> {
    let mut curves: BTreeMap<(usize, usize, Quantity), Vec<f64>> = BTreeMap::new();
    // Rows come by step s = 0..T; a curve goes by distance k = T − s.
    for r in flow.iter().rev() {
        curves.entry((r.layer, r.batch, r.quantity)).or_default().push(r.log_spectral_norm);
    }
    curves
        .into_iter()
        .map(|((layer, batch, quantity), curve)| (Curve { layer, batch, quantity }, summarize(&curve, threshold)))
        .collect()
}

/// ∂L_T/∂h_T (H × B) of the top layer for the loss at the last step only.
fn last_step_error(params: &Params<f64>, tape: &Tape<f64>, targets: &Targets<f64>) -> DMatrix<f64> {
    let (t, b) = (tape.steps, tape.batch);
    let y = tape.y.columns((t - 1) * b, b).into_owned();
    let last = match targets {
        Targets::Mse(m) => Targets::Mse(m.columns((t - 1) * b, b).into_owned()),
        Targets::Ce(l) => Targets::Ce(l[(t - 1) * b..].to_vec()),
    };
    let (_, dy) = loss_and_grad(&y, &last);
    match params.head() {
        Some(head) => head.weight.tr_mul(&dy),
        None => dy,
    }
}

fn report(
    params: &Params<f64>,
    tape: &Tape<f64>,
    summary: &[SummaryRow],
    lyap: &[LyapunovRow],
    files: &[&str],
    args: &ProbeArgs,
) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "{} × {} layer(s), H = {}; T = {}, B = {}; decay rates per step over k in [T/2, T] (far) and \
         [1, min(50, T/4)] (near); horizon at {:e}; λ₁ with burn-in {}, Q₀ {:?}",
        params.kind(),
        params.layers().len(),
        params.hidden(),
        tape.steps,
        tape.batch,
        args.threshold,
        args.burn_in,
        args.q0
    );
    let _ = writeln!(
        r,
        "{:>5} {:>5} {:>8} {:>11} {:>15} {:>8} {:>10} {:>10}",
        "layer", "batch", "quantity", "decay_rate", "decay_rate_near", "horizon", "regime", "top λ"
    );
    let num = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.4}"));
    for (curve, est) in summary {
        let top = lyap
            .iter()
            .find(|l| l.layer == curve.layer && l.batch == curve.batch && l.index == 0)
            .map(|l| l.exponent)
            .filter(|_| curve.quantity == Quantity::Dh || curve.quantity == Quantity::Dstate);
        let _ = writeln!(
            r,
            "{:>5} {:>5} {:>8} {:>11} {:>15} {:>8} {:>10} {:>10}",
            curve.layer,
            curve.batch,
            curve.quantity.name(),
            num(est.decay_rate),
            num(est.decay_rate_near),
            est.horizon.map_or("none".to_string(), |k| k.to_string()),
            est.regime.to_string(),
            num(top)
        );
    }
    let paths: Vec<String> = files.iter().map(|f| args.out.join(f).display().to_string()).collect();
    let _ = write!(r, "wrote {}", paths.join(", "));
    r
}
