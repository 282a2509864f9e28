//! `gradlab train`: one model trained on one task, its log and its weights.

use crate::cli::{Precision, TrainArgs};
use crate::error::{Error, Result};
use crate::init::{InitSpec, Scheme};
use crate::output::write_csv;
use crate::scalar::Scalar;
use crate::tensors::{check_writable, to_safetensors_bytes, write_atomic};
use crate::train::optim::AdamConfig;
use crate::train::tasks::Task;
use crate::train::trainer::{EVAL_BATCH, LogRow, SOLVED_FRACTION, TrainConfig, Trained, train};
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Write as _;
use std::io::IsTerminal;

/// Largest lag, hidden size, batch and number of updates `train` accepts.
const MAX_LAG: usize = 100_000;
const MAX_HIDDEN: usize = 4096;
const MAX_BATCH: usize = 4096;
const MAX_STEPS: usize = 10_000_000;

/// `GROUP=SCHEME,...` as an [`InitSpec`].
fn parse_init(text: &str) -> Result<InitSpec> {
    let mut spec = InitSpec::default();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (group, scheme) = item.split_once('=').ok_or_else(|| {
            Error::Usage(format!("--init `{item}`: expected GROUP=SCHEME, e.g. recurrent=orthogonal(1.0)"))
        })?;
        let scheme = Scheme::parse(scheme).map_err(|e| Error::Usage(format!("--init {group}: {e}")))?;
        let list = match group.trim() {
            "recurrent" => &mut spec.recurrent,
            "input" => &mut spec.input,
            "bias" => &mut spec.bias,
            "gate_bias" => &mut spec.gate_bias,
            other => {
                return Err(Error::Usage(format!(
                    "--init `{item}`: unknown group `{other}` (allowed: recurrent, input, bias, gate_bias)"
                )));
            }
        };
        list.push(scheme);
    }
    Ok(spec)
}

/// The run's configuration from the flags, every size range-checked.
fn config(args: &TrainArgs) -> Result<TrainConfig> {
    let usage = |m: String| Err(Error::Usage(m));
    let min_lag = Task::min_lag(args.task);
    if !(min_lag..=MAX_LAG).contains(&args.lag) {
        return usage(format!(
            "--lag {}: must be in {min_lag}..={MAX_LAG} for the {} task",
            args.lag,
            args.task.name()
        ));
    }
    for (flag, v, max) in
        [("--hidden", args.hidden, MAX_HIDDEN), ("--batch", args.batch, MAX_BATCH), ("--steps", args.steps, MAX_STEPS)]
    {
        if !(1..=max).contains(&v) {
            return usage(format!("{flag} {v}: must be in 1..={max}"));
        }
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        return usage(format!("--lr {}: must be a positive number", args.lr));
    }
    if let Some(c) = args.clip.filter(|c| !(c.is_finite() && *c > 0.0)) {
        return usage(format!("--clip {c}: must be a positive number"));
    }
    if !(args.threshold > 0.0 && args.threshold < 1.0) {
        return usage(format!("--threshold {}: must be in (0, 1)", args.threshold));
    }
    let init = parse_init(&args.init)?;
    init.validate(args.cell, "--init")?;
    Ok(TrainConfig {
        task: Task { kind: args.task, lag: args.lag },
        cell: args.cell,
        init,
        hidden: args.hidden,
        batch: args.batch,
        steps: args.steps,
        adam: AdamConfig { lr: args.lr, ..AdamConfig::default() },
        clip: args.clip,
        seed: args.seed,
        probe_every: args.probe_every.unwrap_or((args.steps / 10).max(1)),
        threshold: args.threshold,
    })
}

/// Runs the command; returns the report to print.
pub fn run(args: &TrainArgs) -> Result<String> {
    let config = config(args)?;
    for path in args.save.iter().chain(&args.log) {
        check_writable(path, args.force)?;
    }
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(config.steps as u64 + 1);
        b.set_style(
            ProgressStyle::with_template("train [{bar:40}] {pos}/{len} updates, {msg}, ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let on_row = |r: &LogRow| {
        bar.set_message(format!("loss {:.4}", r.loss));
        bar.inc(1);
    };
    let (run, name) = match args.precision {
        Precision::F32 => (train::<f32>(&config, on_row), f32::NAME),
        Precision::F64 => (train::<f64>(&config, on_row), f64::NAME),
    };
    bar.finish_and_clear();
    if let Some(path) = &args.save {
        match args.precision {
            Precision::F32 => {
                write_atomic(path, &to_safetensors_bytes(&run.params.cast::<f32>().to_tensors())?, args.force)?
            }
            Precision::F64 => write_atomic(path, &to_safetensors_bytes(&run.params.to_tensors())?, args.force)?,
        }
    }
    if let Some(path) = &args.log {
        write_csv(path, &run.log, args.force)?;
    }
    Ok(report(&config, &run, name, args))
}

fn report(config: &TrainConfig, run: &Trained, precision: &str, args: &TrainArgs) -> String {
    let task = config.task;
    let baseline = task.baseline();
    let horizon = |r: Option<&LogRow>| match r {
        Some(LogRow { horizon: Some(k), .. }) => k.to_string(),
        _ => format!("none within T = {}", task.steps()),
    };
    let clipped = run.log.iter().filter(|r| r.clipped).count();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} task, lag {} (T = {}), {} H = {}, {} updates of batch {} in {precision}",
        task.kind.name(),
        task.lag,
        task.steps(),
        config.cell,
        config.hidden,
        config.steps,
        config.batch
    );
    let _ = writeln!(
        s,
        "loss {:.4} → {:.4}, {:.4} on {EVAL_BATCH} held-out sequences against the baseline {:.4}: {} (solved means \
         below {SOLVED_FRACTION} of it); clipped {clipped} of {} updates",
        run.log[0].loss,
        run.final_loss(),
        run.eval_loss,
        baseline,
        if run.solved(task) { "solved" } else { "not solved" },
        config.steps
    );
    let _ = write!(
        s,
        "horizon of the headline Jacobian product on a held-out sequence: {} at initialisation, {} after training",
        horizon(run.log.first()),
        horizon(run.log.last())
    );
    for path in args.save.iter().chain(&args.log) {
        let _ = write!(s, "\nwrote {}", path.display());
    }
    s
}
