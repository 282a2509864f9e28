//! Experiment specs: TOML files naming the experiment `kind`, the grid axes (cells, inits,
//! hidden sizes, sequence lengths, seeds), the input distribution, the batch, the probes and the
//! output folder; the trainability experiment's `[train]` table lists its tasks, lags and training
//! settings instead of sequence lengths and inputs. Unknown keys and bad values are errors naming the key and what is allowed; what
//! a kind needs beyond these common checks, its own file checks (`new(spec) -> Result`).

use super::{BUILT_IN, Kind};
use crate::cell::CellKind;
use crate::error::{Error, Result};
use crate::init::{InitSpec, Scheme, parse_call};
use crate::probe::Quantity;
use crate::scalar::Precision;
use crate::train::tasks::{Task, TaskKind};
use crate::train::trainer::EVAL_BATCH;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest hidden size a spec may ask for (the probes multiply (2H)² matrices every step).
pub const MAX_HIDDEN: usize = 4096;
/// Longest sequence a spec may ask for.
pub const MAX_SEQ_LEN: usize = 1_000_000;
/// Largest batch a spec may ask for.
pub const MAX_BATCH: usize = 4096;
/// Largest input size a spec may ask for.
pub const MAX_INPUT: usize = 65_536;
/// Most Adam updates a training run may ask for.
pub const MAX_UPDATES: usize = 10_000_000;
/// Longest lag a training task may ask for.
pub const MAX_LAG: usize = 100_000;
/// Memory one grid point may need, estimated before anything is allocated (GiB).
pub const MAX_POINT_GIB: f64 = 4.0;

/// The first value listed twice, as text.
fn first_duplicate<T: PartialEq + std::fmt::Display>(v: &[T]) -> Option<String> {
    v.iter().enumerate().find(|(i, x)| v[..*i].contains(x)).map(|(_, x)| x.to_string())
}

/// A spec as written in TOML.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    kind: Kind,
    name: String,
    #[serde(default)]
    description: String,
    seed: u64,
    cells: Vec<CellKind>,
    inits: Vec<String>,
    hidden: Vec<usize>,
    #[serde(default)]
    seq_len: Vec<usize>,
    seeds: Vec<u64>,
    batch: Option<usize>,
    input_size: Option<usize>,
    input: Option<String>,
    #[serde(default)]
    probes: Probes,
    out: Option<PathBuf>,
    #[serde(default)]
    init: BTreeMap<String, InitTable>,
    train: Option<TrainTable>,
}

/// `[train]`, as written: the trainability experiment's runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainTable {
    tasks: Vec<TaskKind>,
    lags: Vec<usize>,
    steps: usize,
    #[serde(default = "train_batch")]
    batch: usize,
    #[serde(default = "train_lr")]
    lr: f64,
    #[serde(default = "train_clips")]
    clips: Vec<f64>,
    #[serde(default)]
    precision: Precision,
    probe_every: Option<usize>,
    #[serde(default = "train_log_every")]
    log_every: usize,
}

fn train_batch() -> usize {
    32
}

fn train_lr() -> f64 {
    0.01
}

fn train_clips() -> Vec<f64> {
    vec![1.0]
}

fn train_log_every() -> usize {
    10
}

/// The trainability experiment's runs (`[train]`): every (task, lag) × clip threshold is a grid
/// axis; the rest is shared by all runs.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSpec {
    /// The tasks, each at every lag (lags a task is not defined for are errors).
    pub tasks: Vec<TaskKind>,
    pub lags: Vec<usize>,
    /// Adam updates per run.
    pub steps: usize,
    /// Sequences per update.
    pub batch: usize,
    /// Adam's learning rate (β₁, β₂, ε are PyTorch's defaults).
    pub lr: f64,
    /// Global-norm clipping thresholds; `None` (written `inf`) trains unclipped.
    pub clips: Vec<Option<f64>>,
    pub precision: Precision,
    /// Updates between horizon probes (besides the first and the last).
    pub probe_every: usize,
    /// Updates between the rows of `curves.csv` (probed updates are always written).
    pub log_every: usize,
}

impl TrainSpec {
    /// Every (task, lag) of the grid, in grid order.
    pub fn task_lags(&self) -> Vec<Task> {
        self.tasks.iter().flat_map(|&kind| self.lags.iter().map(move |&lag| Task { kind, lag })).collect()
    }
}

/// `[init.<label>]`: schemes per parameter group, and the cells it applies to.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InitTable {
    cells: Option<Vec<CellKind>>,
    #[serde(default)]
    recurrent: Vec<String>,
    #[serde(default)]
    input: Vec<String>,
    #[serde(default)]
    bias: Vec<String>,
    #[serde(default)]
    gate_bias: Vec<String>,
}

/// `[probes]`: what to measure at every grid point.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Probes {
    /// Jacobian-product quantities for the curves: `dh` (every cell), `dc`, `dstate`,
    /// `dc_total` (LSTM only; skipped for other cells).
    pub quantities: Vec<Quantity>,
    /// How many leading Lyapunov exponents to compute (0: none).
    pub lyapunov: usize,
    /// Steps run before the Lyapunov sums start (Q_0 is a random orthonormal matrix drawn from
    /// the point's stream); must be shorter than every `seq_len`.
    pub lyapunov_burn_in: usize,
    /// The horizon k* is the smallest distance after which the norm stays below this (absolute:
    /// ∂h_T/∂h_T = I has norm 1).
    pub horizon_threshold: f64,
}

impl Default for Probes {
    fn default() -> Self {
        Probes {
            quantities: vec![Quantity::Dh, Quantity::Dstate, Quantity::DcTotal],
            lyapunov: 4,
            lyapunov_burn_in: 0,
            horizon_threshold: 1e-3,
        }
    }
}

/// The distribution of the input sequences x.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputDist {
    /// x ~ N(0, σ²) entrywise.
    Gaussian(f64),
    /// x ~ U(-a, a) entrywise.
    Uniform(f64),
    /// x = 0.
    Zeros,
}

/// A named initialisation and the cells it applies to.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedInit {
    pub label: String,
    pub cells: Option<Vec<CellKind>>,
    pub spec: InitSpec,
}

impl NamedInit {
    pub fn applies_to(&self, cell: CellKind) -> bool {
        self.cells.as_ref().is_none_or(|c| c.contains(&cell))
    }
}

/// A validated experiment spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub kind: Kind,
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub cells: Vec<CellKind>,
    pub inits: Vec<NamedInit>,
    pub hidden: Vec<usize>,
    pub seq_len: Vec<usize>,
    pub seeds: Vec<u64>,
    pub batch: usize,
    pub input_size: usize,
    pub input: InputDist,
    pub probes: Probes,
    /// Output folder (default `results/<name>`).
    pub out: PathBuf,
    /// The trainability experiment's runs (only that kind has them).
    pub train: Option<TrainSpec>,
    /// The TOML text this spec was parsed from, written next to the results.
    pub text: String,
}

impl Spec {
    /// The (cell, init label) pairs of the grid, in grid order.
    pub fn pairs(&self) -> Vec<(CellKind, &str)> {
        let mut out = Vec::new();
        for &cell in &self.cells {
            for init in self.inits.iter().filter(|n| n.applies_to(cell)) {
                out.push((cell, init.label.as_str()));
            }
        }
        out
    }

    /// The built-in experiment `name`.
    pub fn built_in(name: &str) -> Result<Spec> {
        let (_, text) = BUILT_IN.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
            Error::Usage(format!("no built-in experiment `{name}`; built-in: {}", names.join(", ")))
        })?;
        Spec::parse(text).map_err(|e| e.in_file(format!("<built-in {name}>")))
    }

    /// Reads a spec file; errors name the file.
    pub fn read(path: &Path) -> Result<Spec> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Spec::parse(&text).map_err(|e| e.in_file(path))
    }

    /// Parses and validates spec text.
    pub fn parse(text: &str) -> Result<Spec> {
        let f: SpecFile = toml::from_str(text).map_err(|e| Error::Usage(one_line(&e.to_string())))?;
        let key = |k: &str, why: String| Error::Usage(format!("key `{k}`: {why}"));
        if f.name.is_empty() || !f.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(key("name", format!("{:?} must be non-empty letters, digits, '-' or '_'", f.name)));
        }
        let train = train_spec(&f)?;
        // The trainability experiment's lengths, batch and inputs are its tasks'.
        let (seq_len, batch, input_size, input) = match &train {
            Some(t) => {
                let mut lengths: Vec<usize> = t.task_lags().iter().map(Task::steps).collect();
                lengths.sort_unstable();
                lengths.dedup();
                let inputs = t.tasks.iter().map(|&kind| Task { kind, lag: 2 }.input_size()).max().expect("non-empty");
                (lengths, t.batch, inputs, InputDist::Zeros)
            }
            None => {
                let input =
                    parse_input(f.input.as_deref().unwrap_or("gaussian(1.0)")).map_err(|why| key("input", why))?;
                let input_size =
                    f.input_size.ok_or_else(|| key("input_size", "is missing: the inputs' dimension".into()))?;
                (f.seq_len.clone(), f.batch.unwrap_or(1), input_size, input)
            }
        };
        for (k, empty) in [
            ("cells", f.cells.is_empty()),
            ("inits", f.inits.is_empty()),
            ("hidden", f.hidden.is_empty()),
            ("seq_len", seq_len.is_empty()),
            ("seeds", f.seeds.is_empty()),
        ] {
            if empty {
                return Err(key(k, "must list at least one value".into()));
            }
        }
        if let Some(h) = f.hidden.iter().find(|&&h| h == 0 || h > MAX_HIDDEN) {
            return Err(key("hidden", format!("{h} is not a hidden size in 1..={MAX_HIDDEN}")));
        }
        if let Some(t) = seq_len.iter().find(|&&t| !(2..=MAX_SEQ_LEN).contains(&t)) {
            return Err(key("seq_len", format!("{t} is not in 2..={MAX_SEQ_LEN} (a decay rate needs T ≥ 2)")));
        }
        if !(1..=MAX_BATCH).contains(&batch) {
            return Err(key("batch", format!("{batch} is not in 1..={MAX_BATCH}")));
        }
        if !(1..=MAX_INPUT).contains(&input_size) {
            return Err(key("input_size", format!("{input_size} is not in 1..={MAX_INPUT}")));
        }
        // Each point holds its input and tape: at most 16 values of H per step and sequence (LSTM:
        // 4 gate inputs, 10 cached values, h and c), plus the probes' few (2H)² matrices.
        let (h_max, t_max) = (*f.hidden.iter().max().expect("non-empty"), *seq_len.iter().max().expect("non-empty"));
        // A training run's largest tape is its evaluation batch's.
        let tape_batch = if train.is_some() { batch.max(EVAL_BATCH) } else { batch };
        let values = (t_max as f64 + 1.0) * tape_batch as f64 * (16.0 * h_max as f64 + input_size as f64)
            + 4.0 * (2.0 * h_max as f64).powi(2);
        let gib = values * 8.0 / (1u64 << 30) as f64;
        if gib > MAX_POINT_GIB {
            return Err(Error::Usage(format!(
                "keys `hidden`, `seq_len`, `batch`, `input_size`: one point (H = {h_max}, T = {t_max}, batch {}, \
                 {input_size} inputs) needs about {gib:.1} GiB, more than the {MAX_POINT_GIB} GiB a point may use",
                tape_batch
            )));
        }
        for (k, dup) in [
            ("cells", first_duplicate(&f.cells.iter().map(|c| c.to_string()).collect::<Vec<_>>())),
            ("inits", first_duplicate(&f.inits)),
            ("hidden", first_duplicate(&f.hidden)),
            ("seq_len", first_duplicate(&seq_len)),
            ("seeds", first_duplicate(&f.seeds)),
        ] {
            if let Some(v) = dup {
                return Err(key(k, format!("{v} is listed twice: every grid point would be run twice")));
            }
        }
        if f.out.as_ref().is_some_and(|o| o.as_os_str().is_empty()) {
            return Err(key("out", "must name a folder (empty: files would land in the working directory)".into()));
        }
        let smallest_state = f.cells.iter().map(|c| if c.has_cell_state() { 2 } else { 1 }).min().expect("non-empty")
            * *f.hidden.iter().min().expect("non-empty");
        if f.probes.lyapunov > smallest_state {
            return Err(key(
                "probes.lyapunov",
                format!(
                    "{} exponents asked, but the smallest state here has {smallest_state} dimensions",
                    f.probes.lyapunov
                ),
            ));
        }
        if f.probes.quantities.contains(&Quantity::Err) {
            return Err(key(
                "probes.quantities",
                "`err` is a vector, not a Jacobian product; allowed: dh, dc, dstate, dc_total".into(),
            ));
        }
        let shortest = *seq_len.iter().min().expect("checked non-empty");
        if f.probes.lyapunov > 0 && f.probes.lyapunov_burn_in >= shortest {
            return Err(key(
                "probes.lyapunov_burn_in",
                format!("{} must be shorter than every seq_len (shortest {shortest})", f.probes.lyapunov_burn_in),
            ));
        }
        let thr = f.probes.horizon_threshold;
        if !(thr > 0.0 && thr < 1.0) {
            return Err(key("probes.horizon_threshold", format!("{thr} must be in (0, 1)")));
        }
        let mut inits = Vec::with_capacity(f.inits.len());
        for label in &f.inits {
            let table = f.init.get(label).ok_or_else(|| {
                let known: Vec<&str> = f.init.keys().map(String::as_str).collect();
                key("inits", format!("`{label}` has no [init.{label}] table; defined: {}", known.join(", ")))
            })?;
            let schemes = |group: &str, list: &[String]| -> Result<Vec<Scheme>> {
                list.iter()
                    .map(|s| Scheme::parse(s).map_err(|e| key(&format!("init.{label}.{group}"), e.to_string())))
                    .collect()
            };
            let spec = InitSpec {
                recurrent: schemes("recurrent", &table.recurrent)?,
                input: schemes("input", &table.input)?,
                bias: schemes("bias", &table.bias)?,
                gate_bias: schemes("gate_bias", &table.gate_bias)?,
            };
            let named = NamedInit { label: label.clone(), cells: table.cells.clone(), spec };
            let cells: Vec<CellKind> = f.cells.iter().copied().filter(|&c| named.applies_to(c)).collect();
            if cells.is_empty() {
                return Err(key(&format!("init.{label}.cells"), "applies to none of the spec's `cells`".into()));
            }
            for c in cells {
                named.spec.validate(c, label).map_err(|e| key(&format!("init.{label}"), e.to_string()))?;
            }
            inits.push(named);
        }
        if let Some(unused) = f.init.keys().find(|label| !f.inits.contains(label)) {
            return Err(key(
                &format!("init.{unused}"),
                format!("is defined but not listed in `inits` ({}); list it or remove it", f.inits.join(", ")),
            ));
        }
        let out = f.out.clone().unwrap_or_else(|| PathBuf::from("results").join(&f.name));
        Ok(Spec {
            kind: f.kind,
            name: f.name,
            description: f.description,
            seed: f.seed,
            cells: f.cells,
            inits,
            hidden: f.hidden,
            seq_len,
            seeds: f.seeds,
            batch,
            input_size,
            input,
            probes: f.probes,
            out,
            train,
            text: text.to_string(),
        })
    }
}

/// The `[train]` table, validated: present exactly for the trainability experiment, which then
/// has no `seq_len`, `batch`, `input_size` or `input` of its own (its tasks set them) and probes
/// only the horizon.
fn train_spec(f: &SpecFile) -> Result<Option<TrainSpec>> {
    let key = |k: &str, why: String| Error::Usage(format!("key `{k}`: {why}"));
    let t = match (&f.train, f.kind) {
        (None, Kind::Trainability) => {
            return Err(key("train", "is missing: the trainability experiment's tasks, lags and updates".into()));
        }
        (None, _) => return Ok(None),
        (Some(_), kind) if kind != Kind::Trainability => {
            return Err(key("train", "is for the trainability experiment only".into()));
        }
        (Some(t), _) => t,
    };
    for (k, set) in [
        ("seq_len", !f.seq_len.is_empty()),
        ("batch", f.batch.is_some()),
        ("input_size", f.input_size.is_some()),
        ("input", f.input.is_some()),
    ] {
        if set {
            return Err(key(
                k,
                "does not apply to the trainability experiment: its tasks and lags set the inputs and \
                               lengths, [train] batch the batch"
                    .into(),
            ));
        }
    }
    let default = Probes::default();
    if f.probes.quantities != default.quantities
        || f.probes.lyapunov != default.lyapunov
        || f.probes.lyapunov_burn_in != 0
    {
        return Err(key(
            "probes",
            "the trainability experiment probes only the horizon of the headline product; set only \
             probes.horizon_threshold"
                .into(),
        ));
    }
    for (k, empty) in
        [("train.tasks", t.tasks.is_empty()), ("train.lags", t.lags.is_empty()), ("train.clips", t.clips.is_empty())]
    {
        if empty {
            return Err(key(k, "must list at least one value".into()));
        }
    }
    let names: Vec<&str> = t.tasks.iter().map(|k| k.name()).collect();
    for (k, dup) in [
        ("train.tasks", first_duplicate(&names)),
        ("train.lags", first_duplicate(&t.lags)),
        ("train.clips", first_duplicate(&t.clips)),
    ] {
        if let Some(v) = dup {
            return Err(key(k, format!("{v} is listed twice: every run would be trained twice")));
        }
    }
    for &kind in &t.tasks {
        let min = Task::min_lag(kind);
        if let Some(l) = t.lags.iter().find(|&&l| !(min..=MAX_LAG).contains(&l)) {
            return Err(key(
                "train.lags",
                format!("{l} is not in {min}..={MAX_LAG}, the lags of the {} task", kind.name()),
            ));
        }
    }
    if !(1..=MAX_UPDATES).contains(&t.steps) {
        return Err(key("train.steps", format!("{} is not in 1..={MAX_UPDATES}", t.steps)));
    }
    if !(1..=MAX_BATCH).contains(&t.batch) {
        return Err(key("train.batch", format!("{} is not in 1..={MAX_BATCH}", t.batch)));
    }
    if !(t.lr.is_finite() && t.lr > 0.0) {
        return Err(key("train.lr", format!("{} must be a positive number", t.lr)));
    }
    if let Some(c) = t.clips.iter().find(|c| c.is_nan() || **c <= 0.0) {
        return Err(key("train.clips", format!("{c} must be a positive threshold (inf: no clipping)")));
    }
    let probe_every = t.probe_every.unwrap_or((t.steps / 10).max(1));
    for (k, v) in [("train.probe_every", probe_every), ("train.log_every", t.log_every)] {
        if !(1..=t.steps).contains(&v) {
            return Err(key(k, format!("{v} is not in 1..={} (train.steps)", t.steps)));
        }
    }
    Ok(Some(TrainSpec {
        tasks: t.tasks.clone(),
        lags: t.lags.clone(),
        steps: t.steps,
        batch: t.batch,
        lr: t.lr,
        clips: t.clips.iter().map(|&c| c.is_finite().then_some(c)).collect(),
        precision: t.precision,
        probe_every,
        log_every: t.log_every,
    }))
}

fn parse_input(text: &str) -> std::result::Result<InputDist, String> {
    let allowed = "allowed: gaussian(sigma), uniform(a), zeros";
    let (name, arg) = parse_call(text).map_err(|e| format!("{e}; {allowed}"))?;
    match (name, arg) {
        ("gaussian", Some(s)) if s >= 0.0 => Ok(InputDist::Gaussian(s)),
        ("uniform", Some(a)) if a > 0.0 => Ok(InputDist::Uniform(a)),
        ("zeros", None) => Ok(InputDist::Zeros),
        _ => Err(format!("`{text}` is not an input distribution; {allowed}")),
    }
}

/// TOML errors span several lines (with a caret under the spot); keep them on one.
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '|' || c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
kind = "vanishing"
name = "tiny"
seed = 1
cells = ["rnn", "lstm"]
inits = ["default"]
hidden = [4]
seq_len = [5]
seeds = [0]
input_size = 2
[init.default]
"#;

    #[test]
    fn built_in_specs_parse() {
        for (name, _) in BUILT_IN {
            let s = Spec::built_in(name).unwrap();
            assert_eq!(s.name, name);
            assert_eq!(s.out, PathBuf::from("results").join(name));
        }
    }

    #[test]
    fn every_spec_file_in_experiments_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Spec::read(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n > BUILT_IN.len(), "{n} spec files");
    }

    #[test]
    fn minimal_spec_gets_defaults() {
        let s = Spec::parse(MINIMAL).unwrap();
        assert_eq!(s.batch, 1);
        assert_eq!(s.input, InputDist::Gaussian(1.0));
        assert_eq!(s.probes, Probes::default());
        assert_eq!(s.inits[0].spec, InitSpec::default());
    }

    fn err(text: &str) -> String {
        Spec::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_specs_name_the_key_and_the_allowed_values() {
        let e = err(&MINIMAL.replace("seed = 1", "seed = 1\nsede = 2"));
        assert!(e.contains("unknown field `sede`") && e.contains("seq_len"), "{e}");
        assert!(!e.contains('\n'));
        let e = err(&MINIMAL.replace(r#""lstm""#, r#""lsmt""#));
        assert!(e.contains("lsmt") && e.contains("rnn") && e.contains("gru"), "{e}");
        let e = err(&MINIMAL.replace(r#"inits = ["default"]"#, r#"inits = ["other"]"#));
        assert!(e.contains("key `inits`") && e.contains("[init.other]"), "{e}");
        let e = err(&MINIMAL.replace("[init.default]", "[init.default]\nrecurrent = [\"gausian(1)\"]"));
        assert!(
            e.contains("init.default.recurrent") && e.contains("gausian(1)") && e.contains("orthogonal(gain)"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("[init.default]", "[init.default]\ngate_bias = [\"forget-bias(1)\"]"));
        assert!(e.contains("init.default") && e.contains("not the rnn"), "{e}");
        let e = err(&MINIMAL.replace("seq_len = [5]", "seq_len = [1]"));
        assert!(e.contains("key `seq_len`"), "{e}");
        let e = err(&format!("{MINIMAL}\n[probes]\nquantities = [\"dh\", \"dq\"]"));
        assert!(e.contains("dq") && e.contains("dc_total"), "{e}");
        let e = err(&format!("{MINIMAL}\n[probes]\nlyapunov_burn_in = 5"));
        assert!(e.contains("probes.lyapunov_burn_in") && e.contains("shortest 5"), "{e}");
        let e = err(&MINIMAL.replace(r#"kind = "vanishing""#, r#"kind = "vanishng""#));
        assert!(e.contains("vanishng") && e.contains("edge-of-chaos"), "{e}");
        let e = err(&MINIMAL.replace("input_size = 2", "input_size = 2\ninput = \"laplace(1)\""));
        assert!(e.contains("key `input`") && e.contains("uniform(a)"), "{e}");
        let e = err(&MINIMAL.replace("hidden = [4]", "hidden = [-4]"));
        assert!(e.contains("hidden"), "{e}");
    }

    #[test]
    fn sizes_are_range_checked_before_anything_is_allocated() {
        let e = err(&MINIMAL.replace("seq_len = [5]", "seq_len = [18446744073709551615]"));
        assert!(e.contains("key `seq_len`") && e.contains("1000000"), "{e}");
        let e = err(&MINIMAL.replace("hidden = [4]", "hidden = [100000]"));
        assert!(e.contains("key `hidden`") && e.contains("4096"), "{e}");
        let e = err(&MINIMAL.replace("input_size = 2", "input_size = 1000000000"));
        assert!(e.contains("key `input_size`"), "{e}");
        let e = err(&MINIMAL.replace("seed = 1", "seed = 1\nbatch = 100000000"));
        assert!(e.contains("key `batch`"), "{e}");
        // Each size allowed, together too large for one point: named, with the estimate.
        let e = err(&MINIMAL.replace("hidden = [4]", "hidden = [4096]").replace("seq_len = [5]", "seq_len = [100000]"));
        assert!(e.contains("`seq_len`") && e.contains("GiB"), "{e}");
        assert!(!e.contains('\n'));
    }

    const TRAIN: &str = r#"
kind = "trainability"
name = "t"
seed = 1
cells = ["rnn", "lstm"]
inits = ["default"]
hidden = [4]
seeds = [0, 1]
[train]
tasks = ["copy", "adding"]
lags = [2, 30]
steps = 10
[init.default]
"#;

    #[test]
    fn a_train_table_sets_the_lengths_and_its_mistakes_are_named() {
        let s = Spec::parse(TRAIN).unwrap();
        let t = s.train.as_ref().unwrap();
        // copy: T = L + 20, adding: T = L; defaults as documented.
        assert_eq!(s.seq_len, vec![2, 22, 30, 50]);
        assert_eq!((s.batch, s.input_size), (32, 10));
        assert_eq!((t.lr, t.clips.clone(), t.probe_every, t.log_every), (0.01, vec![Some(1.0)], 1, 10));
        assert_eq!(t.precision, Precision::F32);
        let s =
            Spec::parse(&TRAIN.replace("steps = 10", "steps = 10\nclips = [inf, 0.5]\nprecision = \"f64\"")).unwrap();
        assert_eq!(s.train.as_ref().unwrap().clips, vec![None, Some(0.5)]);
        for (edit, named) in [
            (("lags = [2, 30]", "lags = [1, 30]"), "1 is not in 2..=100000, the lags of the adding task"),
            (("steps = 10", "steps = 0"), "key `train.steps`"),
            (("steps = 10", "steps = 10\nclips = [0.0]"), "key `train.clips`"),
            (("steps = 10", "steps = 10\nclips = [1.0, 1.0]"), "key `train.clips`: 1 is listed twice"),
            (("steps = 10", "steps = 10\nlr = nan"), "key `train.lr`"),
            (("steps = 10", "steps = 10\nprobe_every = 11"), "key `train.probe_every`: 11 is not in 1..=10"),
            (("tasks = [\"copy\", \"adding\"]", "tasks = [\"copy\", \"copy\"]"), "key `train.tasks`"),
            (("seeds = [0, 1]", "seeds = [0, 1]\nseq_len = [5]"), "key `seq_len`: does not apply"),
            (("seeds = [0, 1]", "seeds = [0, 1]\ninput_size = 3"), "key `input_size`: does not apply"),
            (("[init.default]", "[probes]\nlyapunov = 2\n[init.default]"), "key `probes`"),
            (("[train]", "[trian]"), "unknown field `trian`"),
            (("lags = [2, 30]", "lags = [2, 30]\nseq_len = [3]"), "unknown field `seq_len`"),
        ] {
            let e = err(&TRAIN.replace(edit.0, edit.1));
            assert!(e.contains(named), "{edit:?}: {e}");
        }
        // A missing table, a table on another kind, and a training run too large for one point.
        let e = err(&TRAIN.replace("[train]\ntasks = [\"copy\", \"adding\"]\nlags = [2, 30]\nsteps = 10\n", ""));
        assert!(e.contains("key `train`: is missing"), "{e}");
        let e =
            err(&MINIMAL
                .replace("[init.default]", "[train]\ntasks = [\"copy\"]\nlags = [2]\nsteps = 1\n[init.default]"));
        assert!(e.contains("key `train`: is for the trainability experiment only"), "{e}");
        let e = err(&TRAIN.replace("hidden = [4]", "hidden = [4096]").replace("lags = [2, 30]", "lags = [2, 3000]"));
        assert!(e.contains("GiB") && e.contains("batch 256"), "{e}");
    }

    #[test]
    fn silent_surprises_are_errors() {
        let e = err(&MINIMAL.replace("seeds = [0]", "seeds = [0, 1, 0]"));
        assert!(e.contains("key `seeds`") && e.contains("0 is listed twice"), "{e}");
        let e = err(&MINIMAL.replace("hidden = [4]", "hidden = [4, 4]"));
        assert!(e.contains("key `hidden`"), "{e}");
        let e = err(&format!("{MINIMAL}[init.spare]\n"));
        assert!(e.contains("key `init.spare`") && e.contains("not listed in `inits`"), "{e}");
        let e = err(&MINIMAL.replace("seed = 1", "seed = 1\nout = \"\""));
        assert!(e.contains("key `out`"), "{e}");
        // The RNN's state has H = 4 dimensions: 5 exponents cannot be had.
        let e =
            err(&format!("{MINIMAL}[probes]\nlyapunov = 5\n")
                .replace(r#"cells = ["rnn", "lstm"]"#, r#"cells = ["rnn"]"#));
        assert!(e.contains("key `probes.lyapunov`") && e.contains("4 dimensions"), "{e}");
    }
}
