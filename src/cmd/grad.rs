//! `gradlab grad`: load a model and a batch, run exact BPTT, write every gradient.

use crate::bptt::gradients;
use crate::cli::{GradArgs, Precision};
use crate::error::{Error, Result};
use crate::model_file::{
    assumed_line, detect_cell, gradient_tensors, load_inputs, load_params, read_weights, require_targets, skipped_line,
    weights_precision,
};
use crate::scalar::Scalar;
use crate::tensors::{TensorFile, check_writable, to_safetensors_bytes, write_atomic};
use safetensors::Dtype;
use std::fmt::Write as _;
use std::path::Path;

/// Runs the command; returns the report to print.
pub fn run(args: &GradArgs) -> Result<String> {
    refuse_to_overwrite_inputs(&args.out, &[&args.model.weights, &args.input])?;
    check_writable(&args.out, args.force)?;
    let prefix = args.model.prefix.as_deref();
    let (weights, skipped) = read_weights(&args.model.weights, prefix)?;
    let detected = detect_cell(&weights)?;
    let precision = args.precision.unwrap_or(match weights_precision(&weights) {
        Dtype::F64 => Precision::F64,
        _ => Precision::F32,
    });
    match precision {
        Precision::F64 => run_typed::<f64>(args, &weights),
        Precision::F32 => run_typed::<f32>(args, &weights),
    }
    .map(|r| {
        let notes = [skipped_line(prefix, &skipped), assumed_line(detected, args.model.cell)];
        notes.into_iter().flatten().chain(std::iter::once(r)).collect::<Vec<_>>().join("\n")
    })
}

fn run_typed<T: Scalar>(args: &GradArgs, weights: &TensorFile) -> Result<String> {
    let params = load_params::<T>(weights, args.model.cell)?;
    let input = TensorFile::read(&args.input)?;
    let inputs = load_inputs(&input, &params)?;
    let targets = require_targets(&input, &params, &inputs, args.loss)?;
    let (_, loss, grads) = gradients(&params, &inputs, &targets);
    let tensors = gradient_tensors(&grads, loss, inputs.steps, inputs.batch);
    write_atomic(&args.out, &to_safetensors_bytes(&tensors)?, args.force)?;

    let mut r = String::new();
    let head = params.head().map_or("no head".to_string(), |h| format!("head O = {}", h.weight.nrows()));
    let _ = writeln!(
        r,
        "{} × {} layer(s), H = {}, I = {}, {head}; T = {}, B = {}; {}",
        params.kind(),
        params.layers().len(),
        params.hidden(),
        params.input(),
        inputs.steps,
        inputs.batch,
        T::NAME
    );
    let loss_name = match targets.kind() {
        crate::loss::LossKind::Mse => "mse",
        crate::loss::LossKind::Ce => "ce",
    };
    let _ = writeln!(r, "loss ({loss_name}, summed) = {loss}");
    let _ = writeln!(r, "{:<14} {:<14} {:>14}", "gradient", "shape", "L2 norm");
    for (name, shape, values) in &tensors {
        let norm = values.iter().map(|v| v.as_f64() * v.as_f64()).sum::<f64>().sqrt();
        let _ = writeln!(r, "{name:<14} {:<14} {norm:>14.6e}", format!("{shape:?}"));
    }
    let _ = write!(r, "wrote {} ({} tensors)", args.out.display(), tensors.len());
    Ok(r)
}

/// `--out` naming one of the inputs would destroy it: refused even with `--force`.
fn refuse_to_overwrite_inputs(out: &Path, inputs: &[&Path]) -> Result<()> {
    let Ok(out_real) = out.canonicalize() else { return Ok(()) };
    for &input in inputs {
        if input.canonicalize().is_ok_and(|p| p == out_real) {
            return Err(Error::Usage(format!(
                "--out {} is also an input file; choose another output path",
                out.display()
            )));
        }
    }
    Ok(())
}
