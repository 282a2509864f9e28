//! `gradlab probe`: gradient-flow probes of a user's model on a user's batch, written as
//! `probe.csv`, `decomp.csv` (LSTM) and `lyapunov.csv` in one folder.

use crate::bptt::{Tape, forward};
use crate::cli::ProbeArgs;
use crate::error::Result;
use crate::loss::{Targets, loss_and_grad};
use crate::model_file::{load_inputs, load_params, load_targets};
use crate::output::write_csv;
use crate::params::Params;
use crate::probe::{FlowRow, QUANTITIES, error_signal, jacobian_flow, lstm_decomposition, lyapunov_rows};
use crate::tensors::{TensorFile, check_writable};
use nalgebra::DMatrix;
use rayon::prelude::*;
use std::fmt::Write as _;

/// Runs the command; returns the report to print.
pub fn run(args: &ProbeArgs) -> Result<String> {
    let weights = TensorFile::read(&args.weights)?;
    let params = load_params::<f64>(&weights, args.cell)?;
    let input = TensorFile::read(&args.input)?;
    let inputs = load_inputs(&input, &params)?;
    let targets = load_targets(&input, &params, &inputs, None)?;
    let lstm = params.kind().has_cell_state();
    let files: Vec<&str> =
        if lstm { vec!["probe.csv", "decomp.csv", "lyapunov.csv"] } else { vec!["probe.csv", "lyapunov.csv"] };
    for f in &files {
        check_writable(&args.out.join(f), args.force)?;
    }

    let tape = forward(&params, &inputs);
    let n_layers = params.layers().len();
    let top_error = targets.as_ref().map(|t| last_step_error(&params, &tape, t));
    let jobs: Vec<(usize, usize)> = (0..n_layers).flat_map(|l| (0..tape.batch).map(move |b| (l, b))).collect();
    let results: Vec<_> = jobs
        .par_iter()
        .map(|&(layer, b)| {
            let mut flow = jacobian_flow(&params, &tape, layer, b, &QUANTITIES);
            if let Some(g) = top_error.as_ref().filter(|_| layer + 1 == n_layers) {
                flow.extend(error_signal(&params, &tape, layer, b, g.column(b).as_slice()));
            }
            let decomp = if lstm { lstm_decomposition(&params, &tape, layer, b) } else { Vec::new() };
            (flow, decomp, lyapunov_rows(&params, &tape, layer, b))
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
    write_csv(&args.out.join("probe.csv"), &flow, args.force)?;
    if lstm {
        write_csv(&args.out.join("decomp.csv"), &decomp, args.force)?;
    }
    write_csv(&args.out.join("lyapunov.csv"), &lyap, args.force)?;
    Ok(report(&params, &tape, &flow, &lyap, &files, args))
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
    flow: &[FlowRow],
    lyap: &[crate::probe::LyapunovRow],
    files: &[&str],
    args: &ProbeArgs,
) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "{} × {} layer(s), H = {}; T = {}, B = {}",
        params.kind(),
        params.layers().len(),
        params.hidden(),
        tape.steps,
        tape.batch
    );
    let _ = writeln!(
        r,
        "{:>5} {:>5} {:>22} {:>22} {:>10}",
        "layer", "batch", "log10 ‖∂h_T/∂h_0‖₂", "dh decay per step", "top λ"
    );
    for row in flow.iter().filter(|r| r.quantity == "dh" && r.step == 0) {
        let top = lyap
            .iter()
            .find(|l| l.layer == row.layer && l.batch == row.batch && l.index == 0)
            .map_or(f64::NAN, |l| l.exponent);
        let per_step = if tape.steps > 0 { row.log_spectral_norm / tape.steps as f64 } else { 0.0 };
        let _ = writeln!(
            r,
            "{:>5} {:>5} {:>22.4} {:>22.4} {:>10.4}",
            row.layer,
            row.batch,
            row.log_spectral_norm / std::f64::consts::LN_10,
            per_step,
            top
        );
    }
    let paths: Vec<String> = files.iter().map(|f| args.out.join(f).display().to_string()).collect();
    let _ = write!(r, "wrote {}", paths.join(", "));
    r
}
