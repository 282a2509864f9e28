//! `trainability`: does the gradient horizon measured before training predict what a cell learns?
//! Every point trains one model (THEORY.md §9) on one task at one lag with one clipping threshold
//! from its own seed, and records its learning curve, whether it solved the task (held-out loss
//! below a tenth of the memoryless baseline), how many updates that took, and the horizon of the
//! cell's headline Jacobian product on a held-out sequence, at initialisation, during training and
//! after it.
//!
//! The claim under test is the folk one: a cell learns a dependency over d steps only if its
//! gradient reaches that far at initialisation (horizon ≥ d, d the task's longest dependency,
//! `Task::dependency`). Each (cell, init, task, clip) is a case: it holds where the lags the
//! horizon predicts learnable are exactly the lags learned (by at least half the seeds).

use super::charts::{censored_median, median_all};
use super::findings::{Claim, Finding};
use super::grid::Point;
use super::runner::{CurvesAndSummary, Experiment, Products};
use super::spec::{Spec, TrainSpec};
use crate::cell::CellKind;
use crate::error::{Error, Result};
use crate::estimate::spearman;
use crate::output::plot::{Dash, Figure, Panel, RefLine, Scale, Series, style};
use crate::scalar::Precision;
use crate::train::optim::AdamConfig;
use crate::train::tasks::{Task, TaskKind};
use crate::train::trainer::{LogRow, SOLVED_FRACTION, TrainConfig, train};
use plotters::prelude::SeriesLabelPosition;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Updates over which the training loss is averaged to say when a run solved its task.
const SOLVE_WINDOW: usize = 10;

/// The run a row belongs to: the leading columns of both tables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunKey {
    pub cell: CellKind,
    pub init: String,
    pub hidden: usize,
    pub task: TaskKind,
    pub lag: usize,
    pub seed: u64,
    /// Global-norm clipping threshold; empty: unclipped.
    pub clip: Option<f64>,
}

impl RunKey {
    fn task(&self) -> Task {
        Task { kind: self.task, lag: self.lag }
    }
}

/// Per run: `summary.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Held-out loss below a tenth of the baseline.
    pub solved: bool,
    /// The first update at which the training loss, averaged over the last 10 updates, was below
    /// a tenth of the baseline (solved runs only).
    pub steps_to_solve: Option<usize>,
    /// The loss on 256 held-out sequences after the last update.
    pub final_loss: f64,
    /// The loss of a memoryless model (THEORY.md §9).
    pub baseline: f64,
    /// The horizon on the held-out sequence before training; empty: the norm never stays below
    /// the threshold within the sequence.
    pub horizon_init: Option<usize>,
    /// Likewise after the last update.
    pub horizon_trained: Option<usize>,
}

/// What the experiment measures: `curves.csv` (the logged updates) and `summary.csv`.
pub type Measured = CurvesAndSummary<LogRow, SummaryRow, RunKey>;

pub struct Trainability<'a> {
    spec: &'a Spec,
    train: &'a TrainSpec,
}

impl<'a> Trainability<'a> {
    pub fn new(spec: &'a Spec) -> Result<Self> {
        let train = spec
            .train
            .as_ref()
            .ok_or_else(|| Error::Usage("key `train`: the trainability experiment needs a [train] table".into()))?;
        Ok(Trainability { spec, train })
    }

    fn key(&self, p: &Point) -> RunKey {
        let run = p.train.expect("a trainability point carries its run");
        RunKey {
            cell: p.cell,
            init: self.spec.inits[p.init].label.clone(),
            hidden: p.hidden,
            task: run.task.kind,
            lag: run.task.lag,
            seed: p.seed,
            clip: run.clip,
        }
    }
}

impl Experiment for Trainability<'_> {
    type Measured = Measured;

    fn tables(&self) -> Vec<&'static str> {
        vec!["curves.csv", "summary.csv"]
    }

    fn charts(&self) -> Vec<&'static str> {
        vec!["solved", "learning", "horizon"]
    }

    /// The point's stream gives the run's seed: the same (cell, init, hidden, seed) starts every
    /// lag and clip of a task from the same model and trains it on the same stream of batches.
    fn measure(&self, p: &Point, rng: &mut ChaCha8Rng) -> Result<Measured> {
        let key = self.key(p);
        let t = self.train;
        let config = TrainConfig {
            task: key.task(),
            cell: p.cell,
            init: self.spec.inits[p.init].spec.clone(),
            hidden: p.hidden,
            batch: t.batch,
            steps: t.steps,
            adam: AdamConfig { lr: t.lr, ..AdamConfig::default() },
            clip: key.clip,
            seed: rng.next_u64(),
            probe_every: t.probe_every,
            threshold: self.spec.probes.horizon_threshold,
        };
        let run = match t.precision {
            Precision::F32 => train::<f32>(&config, |_| {}),
            Precision::F64 => train::<f64>(&config, |_| {}),
        };
        let task = config.task;
        let summary = SummaryRow {
            solved: run.solved(task),
            steps_to_solve: run.solved(task).then(|| run.steps_to_solve(task, SOLVE_WINDOW)).flatten(),
            final_loss: run.eval_loss,
            baseline: task.baseline(),
            horizon_init: run.log.first().and_then(|r| r.horizon),
            horizon_trained: run.log.last().and_then(|r| r.horizon),
        };
        let curves =
            run.log.into_iter().filter(|r| r.probed || r.step % t.log_every == 0).map(|r| (key.clone(), r)).collect();
        Ok(Measured { curves, summary: vec![(key, summary)] })
    }

    /// An update costs T steps of the state's products over the batch.
    fn cost(&self, p: &Point) -> f64 {
        let n = if p.cell.has_cell_state() { 2 * p.hidden } else { p.hidden } as f64;
        (self.train.steps * self.train.batch * p.seq_len) as f64 * n * n
    }

    fn append(all: &mut Measured, one: Measured) {
        all.append(one);
    }

    fn finish(&self, all: &Measured) -> Result<Products> {
        all.products(self.summary(all))
    }

    fn figures(&self, all: &Measured) -> Vec<(&'static str, Figure)> {
        vec![
            ("solved", self.solved_figure(all)),
            ("learning", self.learning_figure(all)),
            ("horizon", self.horizon_figure(all)),
        ]
    }

    fn read(&self, dir: &Path) -> Result<Measured> {
        CurvesAndSummary::read(dir)
    }
}

/// A (cell, init, hidden, task, clip): one line of the table, one case of the finding.
#[derive(Clone, Debug, PartialEq)]
struct Case<'a> {
    cell: CellKind,
    init: &'a str,
    hidden: usize,
    task: TaskKind,
    clip: Option<f64>,
}

impl Case<'_> {
    fn has(&self, k: &RunKey) -> bool {
        k.cell == self.cell
            && k.init == self.init
            && k.hidden == self.hidden
            && k.task == self.task
            && k.clip == self.clip
    }

    fn label(&self, clips: usize, hiddens: usize) -> String {
        let mut s = format!("{} {}", self.cell, self.init);
        if hiddens > 1 {
            let _ = write!(s, " H = {}", self.hidden);
        }
        if clips > 1 {
            let _ = write!(s, ", clip {}", clip_text(self.clip));
        }
        s
    }
}

/// A line drawn under a later one with the same points is hidden: its label names the topmost.
fn mark_covered(series: &mut [Series]) {
    for i in 0..series.len() {
        let covered_by = |j: &usize| !series[*j].label.is_empty() && series[*j].points == series[i].points;
        if series[i].label.is_empty() {
            continue;
        }
        if let Some(top) = (i + 1..series.len()).rev().find(covered_by) {
            let name = series[top].label.split(" (").next().unwrap_or_default().to_string();
            series[i].label = series[i].label.replacen(" (", &format!(" (under {name}; "), 1);
        }
    }
}

fn clip_text(c: Option<f64>) -> String {
    c.map_or("none".into(), |c| c.to_string())
}

/// What one case's runs say, per lag and overall.
struct Outcome {
    /// Per lag (spec order): (solved runs, runs).
    solved: Vec<(usize, usize)>,
    /// Per lag: the median held-out loss over the baseline.
    loss_ratio: Vec<f64>,
    /// The longest lag at least half the seeds solved.
    longest: Option<usize>,
    /// The censored median horizon at initialisation at the longest lag (`None`: beyond its
    /// sequence).
    horizon_init: Option<f64>,
    /// Likewise after training.
    horizon_trained: Option<f64>,
    /// The length T of the longest lag's sequences.
    steps: usize,
}

impl Outcome {
    /// Whether lag `i` counts as learned.
    fn learned(&self, i: usize) -> bool {
        let (k, n) = self.solved[i];
        n > 0 && 2 * k >= n
    }

    /// Whether the horizon at initialisation predicts `task` learnable: its longest dependency
    /// lies within the horizon, or the horizon lies beyond the sequence.
    fn predicts(&self, task: Task) -> bool {
        self.horizon_init.is_none_or(|h| task.dependency() as f64 <= h)
    }
}

impl Trainability<'_> {
    fn cases<'b>(&'b self, task: TaskKind) -> Vec<Case<'b>> {
        let mut out = Vec::new();
        for (cell, init) in self.spec.pairs() {
            for &hidden in &self.spec.hidden {
                for &clip in &self.train.clips {
                    out.push(Case { cell, init, hidden, task, clip });
                }
            }
        }
        out
    }

    fn outcome(&self, all: &Measured, case: &Case) -> Outcome {
        let lags = &self.train.lags;
        let at = |lag: usize| all.summary.iter().filter(move |(k, _)| case.has(k) && k.lag == lag).map(|(_, r)| r);
        let solved = lags.iter().map(|&lag| (at(lag).filter(|r| r.solved).count(), at(lag).count())).collect();
        let loss_ratio = lags
            .iter()
            .map(|&lag| median_all(&at(lag).map(|r| r.final_loss / r.baseline).collect::<Vec<_>>()))
            .collect();
        let last = *lags.iter().max().expect("validated non-empty");
        let at_last: Vec<&SummaryRow> =
            all.summary.iter().filter(|(k, _)| case.has(k) && k.lag == last).map(|(_, r)| r).collect();
        let h = |f: fn(&SummaryRow) -> Option<usize>| {
            censored_median(&at_last.iter().map(|r| f(r).map(|h| h as f64)).collect::<Vec<_>>())
        };
        let mut o = Outcome {
            solved,
            loss_ratio,
            longest: None,
            horizon_init: h(|r| r.horizon_init),
            horizon_trained: h(|r| r.horizon_trained),
            steps: Task { kind: case.task, lag: last }.steps(),
        };
        o.longest = lags.iter().enumerate().filter(|&(i, _)| o.learned(i)).map(|(_, &l)| l).max();
        o
    }

    fn summary(&self, all: &Measured) -> (String, Vec<Finding>, Vec<String>) {
        let (spec, t) = (self.spec, self.train);
        let (clips, hiddens) = (t.clips.len(), spec.hidden.len());
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Runs that solved each lag (held-out loss below {SOLVED_FRACTION} of the memoryless baseline after {} Adam \
             updates of batch {}, lr {}, {}; in brackets the median held-out loss over the baseline), the longest lag learned (by at least half of the {} seeds), and the median \
             horizon of the headline Jacobian product (threshold {:e}) on a held-out sequence of the longest lag, before \
             and after training (\"> T\": never below the threshold within the sequence):\n",
            t.steps,
            t.batch,
            t.lr,
            match t.precision {
                Precision::F32 => "f32",
                Precision::F64 => "f64",
            },
            spec.seeds.len(),
            spec.probes.horizon_threshold
        );
        let lag_cols: String = t.lags.iter().map(|l| format!(" lag {l} |")).collect();
        let _ = writeln!(
            s,
            "| cell | init | H | task | clip |{lag_cols} longest lag learned | its dependency | horizon at init | horizon trained |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|{}---|---|---|---|", "---|".repeat(t.lags.len()));
        let (mut holds, mut fails, mut untested, mut notes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let horizon_text = |h: Option<f64>, steps: usize| h.map_or(format!("> {steps}"), |h| format!("{h:.0}"));
        for &kind in &t.tasks {
            let mut pairs = Vec::new(); // (horizon at init, longest lag learned) per case, by clip and H
            let mut solved_none = Vec::new();
            for case in self.cases(kind) {
                let o = self.outcome(all, &case);
                let counts: String =
                    o.solved.iter().zip(&o.loss_ratio).map(|((k, n), r)| format!(" {k}/{n} ({r:.2}) |")).collect();
                let longest = o.longest.map_or("none".to_string(), |l| l.to_string());
                let dependency = o.longest.map_or("—".to_string(), |lag| Task { kind, lag }.dependency().to_string());
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |{counts} {longest} | {dependency} | {} | {} |",
                    case.cell,
                    case.init,
                    case.hidden,
                    kind.name(),
                    clip_text(case.clip),
                    horizon_text(o.horizon_init, o.steps),
                    horizon_text(o.horizon_trained, o.steps),
                );
                // The case against the claim: which lags the horizon predicts, which were learned.
                let tasks: Vec<Task> = t.lags.iter().map(|&lag| Task { kind, lag }).collect();
                let predicted: Vec<usize> =
                    tasks.iter().filter(|task| o.predicts(**task)).map(|task| task.lag).collect();
                let learned: Vec<usize> =
                    tasks.iter().enumerate().filter(|&(i, _)| o.learned(i)).map(|(_, task)| task.lag).collect();
                let range = |v: &[usize]| match (v.first(), v.last()) {
                    (Some(a), Some(b)) if v.len() == 1 || a == b => format!("lag {a}"),
                    (Some(a), Some(b)) => format!("lags {a}–{b}"),
                    _ => "no lag".to_string(),
                };
                let item = format!(
                    "{} {} (horizon {} predicts {}, learned {})",
                    case.label(clips, hiddens),
                    kind.name(),
                    horizon_text(o.horizon_init, o.steps),
                    range(&predicted),
                    range(&learned)
                );
                // A case that learned no lag at all says nothing about the horizon: its budget did.
                if learned.is_empty() {
                    untested.push(item);
                } else if predicted == learned {
                    holds.push(item)
                } else {
                    fails.push(item)
                }
                let horizon = o.horizon_init.unwrap_or(f64::INFINITY);
                pairs.push(((case.hidden, case.clip.map(f64::to_bits)), horizon, o.longest.unwrap_or(0) as f64));
                if o.solved.iter().all(|&(k, _)| k == 0) {
                    solved_none.push(case.label(clips, hiddens));
                }
            }
            if !solved_none.is_empty() {
                notes.push(format!(
                    "no run solved the {} task at any lag, the shortest ({}) included, for {}: the update budget ({}), \
                     not the lag, limits {} here; `experiments/trainability-long.toml` trains longer",
                    kind.name(),
                    t.lags.iter().min().expect("non-empty"),
                    solved_none.join(", "),
                    t.steps,
                    if solved_none.len() == 1 { "it" } else { "them" }
                ));
            }
            // Rank correlation across (cell, init) at each (H, clip).
            // (H, clip bits) → (horizon at init, longest lag learned) per (cell, init).
            type Group = (usize, Option<u64>);
            let mut groups: BTreeMap<Group, Vec<(f64, f64)>> = BTreeMap::new();
            for (g, h, l) in pairs {
                groups.entry(g).or_default().push((h, l));
            }
            for ((hidden, clip), hl) in groups {
                let (h, l): (Vec<f64>, Vec<f64>) = hl.into_iter().unzip();
                let rho = spearman(&h, &l)
                    .map_or("undefined (fewer than 3 cases, or all equal)".into(), |r| format!("{r:+.2}"));
                notes.push(format!(
                    "{} task, H = {hidden}, clip {}: Spearman's rank correlation between the horizon at initialisation \
                     and the longest lag learned, over {} (cell, init): ρ = {rho}",
                    kind.name(),
                    clip_text(clip.map(f64::from_bits)),
                    h.len()
                ));
            }
        }
        let mut sentence = format!(
            "per (cell, init{}, task): whether the lags learned (solved by at least half the seeds) are exactly those \
             whose longest dependency lies within the gradient horizon measured before training (threshold {:e})",
            if clips > 1 { ", clip" } else { "" },
            spec.probes.horizon_threshold
        );
        if !untested.is_empty() {
            let _ = write!(
                sentence,
                "; cases that learned no lag are left out, as the update budget and not the horizon decided them: {}",
                untested.join("; ")
            );
        }
        (s, vec![Finding::new(Claim::HorizonPredicts, holds, fails, sentence)], notes)
    }

    /// The figures' panels: one per (task, H, clip), each with a line per (cell, init).
    fn panel_cases(&self) -> Vec<(String, Vec<Case<'_>>)> {
        let (clips, hiddens) = (self.train.clips.len(), self.spec.hidden.len());
        let mut out = Vec::new();
        for &task in &self.train.tasks {
            for &hidden in &self.spec.hidden {
                for &clip in &self.train.clips {
                    let mut title = format!("{} task", task.name());
                    if hiddens > 1 {
                        let _ = write!(title, ", H = {hidden}");
                    }
                    if clips > 1 {
                        let _ = write!(title, ", clip {}", clip_text(clip));
                    }
                    let cases = self.cases(task).into_iter().filter(|c| c.hidden == hidden && c.clip == clip).collect();
                    out.push((title, cases));
                }
            }
        }
        out
    }

    /// The lag a panel's learning curves are drawn at: the longest any of its cases learned
    /// (where the cases part), else the shortest.
    fn shown_lag(&self, all: &Measured, cases: &[Case]) -> usize {
        cases
            .iter()
            .filter_map(|c| self.outcome(all, c).longest)
            .max()
            .unwrap_or_else(|| *self.train.lags.iter().min().expect("non-empty"))
    }

    /// One line per case at `lag`: the median over seeds of `value` at every logged update.
    fn case_series(
        &self,
        all: &Measured,
        cases: &[Case],
        lag: usize,
        value: impl Fn(&LogRow) -> Option<f64>,
    ) -> Vec<Series> {
        cases
            .iter()
            .enumerate()
            .map(|(i, case)| {
                let mut by_step: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
                for (k, r) in &all.curves {
                    if case.has(k)
                        && k.lag == lag
                        && let Some(v) = value(r)
                    {
                        by_step.entry(r.step).or_default().push(v);
                    }
                }
                let points = by_step.into_iter().map(|(s, v)| (s as f64, median_all(&v))).collect();
                let (color, dash) = style(i);
                Series { dash, ..Series::line(format!("{} {}", case.cell, case.init), color, points) }
            })
            .collect()
    }

    /// Per panel: the fraction of seeds that solved each lag, one line per case, and a dashed
    /// vertical segment at the lag whose longest dependency equals the case's horizon at init.
    fn solved_figure(&self, all: &Measured) -> Figure {
        let lags = &self.train.lags;
        let panels = self
            .panel_cases()
            .into_iter()
            .map(|(title, cases)| {
                let mut series = Vec::new();
                for (i, case) in cases.iter().enumerate() {
                    let o = self.outcome(all, case);
                    let (color, dash) = style(i);
                    let points = lags
                        .iter()
                        .zip(&o.solved)
                        .filter(|(_, (_, n))| *n > 0)
                        .map(|(&l, &(k, n))| (l as f64, k as f64 / n as f64))
                        .collect();
                    let marked = o.horizon_init.map(|h| Task::lag_for_dependency(case.task, h));
                    let horizon = match (o.horizon_init, marked) {
                        (Some(h), Some(l)) if l >= 1.0 => format!("horizon {h:.0}: lag {l:.0}"),
                        (Some(h), _) => format!("horizon {h:.0}, below every lag"),
                        (None, _) => format!("horizon > {}", o.steps),
                    };
                    let label = format!("{} {} ({horizon})", case.cell, case.init);
                    series.push(Series { dash, markers: true, ..Series::line(label, color, points) });
                    if let Some(l) = marked.filter(|&l| l >= 1.0) {
                        let at = |y| (l, y);
                        series.push(Series { dash: Dash::Dashed, ..Series::line("", color, vec![at(0.0), at(1.0)]) });
                    }
                }
                mark_covered(&mut series);
                Panel::new(title, series)
            })
            .collect();
        Figure {
            panels,
            x_scale: Scale::Log,
            x_ticks: Some(lags.iter().map(|&l| l as f64).collect()),
            legend: SeriesLabelPosition::LowerLeft,
            legend_room: 0.9,
            shared_y: true,
            ..Figure::new(
                format!(
                    "Lags learned: share of {} seeds solving after {} updates; dashed: the lag the horizon at init spans",
                    self.spec.seeds.len(),
                    self.train.steps
                ),
                "lag L (steps)",
                "fraction of seeds that solved",
            )
        }
    }

    /// Per panel: training loss over the baseline against updates at [`Self::shown_lag`], median
    /// over seeds, log scale.
    fn learning_figure(&self, all: &Measured) -> Figure {
        let panels = self
            .panel_cases()
            .into_iter()
            .map(|(title, cases)| {
                let lag = self.shown_lag(all, &cases);
                let baseline = Task { kind: cases[0].task, lag }.baseline();
                let series = self.case_series(all, &cases, lag, |r| Some(r.loss / baseline));
                Panel::new(format!("{title}, lag {lag}"), series)
            })
            .collect();
        Figure {
            panels,
            y_scale: Scale::Log,
            legend: SeriesLabelPosition::LowerLeft,
            legend_room: 0.6,
            hlines: vec![
                RefLine { at: 1.0, label: "memoryless baseline".into() },
                RefLine { at: SOLVED_FRACTION, label: "solved".into() },
            ],
            ..Figure::new(
                format!("Learning curves: training loss, median of {} seeds", self.spec.seeds.len()),
                "Adam update",
                "loss / memoryless baseline",
            )
        }
    }

    /// Per panel: the horizon on the held-out sequence at every probe during training, at
    /// [`Self::shown_lag`], median over seeds (a horizon beyond the sequence drawn at T).
    fn horizon_figure(&self, all: &Measured) -> Figure {
        let panels = self
            .panel_cases()
            .into_iter()
            .map(|(title, cases)| {
                let task = Task { kind: cases[0].task, lag: self.shown_lag(all, &cases) };
                let steps = task.steps() as f64;
                let series = self
                    .case_series(all, &cases, task.lag, |r| r.probed.then(|| r.horizon.map_or(steps, |h| h as f64)));
                let series = series
                    .into_iter()
                    .map(|s| Series { markers: true, ..s })
                    .chain(std::iter::once(Series {
                        dash: Dash::Dotted,
                        ..Series::line(
                            format!("longest dependency ({})", task.dependency()),
                            plotters::style::RGBColor(90, 90, 90),
                            vec![(0.0, task.dependency() as f64), (self.train.steps as f64, task.dependency() as f64)],
                        )
                    }))
                    .collect();
                Panel::new(format!("{title}, lag {} (T = {}; at T: beyond it)", task.lag, task.steps()), series)
            })
            .collect();
        Figure {
            panels,
            shared_y: false,
            legend: SeriesLabelPosition::LowerLeft,
            legend_room: 0.8,
            ..Figure::new(
                format!(
                    "Horizon during training: distance at which the gradient norm falls below {:e} for good, median of {} seeds",
                    self.spec.probes.horizon_threshold,
                    self.spec.seeds.len()
                ),
                "Adam update",
                "horizon (steps)",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::findings::Verdict;

    const SPEC: &str = r#"
kind = "trainability"
name = "t"
seed = 1
cells = ["rnn"]
inits = ["a", "b"]
hidden = [4]
seeds = [0, 1]
[train]
tasks = ["adding"]
lags = [5, 10, 20]
steps = 10
[init.a]
[init.b]
"#;

    /// Rows for init `init`: seed s solves lag L when `solves(L, s)`; horizon at init `h`.
    fn rows(init: &str, h: Option<usize>, solves: impl Fn(usize, u64) -> bool) -> Vec<(RunKey, SummaryRow)> {
        let mut out = Vec::new();
        for lag in [5, 10, 20] {
            for seed in [0, 1] {
                let key = RunKey {
                    cell: CellKind::Rnn,
                    init: init.into(),
                    hidden: 4,
                    task: TaskKind::Adding,
                    lag,
                    seed,
                    clip: Some(1.0),
                };
                let solved = solves(lag, seed);
                let row = SummaryRow {
                    solved,
                    steps_to_solve: solved.then_some(5),
                    final_loss: if solved { 0.001 } else { 0.17 },
                    baseline: 1.0 / 6.0,
                    horizon_init: h,
                    horizon_trained: None,
                };
                out.push((key, row));
            }
        }
        out
    }

    #[test]
    fn the_verdict_follows_from_the_lags_learned_and_the_horizon() {
        let spec = Spec::parse(SPEC).unwrap();
        let exp = Trainability::new(&spec).unwrap();
        // a: horizon 15 spans the dependencies of lags 5 and 10 (4, 9), not 20 (19); it learns
        // exactly 5 and 10 (lag 20 by one seed of two: half counts as learned, so none here).
        let a = rows("a", Some(15), |lag, seed| lag <= 10 || (lag == 20 && seed == 5));
        // b: the same horizon, and it learns lag 20 too.
        let b = rows("b", Some(15), |_, _| true);
        let all = Measured { curves: vec![], summary: a.iter().chain(&b).cloned().collect() };
        let (table, findings, notes) = exp.summary(&all);
        assert!(
            table.contains("| rnn | a | 4 | adding | 1 | 2/2 (0.01) | 2/2 (0.01) | 0/2 (1.02) | 10 | 9 | 15 | > 20 |"),
            "{table}"
        );
        assert!(
            table.contains("| rnn | b | 4 | adding | 1 | 2/2 (0.01) | 2/2 (0.01) | 2/2 (0.01) | 20 | 19 | 15 | > 20 |"),
            "{table}"
        );
        let f = &findings[0];
        assert_eq!(f.verdict, Verdict::HoldsOnlyWhen);
        assert!(f.holds.contains("rnn a adding (horizon 15 predicts lags 5–10, learned lags 5–10)"), "{f:?}");
        assert!(f.fails.contains("rnn b adding (horizon 15 predicts lags 5–10, learned lags 5–20)"), "{f:?}");
        // One case per "; "-separated item, as the report reads them.
        assert_eq!((f.holds.split("; ").count(), f.fails.split("; ").count()), (1, 1), "{f:?}");
        // Equal horizons: no rank correlation.
        assert!(notes.iter().any(|n| n.contains("ρ = undefined")), "{notes:?}");
        // b learning only lags 5 and 10 flips the verdict to holds; a case that learns no lag (a
        // horizon beyond the sequence predicts every lag) is left out of the verdict, named in the
        // sentence and in a note on the budget; with no case left, the claim is untested.
        let b = rows("b", Some(15), |lag, _| lag <= 10);
        let all = Measured { curves: vec![], summary: a.iter().chain(&b).cloned().collect() };
        assert_eq!(exp.summary(&all).1[0].verdict, Verdict::Holds);
        let a = rows("a", None, |_, _| false);
        let all = Measured { curves: vec![], summary: a.iter().chain(&b).cloned().collect() };
        let (table, findings, notes) = exp.summary(&all);
        assert!(
            table.contains("| rnn | a | 4 | adding | 1 | 0/2 (1.02) | 0/2 (1.02) | 0/2 (1.02) | none | — | > 20 |"),
            "{table}"
        );
        assert_eq!(findings[0].verdict, Verdict::Holds);
        assert!(
            findings[0].sentence.contains("left out") && findings[0].sentence.contains("rnn a adding (horizon > 20")
        );
        let b = rows("b", Some(15), |_, _| false);
        let none = Measured { curves: vec![], summary: a.iter().chain(&b).cloned().collect() };
        assert_eq!(exp.summary(&none).1[0].verdict, Verdict::Untested);
        assert!(
            notes
                .iter()
                .any(|n| n.contains("no run solved the adding task at any lag, the shortest (5) included, for rnn a:")),
            "{notes:?}"
        );
        // Two cases with the same solved fractions: the label of the line drawn over says so.
        let twins = Measured {
            curves: vec![],
            summary: rows("a", Some(15), |lag, _| lag <= 10)
                .into_iter()
                .chain(rows("b", Some(15), |lag, _| lag <= 10))
                .collect(),
        };
        let labels: Vec<String> = exp.solved_figure(&twins).panels[0].series.iter().map(|s| s.label.clone()).collect();
        assert_eq!(
            labels,
            ["rnn a (under rnn b; horizon 15: lag 16)", "", "rnn b (horizon 15: lag 16)", ""],
            "{labels:?}"
        );
        // Horizons 15 (b) and beyond (a) against longest lags 10 (b) and none (a): ρ undefined
        // with two cases; the note says how many.
        assert!(notes.iter().any(|n| n.contains("over 2 (cell, init)")), "{notes:?}");
    }
}
