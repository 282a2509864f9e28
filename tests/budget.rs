//! `--dry-run` estimates against the runs they estimate, and the refusal of a run the machine
//! has no memory for. Both estimate and run happen in this build on this machine, so the
//! comparison holds in a debug build as in a release one.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The tests here time runs: they take turns, so that one's processes do not slow another's.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn gradlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradlab")).args(args).output().unwrap()
}

/// Compute-heavy for its size: three cells, two lengths, probes and Lyapunov exponents.
const COMPUTE: &str = r#"
kind = "vanishing"
name = "compute"
seed = 1
cells = ["rnn", "lstm", "gru"]
inits = ["pytorch"]
hidden = [16]
seq_len = [200, 400]
seeds = [0, 1, 2, 3]
batch = 2
input_size = 4
[probes]
quantities = ["dh", "dstate"]
lyapunov = 2
[init.pytorch]
"#;

/// Row-heavy: two long points whose curves dominate the memory.
const ROWS: &str = r#"
kind = "vanishing"
name = "rows"
seed = 1
cells = ["rnn"]
inits = ["pytorch"]
hidden = [4]
seq_len = [8000]
seeds = [0, 1]
batch = 8
input_size = 2
[probes]
quantities = ["dh"]
lyapunov = 0
[init.pytorch]
"#;

/// Training runs: their estimate comes from 20 calibration updates scaled to the spec's.
const TRAIN: &str = r#"
kind = "trainability"
name = "train"
seed = 1
cells = ["rnn", "lstm"]
inits = ["pytorch"]
hidden = [8]
seeds = [0, 1]
[train]
tasks = ["adding"]
lags = [10, 40]
steps = 200
batch = 16
probe_every = 50
[init.pytorch]
"#;

/// The number before `unit` after `label` in the dry run's report, in that unit.
fn figure(report: &str, label: &str, unit: &str) -> f64 {
    let line = report.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label:?} in {report}"));
    let rest = &line[line.find("about ").expect("about N") + 6..];
    let (number, after) = rest.split_once(' ').unwrap();
    assert!(after.starts_with(unit), "{label} is not in {unit}: {line}");
    number.parse().unwrap()
}

fn toml_value(text: &str, key: &str) -> f64 {
    let line = text.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("no {key}"));
    line.split(" = ").nth(1).unwrap().parse().unwrap()
}

fn within_2x(what: &str, estimate: f64, measured: f64) {
    let ratio = estimate / measured;
    eprintln!("{what}: estimated {estimate}, measured {measured}, ratio {ratio:.2}");
    assert!((0.5..=2.0).contains(&ratio), "{what}: estimated {estimate}, measured {measured}");
}

#[test]
fn dry_run_estimates_time_and_memory_within_2x_on_three_specs() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("compute", COMPUTE), ("rows", ROWS), ("train", TRAIN)] {
        let spec = dir.path().join(format!("{name}.toml"));
        std::fs::write(&spec, text).unwrap();
        let out = dir.path().join(name);
        let (spec, out) = (spec.to_str().unwrap(), out.to_str().unwrap());
        let dry = gradlab(&["experiment", "run", spec, "--out", out, "--threads", "2", "--dry-run"]);
        assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
        let report = String::from_utf8_lossy(&dry.stdout).to_string();
        assert!(report.contains("nothing measured or written"), "{report}");
        assert!(!Path::new(out).exists(), "a dry run writes nothing");
        let run = gradlab(&["experiment", "run", spec, "--out", out, "--threads", "2"]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let record = std::fs::read_to_string(Path::new(out).join("run.toml")).unwrap();
        within_2x(&format!("{name} seconds"), figure(&report, "time:", "s"), toml_value(&record, "seconds"));
        if Path::new("/proc/self/status").exists() {
            let peak = toml_value(&record, "peak_memory_mib");
            within_2x(&format!("{name} peak MiB"), figure(&report, "peak memory:", "MiB"), peak);
        }
    }
}

/// `gradlab experiment run SPEC --out OUT --threads 1`, started with its stderr piped.
fn spawn_run(spec: &Path, out: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_gradlab"))
        .args(["experiment", "run", spec.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// MemAvailable in bytes, where /proc tells.
fn available() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? * 1024.0)
}

#[test]
fn a_run_that_needs_more_memory_than_the_machine_has_is_refused_before_it_starts() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(available) = available() else {
        panic!("this test needs /proc/meminfo (Linux), where the memory check runs");
    };
    // One seed of this keeps about T·B rows of curves (over a GiB); enough seeds keep twice
    // what the machine has.
    let one_seed = ROWS
        .replace("seq_len = [8000]", "seq_len = [1000000]")
        .replace("batch = 8", "batch = 4")
        .replace("seeds = [0, 1]", "seeds = [0]");
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("one.toml");
    std::fs::write(&spec, &one_seed).unwrap();
    let dry = gradlab(&["experiment", "run", spec.to_str().unwrap(), "--threads", "1", "--dry-run"]);
    let report = String::from_utf8_lossy(&dry.stdout).to_string();
    let kept = report.split("rows kept for the outputs ").nth(1).unwrap_or_else(|| panic!("{report}"));
    let (number, unit) = kept.split_once(' ').unwrap();
    let per_seed = number.parse::<f64>().unwrap() * if unit.starts_with("GiB") { 1024.0 } else { 1.0 } * 1048576.0;
    let seeds = (2.0 * available / per_seed).ceil() as usize + 1;
    let list: Vec<String> = (0..seeds).map(|s| s.to_string()).collect();
    std::fs::write(&spec, one_seed.replace("seeds = [0]", &format!("seeds = [{}]", list.join(", ")))).unwrap();
    let out = dir.path().join("out");
    let start = Instant::now();
    let mut child = spawn_run(&spec, &out);
    // A run that was not refused would take hours: stop it and fail.
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("not refused: still running after 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("of memory, but") && stderr.contains("is available"), "{stderr}");
    assert!(stderr.contains("`seq_len`") && stderr.contains("`seeds`"), "names the keys: {stderr}");
    assert!(!out.exists(), "refused before anything is written");
}

#[test]
fn a_long_run_says_how_long_before_it_starts() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    use std::io::Read;
    let seeds: Vec<String> = (0..200).map(|s| s.to_string()).collect();
    let spec_text = ROWS.replace("seeds = [0, 1]", &format!("seeds = [{}]", seeds.join(", ")));
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("long.toml");
    std::fs::write(&spec, spec_text).unwrap();
    let out = dir.path().join("out");
    let mut child = spawn_run(&spec, &out);
    // The announcement comes before the first point; read until it is complete, then stop the run.
    let mut stderr = child.stderr.take().unwrap();
    let (mut text, mut buf) = (String::new(), [0u8; 256]);
    let start = Instant::now();
    while !text.contains("keeps the finished points") && start.elapsed() < Duration::from_secs(60) {
        let n = stderr.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        text += &String::from_utf8_lossy(&buf[..n]);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(text.starts_with("rows: 200 grid points, about "), "{text}");
    assert!(text.contains(" on 1 thread(s) by a quick calibration (--dry-run for more)"), "{text}");
}
