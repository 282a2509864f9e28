//! Sweeps that survive interruption and split into shards, through the CLI: kill -9 at several
//! moments then rerun, Ctrl-C, shards + merge, stale files and foreign stores. Every comparison is
//! with the bytes of one uninterrupted run (all outputs but `run.toml`, which records the run).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// 30 points, each tens of milliseconds in a debug build: slow enough to be killed midway.
const SPEC: &str = r#"
kind = "vanishing"
name = "sweep"
seed = 11
cells = ["rnn", "lstm", "gru"]
inits = ["pytorch", "orthogonal"]
hidden = [12]
seq_len = [60, 90]
seeds = [0, 1, 2]
batch = 1
input_size = 4
[probes]
quantities = ["dh", "dstate"]
lyapunov = 2
lyapunov_burn_in = 5
[init.pytorch]
[init.orthogonal]
cells = ["rnn", "gru"]
recurrent = ["orthogonal(1.0)"]
"#;
const POINTS: usize = 30;

fn gradlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradlab")).args(args).output().unwrap()
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gradlab")).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

fn write_spec(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn run_args<'a>(spec: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["experiment", "run", spec.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "2"];
    a.extend_from_slice(extra);
    a
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The files of a finished folder, name → bytes, without `run.toml`.
fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| n != "run.toml")
        .map(|(n, p)| {
            assert!(p.is_file(), "{} is left in the finished folder", p.display());
            (n, std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

fn assert_same(reference: &Path, other: &Path) {
    let (a, b) = (outputs(reference), outputs(other));
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "{} and {} hold different files", reference.display(), other.display());
    for ((n, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{n} differs between {} and {}", reference.display(), other.display());
    }
}

/// Stored point files in `out`.
fn stored(out: &Path) -> usize {
    std::fs::read_dir(out.join("partial"))
        .map_or(0, |d| d.filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".bin")).count())
}

/// Waits until `out` holds at least `n` stored points (or the run ends).
fn wait_for(child: &mut Child, out: &Path, n: usize) {
    let start = Instant::now();
    while stored(out) < n && child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(300), "the run made no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn reference(dir: &Path, spec: &Path) -> PathBuf {
    let r = dir.join("reference");
    ok(&gradlab(&run_args(spec, &r, &[])));
    assert!(!r.join("partial").exists(), "a finished run keeps no stored points");
    assert!(!r.join(".staging").exists());
    r
}

#[test]
fn killed_at_any_moment_and_rerun_gives_the_bytes_of_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "sweep.toml", SPEC);
    let reference = reference(dir.path(), &spec);
    let out = dir.path().join("out");
    // Before any point, after one, midway, and once all are stored (during or after assembly).
    let mut seen = Vec::new();
    for n in [0, 1, POINTS / 2, POINTS] {
        let mut child = spawn(&run_args(&spec, &out, &[]));
        wait_for(&mut child, &out, n);
        child.kill().unwrap();
        child.wait().unwrap();
        seen.push(stored(&out));
    }
    assert!(seen.iter().any(|&s| 0 < s && s < POINTS), "no kill landed midway: {seen:?}");
    let o = gradlab(&run_args(&spec, &out, &[]));
    ok(&o);
    assert_same(&reference, &out);
    assert!(!out.join("partial").exists());
}

#[test]
fn ctrl_c_keeps_the_finished_points_and_says_how_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "sweep.toml", SPEC);
    let reference = reference(dir.path(), &spec);
    let out = dir.path().join("out");
    let mut child = spawn(&run_args(&spec, &out, &[]));
    wait_for(&mut child, &out, 2);
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.success() {
        // The run had already finished its last points: nothing to resume.
        assert_same(&reference, &out);
        return;
    }
    assert_eq!(o.status.code(), Some(130), "{err}");
    let kept = stored(&out);
    assert!(
        err.contains(&format!("interrupted: {kept} of the {POINTS} points are stored in"))
            && err.contains("run the same command again to resume"),
        "{err}"
    );
    assert!(!out.join("spec.toml").exists(), "an unfinished run describes no outputs");
    let o = gradlab(&run_args(&spec, &out, &[]));
    ok(&o);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("({kept} were stored by an earlier run)")), "{text}");
    assert_same(&reference, &out);
}

#[test]
fn three_shards_merged_give_the_bytes_of_one_run_and_gaps_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "sweep.toml", SPEC);
    let reference = reference(dir.path(), &spec);
    let shard = |i: usize| dir.path().join(format!("shard{i}"));
    let mut counts = Vec::new();
    for i in 0..3 {
        let o = gradlab(&run_args(&spec, &shard(i), &["--shard", &format!("{i}/3")]));
        ok(&o);
        assert!(!shard(i).join("spec.toml").exists(), "a shard writes only its points");
        counts.push(stored(&shard(i)));
    }
    assert_eq!(counts.iter().sum::<usize>(), POINTS, "shards overlap or miss points: {counts:?}");
    assert!(counts.iter().all(|&c| c >= 4), "unbalanced shards: {counts:?}");

    let merged = dir.path().join("merged");
    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    let o = gradlab(&["experiment", "merge", &s(shard(0)), &s(shard(2)), "--out", &s(merged.clone())]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{} of the {POINTS} points", counts[1])) && err.contains("cell "), "{err}");
    assert!(!merged.exists(), "a refused merge writes nothing");

    ok(&gradlab(&["experiment", "merge", &s(shard(0)), &s(shard(1)), &s(shard(2)), "--out", &s(merged.clone())]));
    assert_same(&reference, &merged);
    assert_eq!(stored(&shard(1)), counts[1], "merging leaves the shards' own folders alone");

    // A shard of another spec is refused, naming both folders.
    let other = write_spec(dir.path(), "other.toml", &SPEC.replace("seed = 11", "seed = 12"));
    let foreign = dir.path().join("foreign");
    ok(&gradlab(&run_args(&other, &foreign, &["--shard", "0/3"])));
    let o = gradlab(&["experiment", "merge", &s(shard(0)), &s(foreign.clone()), "--out", &s(dir.path().join("m2"))]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("foreign/partial/spec.toml differs from") && err.contains("shard0"), "{err}");
}

#[test]
fn shards_sharing_a_folder_finish_in_it_and_an_interrupted_move_completes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "sweep.toml", SPEC);
    let reference = reference(dir.path(), &spec);
    let out = dir.path().join("out");
    for i in 0..2 {
        ok(&gradlab(&run_args(&spec, &out, &["--shard", &format!("{i}/2")])));
    }
    assert_eq!(stored(&out), POINTS);
    // What a kill while moving outputs in leaves: a stale staging folder, a temporary file,
    // some outputs already moved, no spec.toml yet.
    std::fs::create_dir_all(out.join(".staging")).unwrap();
    std::fs::write(out.join(".staging/summary.csv"), "stale").unwrap();
    std::fs::write(out.join("partial/point-3.bin.tmp"), "half a point").unwrap();
    std::fs::copy(reference.join("summary.csv"), out.join("summary.csv")).unwrap();
    // The whole spec into that folder reuses every stored point and needs no --force.
    let o = gradlab(&run_args(&spec, &out, &[]));
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("({POINTS} were stored by an earlier run)")));
    assert_same(&reference, &out);
}

#[test]
fn force_with_another_spec_leaves_no_file_of_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let gates = write_spec(
        dir.path(),
        "gates.toml",
        "kind = \"gates\"\nname = \"g\"\nseed = 1\ncells = [\"lstm\"]\ninits = [\"pytorch\"]\nhidden = [4]\n\
         seq_len = [10]\nseeds = [0, 1]\ninput_size = 2\n[init.pytorch]\n",
    );
    let spec = write_spec(dir.path(), "sweep.toml", SPEC);
    let reference = reference(dir.path(), &spec);
    let out = dir.path().join("out");
    ok(&gradlab(&run_args(&gates, &out, &[])));
    assert!(out.join("decomp.csv").exists());
    let o = gradlab(&run_args(&spec, &out, &[]));
    assert_eq!(o.status.code(), Some(2), "a different spec needs --force");
    ok(&gradlab(&run_args(&spec, &out, &["--force"])));
    assert_same(&reference, &out);

    // Stored points of another spec are kept unless forced.
    std::fs::remove_dir_all(&out).unwrap();
    ok(&gradlab(&run_args(&gates, &out, &["--shard", "0/2"])));
    let o = gradlab(&run_args(&spec, &out, &[]));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("partial: holds the finished points of an interrupted run of a different spec"), "{err}");
    ok(&gradlab(&run_args(&spec, &out, &["--force"])));
    assert_same(&reference, &out);
}

#[test]
fn an_unwritable_output_is_found_before_any_compute() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "sweep.toml", &SPEC.replace("seq_len = [60, 90]", "seq_len = [100000]"));
    let file = write_spec(dir.path(), "a-file", "not a folder");
    let start = Instant::now();
    let o = gradlab(&run_args(&spec, &file.join("out"), &[]));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("a-file/out: cannot be an output folder") && err.lines().count() == 1, "{err}");
    assert!(!err.contains("grid points, about"), "no estimate before the folder is known usable: {err}");
    assert!(start.elapsed() < Duration::from_secs(20), "the check came after the sweep");
}

#[test]
fn bad_shards_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "sweep.toml", SPEC);
    for bad in ["3/3", "1", "a/2", "0/0", "-1/2", "0/1000000"] {
        let flag = format!("--shard={bad}");
        let o = gradlab(&run_args(&spec, &dir.path().join("x"), &[&flag]));
        assert_eq!(o.status.code(), Some(2), "--shard {bad}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("expected i/n"), "--shard {bad}");
    }
    let o = gradlab(&["experiment", "merge", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no finished points here"));
}
