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
use super::store::{self, Store};
use crate::error::{Error, Result};
use crate::output::plot::{self, Figure};
use crate::output::{csv_bytes, read_csv};
use indicatif::{ProgressBar, ProgressStyle};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// One experiment: what it measures at a point, and what it makes of all points.
pub trait Experiment: Sync {
    /// Everything one grid point produces, and (appended in grid order) all points.
    type Measured: Send + Default + Serialize + DeserializeOwned;

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

/// The `curves.csv` and `summary.csv` rows of many points, in grid order, each behind the key
/// of its point and sequence (`K`, the leading columns): what several experiments measure (their
/// `Measured`).
#[derive(Serialize, serde::Deserialize)]
#[serde(bound(
    serialize = "C: Serialize, S: Serialize, K: Serialize",
    deserialize = "C: DeserializeOwned, S: DeserializeOwned, K: DeserializeOwned"
))]
pub struct CurvesAndSummary<C, S, K = Key> {
    pub curves: Vec<(K, C)>,
    pub summary: Vec<(K, S)>,
}

impl<C, S, K> Default for CurvesAndSummary<C, S, K> {
    fn default() -> Self {
        CurvesAndSummary { curves: Vec::new(), summary: Vec::new() }
    }
}

impl<C: Serialize + DeserializeOwned, S: Serialize + DeserializeOwned, K: Serialize + DeserializeOwned>
    CurvesAndSummary<C, S, K>
{
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
    /// Overwrite outputs of a different spec, and discard stored points of a different spec.
    pub force: bool,
    /// Measure only this shard's points and store them, for `gradlab experiment merge`.
    pub shard: Option<Shard>,
    /// Print the points and the estimated time and memory; measure and write nothing.
    pub dry_run: bool,
}

/// Shard `index` of `count` (`--shard i/n`, i from 0): a deterministic share of the points,
/// balanced by estimated cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// More shards than this is a typo, not a cluster.
pub const MAX_SHARDS: usize = 100_000;

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let bad = || format!("expected i/n with 0 <= i < n <= {MAX_SHARDS} (e.g. 0/4), found {s:?}");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if index >= count || count > MAX_SHARDS {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// This shard's points, in grid order: points go costliest first to the shard with the least
    /// cost so far (ties to the lower shard), so every shard gets a similar share of the work.
    pub fn select(self, points: &[Point], cost: impl Fn(&Point) -> f64) -> Vec<&Point> {
        let mut order: Vec<&Point> = points.iter().collect();
        order.sort_by(|a, b| cost(b).total_cmp(&cost(a)).then(a.index.cmp(&b.index)));
        let mut load = vec![0.0f64; self.count];
        let mut mine = Vec::new();
        for p in order {
            let s = (0..self.count).min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b))).expect("count >= 1");
            load[s] += cost(p);
            if s == self.index {
                mine.push(p);
            }
        }
        mine.sort_by_key(|p| p.index);
        mine
    }
}

/// Set by Ctrl-C (the binary installs the handler): workers start no new point, and the run
/// stops with its finished points stored.
static STOP: AtomicBool = AtomicBool::new(false);

/// Asks running sweeps to stop after the points in progress; returns whether it had been asked
/// already.
pub fn request_stop() -> bool {
    STOP.swap(true, Ordering::SeqCst)
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

/// Existing outputs may be replaced with `--force`, or when they are this spec's: the folder's
/// `spec.toml` is the spec being run byte for byte (the run reproduces those very files), or its
/// stored points are (a run of it was interrupted, possibly while moving its outputs in).
fn check_outputs(dir: &Path, files: &[String], spec: &Spec, force: bool) -> Result<()> {
    let ours = std::fs::read_to_string(dir.join("spec.toml")).is_ok_and(|t| t == spec.text)
        || store::owner(dir).is_some_and(|t| t == spec.text);
    if !force
        && !ours
        && let Some(f) = files.iter().map(|f| dir.join(f)).find(|p| p.exists())
    {
        return Err(Error::Usage(format!(
            "{}: already exists, from a different spec than this run's; pass --force to overwrite, or choose --out",
            f.display()
        )));
    }
    Ok(())
}

/// Runs `exp` over the grid of `spec` (or one shard of it); returns the report to print.
/// `preflight` runs once the output folder is known usable and before anything is written.
///
/// Every finished point is stored at once ([`Store`]); points already stored by an interrupted
/// run or another shard are not measured again. Once all are there, the outputs are assembled
/// from them and moved into the folder, and the store is removed.
pub fn run<E: Experiment>(
    exp: &E,
    spec: &Spec,
    opts: &RunOptions,
    preflight: impl FnOnce() -> Result<()>,
) -> Result<String> {
    let dir = opts.out.clone().unwrap_or_else(|| spec.out.clone());
    check_outputs(&dir, &output_files(exp), spec, opts.force)?;
    store::check_writable(&dir)?;
    preflight()?;
    let store = Store::open(&dir, spec, opts.force)?;
    let points = expand(spec);
    let mine = match opts.shard {
        Some(s) => s.select(&points, |p| exp.cost(p)),
        None => points.iter().collect(),
    };
    let mut done: Vec<Option<E::Measured>> = (0..points.len()).map(|_| None).collect();
    for p in &mine {
        done[p.index] = store
            .load(p.index)
            .map_err(|e| Error::Usage(format!("{e}; delete that file to measure its point again")))?;
    }
    let todo: Vec<&Point> = mine.iter().copied().filter(|p| done[p.index].is_none()).collect();
    let stored = mine.len() - todo.len();
    let start = Instant::now();
    let fresh = with_pool(opts.threads, || measure_all(exp, spec, &todo, &store, stored, mine.len()))??;
    let seconds = start.elapsed().as_secs_f64();
    for (index, m) in fresh {
        done[index] = Some(m);
    }
    let resumed = if stored > 0 { format!(" ({stored} were stored by an earlier run)") } else { String::new() };
    if let Some(shard) = opts.shard {
        let share = mine.iter().map(|p| exp.cost(p)).sum::<f64>() / points.iter().map(|p| exp.cost(p)).sum::<f64>();
        return Ok(format!(
            "{}: shard {shard}: {} of the {} points{resumed}, {:.1}% of the estimated cost, measured in {seconds:.1} s \
             and stored in {}\nwhen every shard is done: gradlab experiment merge DIR... [--out OUT]",
            spec.name,
            mine.len(),
            points.len(),
            100.0 * share,
            store.dir().display()
        ));
    }
    let record = RunRecord {
        gradlab: env!("CARGO_PKG_VERSION").to_string(),
        commit: env!("GRADLAB_COMMIT").to_string(),
        seconds: (seconds * 10.0).round() / 10.0,
        threads: rayon_threads(opts.threads),
        points: points.len(),
        measured: todo.len(),
        files: Vec::new(),
        peak_memory_mib: None,
    };
    let all = done.into_iter().map(|m| m.expect("a whole run measures or stores every point")).collect();
    let (summary, written) = assemble(exp, &dir, spec, all, record)?;
    store.discard()?;
    Ok(report(spec, &format!("{} grid points in {seconds:.1} s{resumed}", points.len()), &summary, &written))
}

/// Assembles the outputs of `spec` from the points stored in `dirs` (the `--out` folders of its
/// shards) into `opts.out` (default: the spec's `out`), byte for byte what one run writes;
/// refuses stores of other specs and missing points, naming them. A store in the output folder
/// itself is removed once its outputs are in place.
pub fn merge<E: Experiment>(exp: &E, spec: &Spec, dirs: &[PathBuf], opts: &RunOptions) -> Result<String> {
    let dir = opts.out.clone().unwrap_or_else(|| spec.out.clone());
    let mut stores = Vec::new();
    for d in dirs {
        let (store, text) = Store::existing(d)?;
        if text != spec.text {
            return Err(Error::Usage(format!(
                "{}/{}/spec.toml differs from {}/{}/spec.toml: shards of one run share one spec",
                d.display(),
                store::PARTIAL,
                dirs[0].display(),
                store::PARTIAL
            )));
        }
        stores.push(store);
    }
    check_outputs(&dir, &output_files(exp), spec, opts.force)?;
    let start = Instant::now();
    let points = expand(spec);
    let mut all = Vec::with_capacity(points.len());
    let mut missing = Vec::new();
    for p in &points {
        let mut found = None;
        for s in &stores {
            if let Some(m) = s.load(p.index)? {
                found = Some(m);
                break;
            }
        }
        match found {
            Some(m) => all.push(m),
            None => missing.push(p),
        }
    }
    if !missing.is_empty() {
        let named: Vec<String> = missing.iter().take(5).map(|p| describe(spec, p)).collect();
        return Err(Error::Usage(format!(
            "{} of the {} points of spec `{}` are in none of the folders given, e.g. {}; run the shards that hold \
             them (or the whole spec into one of the folders) and merge again",
            missing.len(),
            points.len(),
            spec.name,
            named.join("; ")
        )));
    }
    let record = RunRecord {
        gradlab: env!("CARGO_PKG_VERSION").to_string(),
        commit: env!("GRADLAB_COMMIT").to_string(),
        seconds: 0.0,
        threads: 1,
        points: points.len(),
        measured: 0,
        files: Vec::new(),
        peak_memory_mib: None,
    };
    let (summary, written) = assemble(exp, &dir, spec, all, record)?;
    for (d, s) in dirs.iter().zip(stores) {
        if same_folder(d, &dir) {
            s.discard()?;
        }
    }
    let how = format!(
        "{} grid points merged from {} folders in {:.1} s",
        points.len(),
        dirs.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(report(spec, &how, &summary, &written))
}

/// A point's parameters, for messages.
fn describe(spec: &Spec, p: &Point) -> String {
    let what = match p.train {
        Some(r) => format!(
            "{} task, lag {}, clip {}",
            r.task.kind.name(),
            r.task.lag,
            r.clip.map_or("none".to_string(), |c| c.to_string())
        ),
        None => format!("seq_len {}", p.seq_len),
    };
    format!(
        "point {} (cell {}, init {}, hidden {}, {what}, seed {})",
        p.index, p.cell, spec.inits[p.init].label, p.hidden, p.seed
    )
}

fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// What `run` and `merge` print.
fn report(spec: &Spec, how: &str, summary: &str, written: &[PathBuf]) -> String {
    let mut r = String::new();
    let _ = writeln!(r, "{}: {} — {how}\n", spec.name, spec.description);
    let _ = writeln!(r, "{}", summary.trim_end());
    let _ = writeln!(r, "\nwrote:");
    for p in written {
        let _ = writeln!(r, "  {}", p.display());
    }
    r.trim_end().to_string()
}

/// The staging folder inside an output folder, where outputs are assembled before they move in.
const STAGING: &str = ".staging";

/// Makes every output from the points (in grid order) in `dir`/.staging, then moves them into
/// `dir`: its old `spec.toml` first out, the new one last in, and the files the folder's previous
/// run listed in its `run.toml` that this run does not write removed, so the folder never
/// describes files it did not produce. Returns `summary.md` and the paths written.
fn assemble<E: Experiment>(
    exp: &E,
    dir: &Path,
    spec: &Spec,
    points: Vec<E::Measured>,
    mut record: RunRecord,
) -> Result<(String, Vec<PathBuf>)> {
    let mut all = E::Measured::default();
    for m in points {
        E::append(&mut all, m);
    }
    let products = exp.finish(&all)?;
    let staging = dir.join(STAGING);
    let io = |p: &Path, source| Error::Io { path: p.to_path_buf(), source };
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| io(&staging, e))?;
    let declared = output_files(exp);
    let mut names: Vec<String> = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
        debug_assert!(declared.iter().any(|f| f == name), "{name} is not among the declared outputs");
        let p = staging.join(name);
        std::fs::write(&p, bytes).map_err(|e| io(&p, e))?;
        names.push(name.to_string());
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
    for (stem, fig) in exp.figures(&all) {
        debug_assert!(exp.charts().contains(&stem), "chart {stem} is not declared");
        for p in plot::save(&fig, &staging.join(stem), true)? {
            names.push(p.file_name().expect("a chart file").to_string_lossy().into_owned());
        }
    }
    names.push("run.toml".into());
    record.files = names.clone();
    record.peak_memory_mib = super::budget::peak_resident_memory().map(|b| (b / (1u64 << 20) as f64).round());
    let run_toml = staging.join("run.toml");
    std::fs::write(&run_toml, toml::to_string(&record).expect("a flat record serializes"))
        .map_err(|e| io(&run_toml, e))?;
    sync_folder(&staging)?;

    // The previous run's files, named by its run record (plain names only).
    let previous: Vec<String> = std::fs::read_to_string(dir.join("run.toml"))
        .ok()
        .and_then(|t| toml::from_str::<RunRecord>(&t).ok())
        .map(|r| r.files)
        .unwrap_or_default()
        .into_iter()
        .filter(|f| Path::new(f).file_name().is_some_and(|n| n == f.as_str()))
        .collect();
    let remove = |p: &Path| match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(p, e)),
        _ => Ok(()),
    };
    remove(&dir.join("spec.toml"))?;
    let mut written = Vec::new();
    for name in names.iter().filter(|n| *n != "spec.toml").chain(std::iter::once(&"spec.toml".to_string())) {
        let to = dir.join(name);
        if name == "spec.toml" {
            for stale in previous.iter().filter(|f| !names.contains(f)) {
                remove(&dir.join(stale))?;
            }
        }
        std::fs::rename(staging.join(name), &to).map_err(|e| io(&to, e))?;
        written.push(to);
    }
    std::fs::remove_dir(&staging).map_err(|e| io(&staging, e))?;
    sync_folder(dir)?;
    written.sort();
    Ok((summary, written))
}

/// Makes a folder's renames durable (where the platform can).
fn sync_folder(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    let _ = dir;
    Ok(())
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
    /// Wall-clock seconds this process spent measuring points, to 0.1 s (0 for a merge).
    pub seconds: f64,
    pub threads: usize,
    pub points: usize,
    /// The points this process measured; the others were stored by an interrupted run or shards.
    #[serde(default)]
    pub measured: usize,
    /// Every file the run wrote into the folder (a later run removes those it does not write).
    #[serde(default)]
    pub files: Vec<String>,
    /// The process's peak resident memory (MiB, Linux `VmHWM`) once the outputs were made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_mib: Option<f64>,
}

/// The worker threads a run uses.
pub fn rayon_threads(threads: Option<u16>) -> usize {
    threads.map_or_else(rayon::current_num_threads, usize::from)
}

/// Runs `f` on a pool of `threads` workers, or on rayon's global pool.
fn with_pool<T: Send>(threads: Option<u16>, f: impl FnOnce() -> T + Send) -> Result<T> {
    match threads {
        Some(n) => Ok(rayon::ThreadPoolBuilder::new()
            .num_threads(n as usize)
            .build()
            .map_err(|e| Error::Usage(format!("--threads {n}: {e}")))?
            .install(f)),
        None => Ok(f()),
    }
}

/// A progress bar on a terminal (hidden otherwise) that advances by the estimated cost of each
/// finished point, so its ETA weighs points by cost; it redraws every second, so the elapsed
/// time ticks while long points run.
fn progress_bar(name: &str, total_cost: f64) -> ProgressBar {
    if !std::io::stderr().is_terminal() || total_cost <= 0.0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(PROGRESS_UNITS);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:40}] {msg}, {elapsed} elapsed, ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    bar.enable_steady_tick(std::time::Duration::from_secs(1));
    bar
}

/// The progress bar's length: the estimated cost of the points to measure, in these units.
const PROGRESS_UNITS: u64 = 1_000_000;

/// Measures `todo` on the current rayon pool, storing each point as it finishes. Points start
/// costliest first, so no core idles on one late, long point. Returns (index, measurement) in
/// grid order. On Ctrl-C, or after a point fails, no new point starts; then the first error in
/// grid order, or [`Error::Interrupted`], is returned, with every finished point stored.
fn measure_all<E: Experiment>(
    exp: &E,
    spec: &Spec,
    todo: &[&Point],
    store: &Store,
    stored: usize,
    total: usize,
) -> Result<Vec<(usize, E::Measured)>> {
    let mut order: Vec<&Point> = todo.to_vec();
    order.sort_by(|a, b| exp.cost(b).total_cmp(&exp.cost(a)));
    let total_cost: f64 = order.iter().map(|p| exp.cost(p)).sum();
    let progress = progress_bar(&spec.name, total_cost);
    let done = std::sync::Mutex::new((stored, 0.0f64));
    progress.set_message(format!("{stored}/{total} points"));
    let failed = AtomicBool::new(false);
    let mut per_point: Vec<(usize, Option<Result<E::Measured>>)> = order
        .par_iter()
        .with_max_len(1)
        .map(|p| {
            if STOP.load(Ordering::SeqCst) || failed.load(Ordering::SeqCst) {
                return (p.index, None);
            }
            let r = exp.measure(p, &mut point_rng(spec, p)).and_then(|m| store.save(p.index, &m).map(|()| m));
            if r.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
            let mut d = done.lock().expect("no panics while held");
            d.0 += 1;
            d.1 += exp.cost(p);
            progress.set_position((d.1 / total_cost * PROGRESS_UNITS as f64) as u64);
            progress.set_message(format!("{}/{total} points", d.0));
            (p.index, Some(r))
        })
        .collect();
    progress.finish_and_clear();
    per_point.sort_by_key(|(index, _)| *index);
    let mut out = Vec::with_capacity(per_point.len());
    let mut skipped = 0;
    for (index, r) in per_point {
        match r {
            Some(r) => out.push((index, r?)),
            None => skipped += 1,
        }
    }
    if skipped > 0 {
        return Err(Error::Interrupted(format!(
            "interrupted: {} of the {total} points are stored in {}; run the same command again to resume",
            total - skipped,
            store.dir().display()
        )));
    }
    Ok(out)
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
