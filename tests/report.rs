//! `gradlab report` end to end on the built-in experiments shrunk to seconds: the report's claims
//! table and sections, reuse of finished folders, the overwrite rule; and findings whose verdict
//! and sentence flip when a spec changes the cases.

mod common;

use gradlab::experiment::BUILT_IN;
use gradlab::experiment::runner::RunOptions;
use gradlab::experiment::spec::Spec;
use std::path::Path;

fn shrunk_specs() -> Vec<Spec> {
    BUILT_IN.iter().map(|(name, _)| Spec::parse(&common::shrunk_built_in(name)).unwrap()).collect()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn report_runs_every_experiment_then_reuses_the_folders() {
    let dir = tempfile::tempdir().unwrap();
    let specs = shrunk_specs();
    let opts = RunOptions::default();
    let printed = gradlab::report::build(&specs, dir.path(), &opts, "test").unwrap();
    assert_eq!(printed.matches(" ran (").count(), BUILT_IN.len(), "{printed}");
    let report = read(&dir.path().join("REPORT.md"));
    assert!(report.starts_with("# gradlab report"));
    // Seven claims, each with a verdict; a section per experiment; the footer.
    let claims: Vec<&str> = report.lines().filter(|l| l.starts_with("| ") && l.contains("](#")).collect();
    assert_eq!(claims.len(), 7, "{report}");
    // (The shrunk trainability runs are too short to learn any lag: untested.)
    assert!(
        claims.iter().all(|l| l.contains("| **holds") || l.contains("| **fails") || l.contains("| **untested")),
        "{claims:?}"
    );
    for spec in &specs {
        assert!(report.contains(&format!("\n## {}\n", spec.name)), "no section {}", spec.name);
        assert!(report.contains(spec.kind.question()));
    }
    assert!(report.contains("## Reproducibility") && report.contains("command: `test`"));
    // Every image the report shows exists, by its relative link.
    for link in report.split("](").skip(1).map(|r| &r[..r.find(')').unwrap()]) {
        if !link.starts_with('#') {
            assert!(dir.path().join(link).exists(), "broken link {link}");
        }
    }
    // The second run reuses every folder and changes none of their files.
    let summary = read(&dir.path().join("gates/summary.md"));
    let csv = std::fs::read(dir.path().join("vanishing/curves.csv")).unwrap();
    let printed = gradlab::report::build(&specs, dir.path(), &opts, "test").unwrap();
    assert_eq!(printed.matches(" reused (").count(), BUILT_IN.len(), "{printed}");
    assert_eq!(read(&dir.path().join("gates/summary.md")), summary);
    assert_eq!(std::fs::read(dir.path().join("vanishing/curves.csv")).unwrap(), csv);
    // A folder whose spec changed runs again.
    let mut changed = specs.clone();
    changed[1] = Spec::parse(&common::shrunk_built_in("gates").replace("seed = 20261202", "seed = 1")).unwrap();
    let printed = gradlab::report::build(&changed, dir.path(), &RunOptions { force: true, ..opts }, "t").unwrap();
    assert!(
        printed.contains("gates          ran") && printed.matches(" reused (").count() == BUILT_IN.len() - 1,
        "{printed}"
    );
}

#[test]
fn a_report_never_overwrites_a_file_it_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("REPORT.md"), "my notes").unwrap();
    let specs = &shrunk_specs()[4..]; // precision alone: fast
    let err = gradlab::report::build(specs, dir.path(), &RunOptions::default(), "t").unwrap_err().to_string();
    assert!(err.contains("REPORT.md") && err.contains("--force"), "{err}");
    assert_eq!(read(&dir.path().join("REPORT.md")), "my notes");
    assert!(!dir.path().join("precision").exists(), "nothing ran");
}

/// The gates experiment on `inits` (labels defined below) into a fresh folder: its findings.csv
/// verdict and summary.md.
fn gates_with(inits: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut tables = String::new();
    if inits.contains("pytorch") {
        tables.push_str("[init.pytorch]\n");
    }
    if inits.contains("gain3") {
        tables.push_str(
            "[init.gain3]\nrecurrent = [\"gaussian(3.0)\"]\ninput = [\"gaussian(3.0)\"]\nbias = [\"zeros\"]\n",
        );
    }
    let text = format!(
        r#"
kind = "gates"
name = "g"
seed = 3
cells = ["lstm"]
inits = {inits}
hidden = [16]
seq_len = [40]
seeds = [0]
input_size = 8
{tables}"#
    );
    let spec = Spec::parse(&text).unwrap();
    let opts = RunOptions { out: Some(dir.path().join("g")), ..RunOptions::default() };
    gradlab::experiment::run(&spec, &opts).unwrap();
    let mut r = csv::Reader::from_path(dir.path().join("g/findings.csv")).unwrap();
    let row = r.records().next().unwrap().unwrap();
    (row[1].to_string(), read(&dir.path().join("g/summary.md")))
}

#[test]
fn a_finding_flips_when_the_spec_changes_the_cases() {
    let (verdict, md) = gates_with(r#"["pytorch"]"#);
    assert_eq!(verdict, "holds");
    assert!(md.contains("- **holds** — F = diag(f_t) dominates") && md.contains("Holds: pytorch (100%)."), "{md}");
    let (verdict, md) = gates_with(r#"["gain3"]"#);
    assert_eq!(verdict, "fails");
    assert!(md.contains("- **fails** — F = diag(f_t) dominates") && md.contains("Fails: gain3 ("), "{md}");
    let (verdict, md) = gates_with(r#"["pytorch", "gain3"]"#);
    assert_eq!(verdict, "holds-only-when");
    assert!(md.contains("- **holds only when** —"), "{md}");
}

#[test]
fn plot_redraws_identical_charts_from_the_csvs() {
    let dir = tempfile::tempdir().unwrap();
    let gradlab =
        |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_gradlab")).args(args).output().unwrap();
    for spec in shrunk_specs() {
        let run = dir.path().join(&spec.name);
        gradlab::experiment::run(&spec, &RunOptions { out: Some(run.clone()), ..RunOptions::default() }).unwrap();
        let again = dir.path().join(format!("{}-plot", spec.name));
        let o = gradlab(&["plot", run.to_str().unwrap(), "--out", again.to_str().unwrap()]);
        assert!(o.status.success(), "{}: {}", spec.name, String::from_utf8_lossy(&o.stderr));
        for stem in gradlab::experiment::charts(&spec).unwrap() {
            for ext in ["svg", "png"] {
                let f = format!("{stem}.{ext}");
                assert!(std::fs::read(run.join(&f)).unwrap() == std::fs::read(again.join(&f)).unwrap(), "{f} differs");
            }
        }
        // Redrawing at another size changes the chart; asking for one format writes only that.
        let small = dir.path().join(format!("{}-small", spec.name));
        let o = gradlab(&[
            "plot",
            run.to_str().unwrap(),
            "--out",
            small.to_str().unwrap(),
            "--format",
            "svg",
            "--width",
            "640",
            "--height",
            "480",
        ]);
        assert!(o.status.success());
        let stem = gradlab::experiment::charts(&spec).unwrap()[0];
        let svg = read(&small.join(format!("{stem}.svg")));
        assert!(svg.contains("width=\"640\"") && svg.contains("height=\"480\""), "{}", &svg[..200]);
        assert!(!small.join(format!("{stem}.png")).exists());
    }
    // Bad input: a folder without a spec, a width without a height; both exit 2 with one line.
    let o = gradlab(&["plot", dir.path().join("nowhere").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("nowhere/spec.toml") && err.trim_end().lines().count() == 1, "{err}");
    let o = gradlab(&["plot", dir.path().join("gates").to_str().unwrap(), "--width", "640"]);
    assert_eq!(o.status.code(), Some(2));
    // A CSV that is not the experiment's: the error names the file and the columns expected.
    std::fs::write(dir.path().join("gates/decomp.csv"), "step,term\n2,F\n").unwrap();
    let o = gradlab(&["plot", dir.path().join("gates").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("decomp.csv"), "{err}");
}

#[test]
fn readme_quotes_the_claims_of_the_committed_report() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let claims = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.replace("](results/REPORT.md#", "](#"))
            .filter(|l| l.starts_with("| ") && l.contains("](#") && l.contains("| **"))
            .collect()
    };
    let report = claims(&read(&root.join("results/REPORT.md")));
    let readme = claims(&read(&root.join("README.md")));
    assert_eq!(report.len(), 7, "{report:#?}");
    assert_eq!(readme, report, "README's claims table is not the committed report's");
}
