//! The generic runner: grid → points measured in parallel on one thread pool, in a deterministic
//! order; a progress bar; the output folder checked before any work; every file written
//! atomically. It knows nothing of what an experiment measures: that is the [`Experiment`]'s.
//!
//! Outputs are identical on any number of threads: a point is a sequential computation from its
//! own random stream, results are put back in grid order, and no floating-point reduction
//! crosses threads.

use super::findings::Finding;
use super::grid::{Key, Point, expand, point_rng};
use super::spec::Spec;
use crate::error::{Error, Result};
use crate::output::plot::{self, Figure};
use crate::output::{csv_bytes, read_csv};
use crate::tensors::write_atomic;
use indicatif::{ProgressBar, ProgressStyle};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One experiment: what it measures at a point, and what it makes of all points.
pub trait Experiment: Sync {
    /// Everything one grid point produces, and (appended in grid order) all points.
    type Measured: Send + Default;

    /// The CSV files it writes (besides `spec.toml`), for the output check before the sweep.
    fn tables(&self) -> Vec<&'static str>;

    /// The stems of the charts it writes (each as `.png` and `.svg`).
    fn charts(&self) -> Vec<&'static str>;

    /// Measures one point; `rng` is the point's own stream.
    fn measure(&self, point: &Point, rng: &mut ChaCha8Rng) -> Result<Self::Measured>;

    /// Relative cost of a point, for scheduling the longest first: by default T steps of
    /// products of the state dimension cubed.
    fn cost(&self, p: &Point) -> f64 {
        let n = if p.cell.has_cell_state() { 2 * p.hidden } else { p.hidden } as f64;
        p.seq_len as f64 * n * n * n
    }

    /// Appends one point's results to those of the points before it in grid order.
    fn append(all: &mut Self::Measured, one: Self::Measured);

    /// Tables and the summary from every point's results.
    fn finish(&self, all: &Self::Measured) -> Result<Products>;

    /// The charts (stem, figure) from every point's results: after a run, or from its CSVs.
    fn figures(&self, all: &Self::Measured) -> Vec<(&'static str, Figure)>;

    /// Every point's results from the CSVs [`Experiment::finish`] wrote into `dir`.
    fn read(&self, dir: &Path) -> Result<Self::Measured>;
}

/// What an experiment writes and prints.
#[derive(Default)]
pub struct Products {
    /// (file name, CSV bytes).
    pub tables: Vec<(&'static str, Vec<u8>)>,
    /// The head of `summary.md`: a sentence on what the table shows and the table, in Markdown.
    pub summary: String,
    /// What the rows say about the claims the experiment tests (`findings.csv`).
    pub findings: Vec<Finding>,
    /// Further observations computed from the rows, one Markdown bullet each.
    pub notes: Vec<String>,
}

impl Products {
    /// `summary.md`: the table, then the findings and notes.
    pub fn summary_markdown(&self) -> String {
        let mut s = self.summary.trim_end().to_string();
        s.push_str("\n\nFindings (computed from the rows above):\n\n");
        for f in &self.findings {
            s.push_str(&f.markdown());
            s.push('\n');
        }
        for n in &self.notes {
            s.push_str(&format!("- {n}\n"));
        }
        s
    }
}

impl Products {
    /// Adds a CSV of `rows`.
    pub fn table<R: Serialize>(&mut self, name: &'static str, rows: &[R]) -> Result<()> {
        self.tables.push((name, csv_bytes(rows)?));
        Ok(())
    }
}

/// The `curves.csv` and `summary.csv` rows of many points, in grid order: what several
/// experiments measure (their `Measured`).
pub struct CurvesAndSummary<C, S> {
    pub curves: Vec<(Key, C)>,
    pub summary: Vec<(Key, S)>,
}

impl<C, S> Default for CurvesAndSummary<C, S> {
    fn default() -> Self {
        CurvesAndSummary { curves: Vec::new(), summary: Vec::new() }
    }
}

impl<C: Serialize + DeserializeOwned, S: Serialize + DeserializeOwned> CurvesAndSummary<C, S> {
    /// [`Experiment::append`].
    pub fn append(&mut self, one: Self) {
        self.curves.extend(one.curves);
        self.summary.extend(one.summary);
    }

    /// `curves.csv` and `summary.csv`, with the summary table, findings and notes given.
    pub fn products(&self, (summary, findings, notes): (String, Vec<Finding>, Vec<String>)) -> Result<Products> {
        let mut p = Products { summary, findings, notes, ..Products::default() };
        p.table("curves.csv", &self.curves)?;
        p.table("summary.csv", &self.summary)?;
        Ok(p)
    }

    /// [`Experiment::read`].
    pub fn read(dir: &Path) -> Result<Self> {
        Ok(CurvesAndSummary {
            curves: read_csv(&dir.join("curves.csv"))?,
            summary: read_csv(&dir.join("summary.csv"))?,
        })
    }
}

/// How to run: from the command line.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Output folder (default: the spec's `out`).
    pub out: Option<PathBuf>,
    /// Worker threads (default: rayon's, all cores or RAYON_NUM_THREADS).
    pub threads: Option<u16>,
    /// Overwrite outputs of a different spec.
    pub force: bool,
}

/// Every file name `exp` may write into its folder.
fn output_files<E: Experiment>(exp: &E) -> Vec<String> {
    let mut f = ["spec.toml", "summary.md", "table.csv", "findings.csv", "run.toml"].map(String::from).to_vec();
    f.extend(exp.tables().iter().map(|t| t.to_string()));
    for c in exp.charts() {
        f.extend([format!("{c}.png"), format!("{c}.svg")]);
    }
    f
}

/// Existing outputs may be replaced with `--force`, or when the folder's `spec.toml` is the spec
/// being run byte for byte: the run then reproduces those very files.
fn check_outputs(dir: &Path, files: &[String], spec: &Spec, force: bool) -> Result<bool> {
    let same_spec = std::fs::read_to_string(dir.join("spec.toml")).is_ok_and(|t| t == spec.text);
    let replace = force || same_spec;
    if !replace && let Some(f) = files.iter().map(|f| dir.join(f)).find(|p| p.exists()) {
        return Err(Error::Usage(format!(
            "{}: already exists, from a different spec than this run's; pass --force to overwrite, or choose --out",
            f.display()
        )));
    }
    Ok(replace)
}

/// Runs `exp` over the grid of `spec`; returns the report to print.
pub fn run<E: Experiment>(exp: &E, spec: &Spec, opts: &RunOptions) -> Result<String> {
    let dir = opts.out.clone().unwrap_or_else(|| spec.out.clone());
    let files = output_files(exp);
    let replace = check_outputs(&dir, &files, spec, opts.force)?;
    let points = expand(spec);
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
    let measured = match opts.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n as usize)
            .build()
            .map_err(|e| Error::Usage(format!("--threads {n}: {e}")))?
            .install(|| measure_all(exp, spec, &points, &progress)),
        None => measure_all(exp, spec, &points, &progress),
    }?;
    progress.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let mut all = E::Measured::default();
    for m in measured {
        E::append(&mut all, m);
    }
    let products = exp.finish(&all)?;
    let mut written = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
        debug_assert!(files.iter().any(|f| f == name), "{name} is not among the declared outputs");
        let p = dir.join(name);
        write_atomic(&p, bytes, replace)?;
        written.push(p);
        Ok(())
    };
    put("spec.toml", spec.text.as_bytes())?;
    for (name, bytes) in &products.tables {
        put(name, bytes)?;
    }
    let summary = products.summary_markdown();
    put("summary.md", summary.as_bytes())?;
    put("table.csv", &markdown_table_csv(&products.summary)?)?;
    put("findings.csv", &csv_bytes(&products.findings)?)?;
    let run = RunRecord {
        gradlab: env!("CARGO_PKG_VERSION").to_string(),
        commit: env!("GRADLAB_COMMIT").to_string(),
        seconds: (seconds * 10.0).round() / 10.0,
        threads: rayon_threads(opts.threads),
        points: points.len(),
    };
    put("run.toml", toml::to_string(&run).expect("a flat record serializes").as_bytes())?;
    for (stem, fig) in exp.figures(&all) {
        debug_assert!(exp.charts().contains(&stem), "chart {stem} is not declared");
        written.extend(plot::save(&fig, &dir.join(stem), replace)?);
    }
    let mut r = String::new();
    let _ = writeln!(r, "{}: {} — {} grid points in {seconds:.1} s\n", spec.name, spec.description, points.len());
    let _ = writeln!(r, "{}", summary.trim_end());
    let _ = writeln!(r, "\nwrote:");
    for p in written {
        let _ = writeln!(r, "  {}", p.display());
    }
    Ok(r.trim_end().to_string())
}

/// The Markdown table in `text` (its `|` lines, without the `|---|` line) as CSV, cell for cell:
/// the summary's aggregates (means ± sd, medians, counts) in a machine-readable file.
fn markdown_table_csv(text: &str) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for line in text.lines().map(str::trim).filter(|l| l.starts_with('|') && !l.starts_with("|---")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        w.write_record(&cells).map_err(|e| Error::Format(format!("CSV: {e}")))?;
    }
    w.into_inner().map_err(|e| Error::Format(format!("CSV: {e}")))
}

/// How a folder's outputs were made: `run.toml`, read back by `gradlab report`.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct RunRecord {
    pub gradlab: String,
    /// The commit the binary was built from ("unknown" outside a git checkout).
    pub commit: String,
    /// Wall-clock seconds of the sweep (measuring the points), to 0.1 s.
    pub seconds: f64,
    pub threads: usize,
    pub points: usize,
}

/// The worker threads a run uses.
fn rayon_threads(threads: Option<u16>) -> usize {
    threads.map_or_else(rayon::current_num_threads, usize::from)
}

/// Measures every point on the current rayon pool; `progress` ticks once per point. Points start
/// costliest first, so no core idles on one late, long point; results come back in grid order,
/// and the first error in grid order wins.
fn measure_all<E: Experiment>(
    exp: &E,
    spec: &Spec,
    points: &[Point],
    progress: &ProgressBar,
) -> Result<Vec<E::Measured>> {
    let mut order: Vec<&Point> = points.iter().collect();
    order.sort_by(|a, b| exp.cost(b).total_cmp(&exp.cost(a)));
    let mut per_point: Vec<(usize, Result<E::Measured>)> = order
        .par_iter()
        .with_max_len(1)
        .map(|p| {
            let r = exp.measure(p, &mut point_rng(spec, p));
            progress.inc(1);
            (p.index, r)
        })
        .collect();
    per_point.sort_by_key(|(index, _)| *index);
    per_point.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_table_becomes_csv_cell_for_cell() {
        let md = "Intro.\n\n| a | b c |\n|---|---|\n| 1 | -0.5 ± 0.1 |\n| x, y | |\n\nAfter.";
        let csv = String::from_utf8(markdown_table_csv(md).unwrap()).unwrap();
        assert_eq!(csv, "a,b c\n1,-0.5 ± 0.1\n\"x, y\",\n");
    }
}
