//! Experiments end to end through the CLI: a tiny spec whose CSVs parse and whose charts exist,
//! bitwise-identical output on 1 and 2 threads, spec errors and the overwrite rules.

mod common;

use std::path::Path;
use std::process::{Command, Output};

const TINY: &str = r#"
kind = "vanishing"
name = "tiny"
seed = 7
cells = ["rnn", "lstm", "gru"]
inits = ["pytorch", "forget1"]
hidden = [6]
seq_len = [8, 12]
seeds = [0, 1]
batch = 2
input_size = 3
[probes]
quantities = ["dh", "dc", "dstate"]
lyapunov = 3
lyapunov_burn_in = 4
[init.pytorch]
[init.forget1]
cells = ["lstm"]
gate_bias = ["forget-bias(1.0)"]
"#;
fn gradlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradlab")).args(args).output().unwrap()
}

fn run_tiny(dir: &Path, out: &str, threads: &str) -> Output {
    let spec = dir.join("tiny.toml");
    std::fs::write(&spec, TINY).unwrap();
    gradlab(&[
        "experiment",
        "run",
        spec.to_str().unwrap(),
        "--out",
        dir.join(out).to_str().unwrap(),
        "--threads",
        threads,
    ])
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r.records().map(|x| x.unwrap().iter().map(String::from).collect()).collect();
    (header, rows)
}

#[test]
fn tiny_spec_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_tiny(dir.path(), "out", "2");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    // Points: rnn×pytorch, lstm×{pytorch, forget1}, gru×pytorch = 4 pairs × 2 lengths × 2 seeds.
    assert!(stdout.contains("16 grid points"), "{stdout}");
    assert!(stdout.contains("| lstm | forget1 | 6 | dstate |"), "{stdout}");
    let out = dir.path().join("out");
    for f in ["decay.png", "decay.svg", "rate.png", "rate.svg"] {
        let bytes = std::fs::read(out.join(f)).unwrap();
        assert!(bytes.len() > 1000, "{f} is too small");
    }
    assert_eq!(std::fs::read_to_string(out.join("spec.toml")).unwrap(), TINY);

    assert_eq!(std::fs::read_to_string(out.join("summary.md")).unwrap().lines().next(), stdout.lines().nth(2));

    let (h, summary) = read_csv(&out.join("summary.csv"));
    assert_eq!(
        h,
        [
            "cell",
            "init",
            "hidden",
            "seq_len",
            "seed",
            "batch",
            "quantity",
            "log_norm_end",
            "decay_rate",
            "decay_rate_se",
            "decay_rate_near",
            "horizon",
            "regime"
        ]
    );
    // One row per sequence and quantity: dh for 16 points, dc and dstate for the 8 LSTM points.
    assert_eq!(summary.len(), (16 + 8 * 2) * 2);
    let rate = h.iter().position(|c| c == "decay_rate").unwrap();
    assert!(summary.iter().all(|r| r[rate].parse::<f64>().unwrap() < 0.0), "small PyTorch-default nets vanish");

    let (h, curves) = read_csv(&out.join("curves.csv"));
    let q = h.iter().position(|c| c == "quantity").unwrap();
    // dh for every sequence (T+1 rows); dc and dstate for the 8 LSTM points only.
    let per_len = |t: usize| (t + 1) * 2 * 2; // distances × seeds × batch
    let dh_rows: usize = [8, 12].iter().map(|&t| 4 * per_len(t)).sum();
    let lstm_rows: usize = [8, 12].iter().map(|&t| 2 * 2 * per_len(t)).sum();
    assert_eq!(curves.iter().filter(|r| r[q] == "dh").count(), dh_rows);
    assert_eq!(curves.iter().filter(|r| r[q] != "dh").count(), lstm_rows);

    let (h, lyap) = read_csv(&out.join("lyapunov.csv"));
    assert_eq!(lyap.len(), 16 * 2 * 3);
    assert_eq!(h[6..], ["index", "exponent", "lyapunov_se"]);
}

#[test]
fn every_built_in_writes_identical_bytes_on_one_and_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    for (name, _) in gradlab::experiment::BUILT_IN {
        let spec = dir.path().join(format!("{name}.toml"));
        std::fs::write(&spec, common::shrunk_built_in(name)).unwrap();
        let mut outputs = Vec::new();
        for threads in ["1", "2"] {
            let out = dir.path().join(format!("{name}-{threads}"));
            let o = gradlab(&[
                "experiment",
                "run",
                spec.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--threads",
                threads,
            ]);
            assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
            outputs.push(out);
        }
        let mut files: Vec<_> = std::fs::read_dir(&outputs[0]).unwrap().map(|e| e.unwrap().file_name()).collect();
        files.sort();
        assert!(files.len() >= 5, "{name}: {files:?}");
        // run.toml records the thread count and the time: it differs by design.
        for f in files.into_iter().filter(|f| f != "run.toml") {
            let a = std::fs::read(outputs[0].join(&f)).unwrap();
            let b = std::fs::read(outputs[1].join(&f)).unwrap();
            assert!(a == b, "{name}: {f:?} differs between 1 and 2 threads");
        }
    }
}

#[test]
fn one_and_two_threads_write_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run_tiny(dir.path(), "one", "1").status.success());
    assert!(run_tiny(dir.path(), "two", "2").status.success());
    for f in ["curves.csv", "summary.csv", "lyapunov.csv", "summary.md", "decay.svg", "decay.png", "rate.svg"] {
        let a = std::fs::read(dir.path().join("one").join(f)).unwrap();
        let b = std::fs::read(dir.path().join("two").join(f)).unwrap();
        assert!(a == b, "{f} differs between 1 and 2 threads");
    }
}

#[test]
fn rerunning_the_same_spec_replaces_its_outputs_but_a_different_spec_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run_tiny(dir.path(), "out", "1").status.success());
    // Same spec, same folder: the run reproduces the files, so it may replace them.
    assert!(run_tiny(dir.path(), "out", "1").status.success());
    // A different spec into the same folder is refused, and nothing is touched.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, TINY.replace("seed = 7", "seed = 8")).unwrap();
    let before = std::fs::read(dir.path().join("out/summary.csv")).unwrap();
    let out = dir.path().join("out");
    let o = gradlab(&["experiment", "run", other.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already exists") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(dir.path().join("out/summary.csv")).unwrap(), before);
    let o = gradlab(&["experiment", "run", other.to_str().unwrap(), "--out", out.to_str().unwrap(), "--force"]);
    assert!(o.status.success());
    assert_ne!(std::fs::read(dir.path().join("out/summary.csv")).unwrap(), before);
}

#[test]
fn bad_specs_exit_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bad.toml");
    std::fs::write(&spec, TINY.replace("batch = 2", "batch = 2\nbacth = 3")).unwrap();
    let o = gradlab(&["experiment", "run", spec.to_str().unwrap(), "--out", dir.path().join("o").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml") && err.contains("bacth") && err.trim_end().lines().count() == 1, "{err}");
    let o = gradlab(&["experiment", "run", dir.path().join("missing.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!dir.path().join("o").exists());
}

#[test]
fn list_shows_the_built_in_experiments() {
    let o = gradlab(&["experiment", "list"]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    for (name, _) in gradlab::experiment::BUILT_IN {
        assert!(s.contains(&format!("  {name} ")), "{name} is not listed: {s}");
    }
    assert!(s.contains("220 grid points"), "{s}");
}

#[test]
fn probe_command_writes_its_three_files() {
    let dir = tempfile::tempdir().unwrap();
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oracle/lstm_h3_i5_t2_b3_ce_gauss");
    let out = dir.path().join("p");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "probe".to_string(),
            "--weights".into(),
            case.join("weights.safetensors").to_string_lossy().into(),
            "--input".into(),
            case.join("input.safetensors").to_string_lossy().into(),
            "--out".into(),
            out.to_string_lossy().into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let o = Command::new(env!("CARGO_BIN_EXE_gradlab")).args(args(&[])).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (h, rows) = read_csv(&out.join("probe.csv"));
    assert_eq!(
        h[..9],
        [
            "cell",
            "batch",
            "step",
            "distance",
            "quantity",
            "spectral_norm",
            "frobenius_norm",
            "log_spectral_norm",
            "log_frobenius_norm"
        ]
    );
    // 3 sequences × 3 steps × (dh, dc, dstate) + dc_total for s ≥ 1, + err (the input has labels).
    assert_eq!(rows.len(), 3 * (3 * 3 + 2) + 3 * 3);
    assert_eq!(read_csv(&out.join("decomp.csv")).1.len(), 3 * 6);
    assert_eq!(read_csv(&out.join("lyapunov.csv")).1.len(), 3 * 6);
    // One summary row per sequence and quantity (dh, dc, dstate, dc_total, err).
    let (h, summary) = read_csv(&out.join("summary.csv"));
    assert_eq!(summary.len(), 3 * 5);
    assert_eq!(h[..4], ["layer", "batch", "quantity", "decay_rate"]);
    let o = Command::new(env!("CARGO_BIN_EXE_gradlab")).args(args(&[])).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "existing probe files are not overwritten without --force");
    assert!(Command::new(env!("CARGO_BIN_EXE_gradlab")).args(args(&["--force"])).output().unwrap().status.success());
}

/// Runs `spec` (TOML text) into a fresh folder; returns the folder and summary.csv as (header, rows).
fn run_spec_text(dir: &Path, name: &str, spec: &str) -> (std::path::PathBuf, Vec<String>, Vec<Vec<String>>) {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, spec).unwrap();
    let out = dir.join(name);
    let o = gradlab(&["experiment", "run", path.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
    let (h, rows) = read_csv(&out.join("summary.csv"));
    (out, h, rows)
}

fn column<'a>(h: &[String], rows: &'a [Vec<String>], name: &str) -> Vec<&'a str> {
    let i = h.iter().position(|c| c == name).unwrap_or_else(|| panic!("no column {name} in {h:?}"));
    rows.iter().map(|r| r[i].as_str()).collect()
}

#[test]
fn gates_finds_a_regime_where_f_dominates_and_one_where_it_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"
kind = "gates"
name = "g"
seed = 3
cells = ["lstm"]
inits = ["pytorch", "gain3"]
hidden = [24]
seq_len = [60]
seeds = [0, 1]
input_size = 8
[init.pytorch]
[init.gain3]
recurrent = ["gaussian(3.0)"]
input = ["gaussian(3.0)"]
bias = ["zeros"]
"#;
    let (out, h, rows) = run_spec_text(dir.path(), "g", spec);
    let init = column(&h, &rows, "init");
    let frac = column(&h, &rows, "f_dominant_frac");
    let ratio = column(&h, &rows, "nonf_over_f_median");
    let term = column(&h, &rows, "dominant_term");
    for i in 0..rows.len() {
        let (f, r): (f64, f64) = (frac[i].parse().unwrap(), ratio[i].parse().unwrap());
        match init[i] {
            "pytorch" => assert!(f == 1.0 && r < 1.0 && term[i] == "F", "{:?}", rows[i]),
            _ => assert!(f < 0.5 && r > 1.0 && term[i] != "F", "{:?}", rows[i]),
        }
    }
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains("- **holds only when** —") && md.contains("Holds: pytorch (") && md.contains("Fails: gain3 ("),
        "{md}"
    );
    let (h, f) = read_csv(&out.join("findings.csv"));
    assert_eq!(h, ["claim", "verdict", "holds", "fails", "sentence"]);
    assert_eq!((f[0][0].as_str(), f[0][1].as_str()), ("f-dominates", "holds-only-when"));
}

#[test]
fn precision_shows_f32_losing_the_gradient_before_f64() {
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"
kind = "precision"
name = "p"
seed = 5
cells = ["rnn"]
inits = ["small"]
hidden = [16]
seq_len = [1400]
seeds = [0, 1]
input_size = 4
[init.small]
recurrent = ["gaussian(0.5)"]
input = ["gaussian(1.0)"]
bias = ["zeros"]
"#;
    let (_, h, rows) = run_spec_text(dir.path(), "p", spec);
    let get = |name: &str| -> Vec<usize> { column(&h, &rows, name).iter().map(|v| v.parse().unwrap()).collect() };
    let (u32_, z32, u64_, z64) = (get("underflow_f32"), get("zero_f32"), get("underflow_f64"), get("zero_f64"));
    let at32: Vec<f64> = column(&h, &rows, "log10_exact_at_zero_f32").iter().map(|v| v.parse().unwrap()).collect();
    for i in 0..rows.len() {
        // Subnormal before zero, f32 long before f64; f32 reaches 0 where the exact norm is
        // about f32's smallest subnormal (1.4e-45) and f64 keeps going.
        assert!(u32_[i] <= z32[i] && u64_[i] <= z64[i] && 3 * z32[i] < z64[i], "{:?}", rows[i]);
        assert!((-47.0..-43.0).contains(&at32[i]), "{:?}", rows[i]);
    }
}

#[test]
fn probe_lyapunov_options_are_checked_and_change_the_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oracle/lstm_h16_i5_t10_b3_mse_orth0.9");
    let run = |out: &str, extra: &[&str]| {
        let mut a = vec![
            "probe".to_string(),
            "--weights".into(),
            case.join("weights.safetensors").to_string_lossy().into(),
            "--input".into(),
            case.join("input.safetensors").to_string_lossy().into(),
            "--out".into(),
            dir.path().join(out).to_string_lossy().into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        Command::new(env!("CARGO_BIN_EXE_gradlab")).args(a).output().unwrap()
    };
    // T = 10: a burn-in of 10 leaves nothing to average.
    let o = run("bad", &["--burn-in", "10"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--burn-in 10") && err.contains("T = 10") && err.trim_end().lines().count() == 1, "{err}");
    assert!(!dir.path().join("bad").exists(), "nothing is written before the check");
    let first_exponent = |out: &str| read_csv(&dir.path().join(out).join("lyapunov.csv")).1[0][3].clone();
    assert!(run("plain", &[]).status.success());
    assert!(run("asym", &["--burn-in", "4", "--q0", "random", "--seed", "3"]).status.success());
    assert_ne!(first_exponent("plain"), first_exponent("asym"));
    let stdout =
        String::from_utf8_lossy(&run("again", &["--burn-in", "4", "--q0", "random", "--seed", "3"]).stdout).to_string();
    assert!(
        stdout.contains("decay_rate") && stdout.contains("decay_rate_near") && stdout.contains("regime"),
        "{stdout}"
    );
    assert_eq!(first_exponent("asym"), first_exponent("again"), "the same seed gives the same Q0");
}

#[test]
fn an_exactly_zero_jacobian_is_a_named_warning_not_a_silent_nan() {
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"
kind = "vanishing"
name = "zero"
seed = 1
cells = ["rnn", "lstm"]
inits = ["zero", "pytorch"]
hidden = [6]
seq_len = [30]
seeds = [0, 1]
input_size = 2
[probes]
quantities = ["dh", "dstate"]
lyapunov = 2
[init.pytorch]
[init.zero]
recurrent = ["zeros"]
"#;
    let (out, h, rows) = run_spec_text(dir.path(), "zero", spec);
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    for q in ["rnn zero H = 6 dh", "lstm zero H = 6 dh"] {
        assert!(summary.contains(&format!("**Warning**: {q} is exactly 0 at k = T in 2 of 2 sequences")), "{summary}");
    }
    assert!(!summary.contains("NaN"), "no NaN in the summary: {summary}");
    assert!(
        summary.contains("| rnn | zero | 6 | dh | — | — | 1 | vanishing 2/2 | -inf |"),
        "the row names its regime: {summary}"
    );
    // The zero RNN vanished (rate −∞) and is listed where the claim holds, not dropped.
    assert!(summary.contains("Holds: zero (-inf/step)"), "{summary}");
    // Its rows: ln‖·‖ = −inf at k = T, no rates, horizon 1.
    let (init, q, end, rate) = (
        column(&h, &rows, "init"),
        column(&h, &rows, "quantity"),
        column(&h, &rows, "log_norm_end"),
        column(&h, &rows, "decay_rate"),
    );
    let zero_dh: Vec<usize> = (0..rows.len()).filter(|&i| init[i] == "zero" && q[i] == "dh").collect();
    assert_eq!(zero_dh.len(), 4);
    assert!(zero_dh.iter().all(|&i| end[i] == "-inf" && rate[i].is_empty()));
    let svg = std::fs::read_to_string(out.join("decay.svg")).unwrap();
    assert!(svg.contains("zero (exactly 0 from k = 1)"), "the legend says where the line went");
}

#[test]
fn f32_reaching_0_where_the_exact_norm_is_0_too_is_no_loss() {
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"
kind = "precision"
name = "zero"
seed = 1
cells = ["rnn"]
inits = ["zero"]
hidden = [6]
seq_len = [30]
seeds = [0, 1]
input_size = 2
[init.zero]
recurrent = ["zeros"]
"#;
    let (out, _, _) = run_spec_text(dir.path(), "zero", spec);
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("Holds: rnn zero (0 after 1 steps, where the exact norm is 0 too)"), "{summary}");
    assert!(!summary.contains("NaN"), "{summary}");
}

#[test]
fn the_irnn_keeps_its_gradient_where_the_default_relu_rnn_loses_it() {
    let dir = tempfile::tempdir().unwrap();
    let spec = r#"
kind = "vanishing"
name = "irnn"
seed = 3
cells = ["rnn-relu"]
inits = ["pytorch", "irnn"]
hidden = [16]
seq_len = [120]
seeds = [0, 1, 2]
input_size = 4
[probes]
quantities = ["dh"]
lyapunov = 0
[init.pytorch]
[init.irnn]
recurrent = ["identity(1.0)"]
input = ["gaussian(0.5)"]
bias = ["constant(0.5)"]
"#;
    let (_, h, rows) = run_spec_text(dir.path(), "irnn", spec);
    let (cell, init, rate, regime) = (
        column(&h, &rows, "cell"),
        column(&h, &rows, "init"),
        column(&h, &rows, "decay_rate"),
        column(&h, &rows, "regime"),
    );
    assert!(cell.iter().all(|c| *c == "rnn-relu"));
    for i in 0..rows.len() {
        let r: f64 = rate[i].parse().unwrap_or_else(|_| panic!("row {i} has no rate: {:?}", rows[i]));
        match init[i] {
            // W_hh = I with every unit kept alive by its bias: J_t = I, no decay at all.
            "irnn" => assert!(r.abs() < 1e-3 && regime[i] == "neutral", "{:?}", rows[i]),
            _ => assert!(r < -0.1 && regime[i] == "vanishing", "{:?}", rows[i]),
        }
    }
}
