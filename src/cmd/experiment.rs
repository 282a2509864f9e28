//! `gradlab experiment`: list the built-in experiments, or run one (built-in or a spec file)
//! over its grid in parallel and write CSVs, the spec and charts into its output folder.

use crate::cli::{ExperimentArgs, ExperimentCommand, RunArgs};
use crate::error::{Error, Result};
use crate::experiment::charts::{decay_figure, decomposition_figure, rate_figure};
use crate::experiment::grid::expand;
use crate::experiment::run::{Results, run_all};
use crate::experiment::spec::{BUILT_IN, Spec};
use crate::experiment::stats::mean_sd;
use crate::output::{csv_bytes, plot};
use crate::tensors::write_atomic;
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Runs the command; returns the report to print.
pub fn run(args: &ExperimentArgs) -> Result<String> {
    match &args.command {
        ExperimentCommand::List => Ok(list()),
        ExperimentCommand::Vanishing(run_args) => run_spec(Spec::built_in("vanishing")?, run_args),
        ExperimentCommand::Run { spec, args } => run_spec(Spec::read(spec)?, args),
    }
}

fn list() -> String {
    let mut r = String::from("built-in experiments (run with `gradlab experiment <name>`):\n");
    for (name, _) in BUILT_IN {
        let spec = Spec::built_in(name).expect("built-in specs are tested");
        let points = expand(&spec).len();
        let _ = writeln!(r, "  {name:<12} {} ({points} grid points, writes {})", spec.description, spec.out.display());
    }
    r.push_str("your own: `gradlab experiment run path/to/spec.toml` (see experiments/vanishing.toml)");
    r
}

/// The files an experiment writes into its folder.
fn output_files(spec: &Spec) -> Vec<&'static str> {
    let mut f = vec!["spec.toml", "curves.csv", "summary.csv", "decay.png", "decay.svg", "rate.png", "rate.svg"];
    if spec.probes.lyapunov > 0 {
        f.push("lyapunov.csv");
    }
    if spec.probes.decomposition && spec.cells.contains(&crate::cell::CellKind::Lstm) {
        f.extend(["decomp.csv", "decomposition.png", "decomposition.svg"]);
    }
    f
}

/// Existing outputs may be replaced with `--force`, or when the folder's `spec.toml` is the spec
/// being run byte for byte: the run then reproduces those very files.
fn check_outputs(dir: &Path, spec: &Spec, force: bool) -> Result<bool> {
    let same_spec = std::fs::read_to_string(dir.join("spec.toml")).is_ok_and(|t| t == spec.text);
    let replace = force || same_spec;
    if !replace && let Some(f) = output_files(spec).iter().map(|f| dir.join(f)).find(|p| p.exists()) {
        return Err(Error::Usage(format!(
            "{}: already exists, from a different spec than this run's; pass --force to overwrite, or choose --out",
            f.display()
        )));
    }
    Ok(replace)
}

fn run_spec(mut spec: Spec, args: &RunArgs) -> Result<String> {
    if let Some(out) = &args.out {
        spec.out = out.clone();
    }
    let replace = check_outputs(&spec.out, &spec, args.force)?;
    let points = expand(&spec);
    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(points.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} points, {elapsed} elapsed, ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(spec.name.clone());
        bar
    } else {
        ProgressBar::hidden()
    };
    let start = Instant::now();
    let results = match args.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n as usize)
            .build()
            .map_err(|e| Error::Usage(format!("--threads {n}: {e}")))?
            .install(|| run_all(&spec, &points, &progress)),
        None => run_all(&spec, &points, &progress),
    };
    progress.finish_and_clear();
    let elapsed = start.elapsed();
    let written = write_outputs(&spec, &results, replace)?;
    Ok(report(&spec, &results, points.len(), elapsed.as_secs_f64(), &written))
}

/// Writes every output file; returns their paths.
pub fn write_outputs(spec: &Spec, r: &Results, replace: bool) -> Result<Vec<PathBuf>> {
    let dir = &spec.out;
    let mut written = Vec::new();
    let mut put = |name: &str, bytes: Vec<u8>| -> Result<()> {
        let p = dir.join(name);
        write_atomic(&p, &bytes, replace)?;
        written.push(p);
        Ok(())
    };
    put("spec.toml", spec.text.as_bytes().to_vec())?;
    put("curves.csv", csv_bytes(&r.curves)?)?;
    put("summary.csv", csv_bytes(&r.summary)?)?;
    if spec.probes.lyapunov > 0 {
        put("lyapunov.csv", csv_bytes(&r.lyapunov)?)?;
    }
    let lstm_decomp = output_files(spec).contains(&"decomp.csv");
    if lstm_decomp {
        put("decomp.csv", csv_bytes(&r.decomp)?)?;
    }
    written.extend(plot::save(&decay_figure(spec, r), &dir.join("decay"), replace)?);
    written.extend(plot::save(&rate_figure(spec, r), &dir.join("rate"), replace)?);
    if lstm_decomp && let Some(fig) = decomposition_figure(spec, r) {
        written.extend(plot::save(&fig, &dir.join("decomposition"), replace)?);
    }
    Ok(written)
}

fn report(spec: &Spec, r: &Results, points: usize, seconds: f64, written: &[PathBuf]) -> String {
    let t = *spec.seq_len.iter().max().expect("validated");
    let mut s = String::new();
    let _ = writeln!(s, "{}: {} — {points} grid points in {seconds:.1} s", spec.name, spec.description);
    let _ = writeln!(s, "at T = {t} (mean ± sd over seeds; rate = ln ‖∂h_T/∂h_s‖₂ per step, k* = horizon at 1e-3):");
    let _ = writeln!(
        s,
        "{:<6} {:<12} {:>5} {:>20} {:>8} {:>18} {:>10} {:>8}",
        "cell", "init", "H", "decay rate", "k*", "log10 ‖∂h_T/∂h_0‖", "top λ", "F share"
    );
    let mut keys: Vec<(&str, &str, usize)> = Vec::new();
    for row in &r.summary {
        let k = (row.cell, row.init.as_str(), row.hidden);
        if row.seq_len == t && !keys.contains(&k) {
            keys.push(k);
        }
    }
    for (cell, init, h) in keys {
        let rows: Vec<_> =
            r.summary.iter().filter(|x| x.cell == cell && x.init == init && x.hidden == h && x.seq_len == t).collect();
        let col = |f: &dyn Fn(&&crate::experiment::run::SummaryRow) -> Option<f64>| {
            let v: Vec<f64> = rows.iter().filter_map(f).filter(|v| v.is_finite()).collect();
            if v.is_empty() { None } else { Some(mean_sd(&v)) }
        };
        let fmt = |m: Option<(f64, f64)>, digits: usize| m.map_or("—".to_string(), |(m, _)| format!("{m:.digits$}"));
        let rate = col(&|x| Some(x.decay_rate)).map_or("—".into(), |(m, sd)| format!("{m:+.4} ± {sd:.4}"));
        let never = rows.iter().filter(|x| x.horizon.is_none()).count();
        let horizon =
            if never == rows.len() { format!("> {t}") } else { fmt(col(&|x| x.horizon.map(|k| k as f64)), 0) };
        let end = fmt(col(&|x| Some(x.log_norm_end / std::f64::consts::LN_10)), 1);
        let _ = writeln!(
            s,
            "{cell:<6} {init:<12} {h:>5} {rate:>20} {horizon:>8} {end:>18} {:>10} {:>8}",
            fmt(col(&|x| x.top_lyapunov), 4),
            fmt(col(&|x| x.f_share), 3)
        );
    }
    let _ = writeln!(s, "wrote:");
    for p in written {
        let _ = writeln!(s, "  {}", p.display());
    }
    s.trim_end().to_string()
}
