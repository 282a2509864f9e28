//! `gradlab report`: every built-in experiment, one readable report. Each experiment's folder is
//! reused when its `spec.toml` is the spec byte for byte and its summary, findings and run record
//! are there (the run would reproduce them); otherwise the experiment runs. `REPORT.md` then opens
//! with the claims and their verdicts, has a section per experiment (its question, charts, table
//! and findings, all read from the folder) and ends with what is needed to reproduce it.

use crate::error::{Error, Result};
use crate::experiment::findings::{Finding, Verdict};
use crate::experiment::runner::{RunOptions, RunRecord};
use crate::experiment::spec::Spec;
use crate::experiment::{self, grid::fnv1a};
use crate::tensors::write_atomic;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The first line of every report, by which a report may replace an earlier one.
const TITLE: &str = "# gradlab report";

/// One experiment's part of the report, read from its folder.
struct Section {
    spec: Spec,
    dir: PathBuf,
    charts: Vec<&'static str>,
    summary: String,
    findings: Vec<Finding>,
    run: RunRecord,
    reused: bool,
}

/// Runs (or reuses) every spec into `root/<name>/` and writes `root/REPORT.md`; returns what to
/// print.
pub fn build(specs: &[Spec], root: &Path, opts: &RunOptions, command: &str) -> Result<String> {
    let report = root.join("REPORT.md");
    if !opts.force
        && let Ok(text) = std::fs::read_to_string(&report)
        && !text.starts_with(TITLE)
    {
        return Err(Error::Usage(format!(
            "{}: exists and is not a gradlab report; pass --force to overwrite, or choose --out",
            report.display()
        )));
    }
    let start = Instant::now();
    let mut sections = Vec::new();
    let mut printed = String::new();
    for spec in specs {
        let dir = root.join(&spec.name);
        let charts = experiment::charts(spec)?;
        // A folder of this very spec whose outputs all read back is a finished run of it.
        let s = match reusable(&dir, spec, &charts).then(|| read_section(spec, &dir, &charts, true).ok()).flatten() {
            Some(s) => s,
            None => {
                let o = RunOptions { out: Some(dir.clone()), ..opts.clone() };
                experiment::run(spec, &o)?;
                read_section(spec, &dir, &charts, false)?
            }
        };
        let reused = s.reused;
        let _ = writeln!(
            printed,
            "{:<14} {} ({} points in {} s on {} threads)",
            spec.name,
            if reused { "reused" } else { "ran" },
            s.run.points,
            s.run.seconds,
            s.run.threads
        );
        sections.push(s);
    }
    let text = render(&sections, command, start.elapsed().as_secs_f64());
    write_atomic(&report, text.as_bytes(), true)?;
    let _ = write!(printed, "wrote {}", report.display());
    Ok(printed)
}

/// Whether `dir` holds a finished run of `spec`.
fn reusable(dir: &Path, spec: &Spec, charts: &[&str]) -> bool {
    let same = std::fs::read_to_string(dir.join("spec.toml")).is_ok_and(|t| t == spec.text);
    same && ["summary.md", "table.csv", "findings.csv", "run.toml"].iter().all(|f| dir.join(f).is_file())
        && charts.iter().all(|c| dir.join(format!("{c}.png")).is_file())
}

fn read_section(spec: &Spec, dir: &Path, charts: &[&'static str], reused: bool) -> Result<Section> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(|source| Error::Io { path: p, source })
    };
    let summary = read("summary.md")?;
    let bad = |name: &str, e: String| Error::Format(e.lines().next().unwrap_or("").to_string()).in_file(dir.join(name));
    let run: RunRecord = toml::from_str(&read("run.toml")?)
        .map_err(|e| bad("run.toml", format!("not a run record: {}", e.message())))?;
    let findings = csv::Reader::from_reader(read("findings.csv")?.as_bytes())
        .deserialize()
        .collect::<std::result::Result<Vec<Finding>, _>>()
        .map_err(|e| bad("findings.csv", format!("not a findings table: {e}")))?;
    Ok(Section { spec: spec.clone(), dir: dir.to_path_buf(), charts: charts.to_vec(), summary, findings, run, reused })
}

/// The labels of "label (numbers); label (numbers)" cases, "; "-separated.
fn labels(cases: &str) -> String {
    cases.split("; ").map(|c| c.split(" (").next().unwrap_or(c)).collect::<Vec<_>>().join("; ")
}

/// The verdict in words: for a claim that holds in some cases, the shorter list of the two.
fn verdict_text(f: &Finding) -> String {
    match f.verdict {
        Verdict::HoldsOnlyWhen if f.holds.split("; ").count() > f.fails.split("; ").count() => {
            format!("holds except for {}", labels(&f.fails))
        }
        Verdict::HoldsOnlyWhen => format!("holds only for {}", labels(&f.holds)),
        v => v.to_string(),
    }
}

/// The first case of a list, with its numbers.
fn first(cases: &str) -> &str {
    cases.split("; ").next().unwrap_or("")
}

fn render(sections: &[Section], command: &str, seconds: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{TITLE}\n");
    let _ = writeln!(
        s,
        "What gradlab's built-in experiments find about the claims they test. Every number is computed from \
         the CSVs in the experiment's folder, and every verdict from those numbers: a claim that fails in some \
         cases says so. Regenerate with `cargo run --release -- report`.\n"
    );
    let _ = writeln!(s, "## Claims\n");
    let _ = writeln!(s, "| claim | experiment | verdict | the numbers behind it |");
    let _ = writeln!(s, "|---|---|---|---|");
    for sec in sections {
        for f in &sec.findings {
            let verdict = verdict_text(f);
            let number = match f.verdict {
                Verdict::Holds => format!("e.g. {}", first(&f.holds)),
                Verdict::Fails => format!("e.g. {}", first(&f.fails)),
                Verdict::HoldsOnlyWhen => format!("holds: {}; fails: {}", first(&f.holds), first(&f.fails)),
                Verdict::Untested => format!("no case decides it: {}", f.sentence),
            };
            let _ = writeln!(
                s,
                "| {} | [{}](#{}) | **{verdict}** | {number} |",
                f.claim.text(),
                sec.spec.name,
                sec.spec.name
            );
        }
    }
    for sec in sections {
        let name = &sec.spec.name;
        let _ = writeln!(s, "\n## {name}\n");
        let _ = writeln!(s, "**{}** {}.\n", sec.spec.kind.question(), sec.spec.description);
        let _ = writeln!(
            s,
            "[spec]({name}/spec.toml) · [table]({name}/table.csv) · [findings]({name}/findings.csv) · \
             [summary.csv]({name}/summary.csv) · {} grid points in {} s on {} threads\n",
            sec.run.points, sec.run.seconds, sec.run.threads
        );
        for c in &sec.charts {
            if sec.dir.join(format!("{c}.png")).is_file() {
                let _ = writeln!(s, "![{name}: {c}]({name}/{c}.png)\n");
            }
        }
        let _ = writeln!(s, "{}", sec.summary.trim_end());
    }
    let _ = writeln!(s, "\n## Reproducibility\n");
    let _ = writeln!(s, "- gradlab {}, commit {}", env!("CARGO_PKG_VERSION"), env!("GRADLAB_COMMIT"));
    let _ = writeln!(
        s,
        "- machine: {}, {} cores",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = writeln!(s, "- command: `{command}`, {seconds:.1} s in all");
    let _ = writeln!(s, "\n| experiment | spec (FNV-1a 64) | made by | points | seconds | threads | this time |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for sec in sections {
        let _ = writeln!(
            s,
            "| {} | `{:016x}` | gradlab {} ({}) | {} | {} | {} | {} |",
            sec.spec.name,
            fnv1a(sec.spec.text.as_bytes()),
            sec.run.gradlab,
            sec.run.commit,
            sec.run.points,
            sec.run.seconds,
            sec.run.threads,
            if sec.reused { "reused" } else { "ran" }
        );
    }
    s
}

/// The CPU's model name from /proc/cpuinfo, or "unknown CPU".
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_lists_are_shortened_to_labels_and_first_items() {
        assert_eq!(labels("a (1%); b c (2%)"), "a; b c");
        let f = |h: &str, x: &str| Finding {
            claim: crate::experiment::findings::Claim::FDominates,
            verdict: Verdict::HoldsOnlyWhen,
            holds: h.into(),
            fails: x.into(),
            sentence: String::new(),
        };
        assert_eq!(verdict_text(&f("a (1); b (2)", "c (3)")), "holds except for c");
        assert_eq!(verdict_text(&f("a (1)", "b (2); c (3)")), "holds only for a");
        assert_eq!(first("a (1%); b (2%)"), "a (1%)");
        assert_eq!(first(""), "");
    }
}
