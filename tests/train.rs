//! `gradlab train` end to end: a saved model that `probe` and the reader take back bit for bit,
//! the same bytes on one thread and two, and bad flags refused with exit code 2.

use gradlab::model_file::load_params;
use gradlab::params::Params;
use gradlab::tensors::{TensorFile, to_safetensors_bytes};
use std::path::Path;
use std::process::{Command, Output};

fn gradlab(args: &[&str], threads: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradlab")).args(args).env("RAYON_NUM_THREADS", threads).output().unwrap()
}

fn train_into(dir: &Path, threads: &str) -> (Vec<u8>, Vec<u8>, String) {
    let (w, log) = (dir.join("w.safetensors"), dir.join("train.csv"));
    let o = gradlab(
        &[
            "train",
            "--task",
            "adding",
            "--lag",
            "8",
            "--cell",
            "lstm",
            "--hidden",
            "8",
            "--steps",
            "60",
            "--lr",
            "0.01",
            "--clip",
            "0.5",
            "--precision",
            "f64",
            "--probe-every",
            "20",
            "--save",
            w.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
        ],
        threads,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (std::fs::read(&w).unwrap(), std::fs::read(&log).unwrap(), String::from_utf8_lossy(&o.stdout).to_string())
}

#[test]
fn a_trained_model_is_saved_for_probe_and_reproduced_on_any_thread_count() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (w1, log1, report) = train_into(one.path(), "1");
    let (w2, log2, _) = train_into(two.path(), "2");
    assert_eq!(w1, w2, "weights identical on 1 and 2 threads");
    assert_eq!(log1, log2, "logs identical on 1 and 2 threads");
    assert!(report.contains("adding task, lag 8 (T = 8), lstm H = 8, 60 updates of batch 32 in f64"), "{report}");
    let log = String::from_utf8(log1).unwrap();
    assert_eq!(log.lines().next().unwrap(), "step,loss,grad_norm,clipped,horizon,probed");
    assert_eq!(log.lines().count(), 62, "a row per update and one after the last");
    assert_eq!(log.lines().filter(|l| l.ends_with(",true")).count(), 4, "probed at 0, 20, 40, 60");

    // The reader takes it back: an LSTM with a 1-output head, and its bytes re-encode identically.
    let file = TensorFile::read(one.path().join("w.safetensors")).unwrap();
    let params: Params<f64> = load_params(&file, None).unwrap();
    assert_eq!((params.hidden(), params.input(), params.output()), (8, 2, 1));
    assert_eq!(to_safetensors_bytes(&params.to_tensors()).unwrap(), w1);

    // `probe` runs on it.
    let x: Vec<f64> = (0..8 * 2).map(|i| (i as f64 * 0.37).sin()).collect();
    let input = one.path().join("x.safetensors");
    std::fs::write(&input, to_safetensors_bytes(&[("x".to_string(), vec![8, 1, 2], x)]).unwrap()).unwrap();
    let out = one.path().join("probe");
    let o = gradlab(
        &[
            "probe",
            "--weights",
            one.path().join("w.safetensors").to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        "2",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("probe.csv").exists() && out.join("summary.csv").exists());
}

#[test]
fn bad_training_flags_exit_2_with_one_line() {
    let base = ["train", "--task", "copy", "--lag", "5", "--cell", "gru", "--hidden", "4", "--steps", "2"];
    for (extra, needle) in [
        (vec!["--lag", "0"], "--lag 0: must be in 1..=100000 for the copy task"),
        (vec!["--hidden", "100000"], "--hidden 100000: must be in 1..=4096"),
        (vec!["--lr", "0"], "--lr 0: must be a positive number"),
        (vec!["--lr", "NaN"], "--lr NaN: must be a positive number"),
        (vec!["--clip", "0"], "--clip 0: must be a positive number"),
        (vec!["--init", "recurrent=chrono(5)"], "put it under gate_bias"),
        (vec!["--init", "weights=zeros"], "unknown group `weights`"),
    ] {
        let mut args: Vec<&str> = base.to_vec();
        // Replace a flag of the base in place, or add it.
        for pair in extra.chunks(2) {
            match args.iter().position(|a| *a == pair[0]) {
                Some(i) => args[i + 1] = pair[1],
                None => args.extend_from_slice(pair),
            }
        }
        let o = gradlab(&args, "1");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// The trainer against PyTorch. `export_pytorch_cases` (ignored; run by hand) writes each case's
// initial model and batches; `benches/peers/train_check.py` trains them with torch in f64 and
// writes the losses and gradient norms of every update to `tests/fixtures/train/pytorch.csv`,
// with a hash of the inputs it trained on. The test regenerates the inputs, checks the hash (the
// fixture is about these very inputs) and trains with gradlab.
//
//   cargo test --release --test train -- --ignored export_pytorch_cases
//   python3 benches/peers/train_check.py target/pytorch-cases > tests/fixtures/train/pytorch.csv

use gradlab::cell::CellKind;
use gradlab::init::InitSpec;
use gradlab::train::optim::AdamConfig;
use gradlab::train::tasks::{Target, Task, TaskKind};
use gradlab::train::trainer::{TrainConfig, batches, initial_params, train};

/// Updates compared with PyTorch.
const UPDATES: usize = 50;

/// The cases: every cell, both tasks and losses, clipping that binds, and none.
fn pytorch_cases() -> Vec<(&'static str, TrainConfig)> {
    let config = |kind, lag, cell, clip, lr| TrainConfig {
        task: Task { kind, lag },
        cell,
        init: InitSpec::default(),
        hidden: 8,
        batch: 4,
        steps: UPDATES,
        adam: AdamConfig { lr, ..AdamConfig::default() },
        clip,
        seed: 11,
        probe_every: 0,
        threshold: 1e-3,
    };
    vec![
        ("lstm-copy-clip", config(TaskKind::Copy, 5, CellKind::Lstm, Some(0.5), 0.01)),
        ("gru-adding", config(TaskKind::Adding, 12, CellKind::Gru, None, 0.02)),
        ("rnn-adding-clip", config(TaskKind::Adding, 12, CellKind::Rnn, Some(1.0), 0.01)),
        ("rnn-relu-copy-clip", config(TaskKind::Copy, 3, CellKind::RnnRelu, Some(0.2), 0.005)),
    ]
}

/// A case's inputs as torch reads them: the model in PyTorch's layout (with `head.*`), then per
/// update `x{k}` (T, B, I) and `target{k}` (classes (T, B) or sums (B), as f64); and its config.
fn case_inputs(c: &TrainConfig) -> (Vec<u8>, String) {
    let mut tensors = initial_params(c).to_tensors();
    for (k, b) in batches(c).take(UPDATES).enumerate() {
        let (t, n, i) = (b.steps, b.batch, b.x.nrows());
        // Column t·B + b of the I × T·B matrix is step t of sequence b: its column-major data is
        // the C-order (T, B, I) array.
        tensors.push((format!("x{k}"), vec![t, n, i], b.x.as_slice().to_vec()));
        tensors.push(match &b.target {
            Target::Classes(c) => (format!("target{k}"), vec![t, n], c.iter().map(|&c| c as f64).collect()),
            Target::Sum(s) => (format!("target{k}"), vec![n], s.clone()),
        });
    }
    let config = format!(
        r#"{{"cell": "{}", "task": "{}", "lag": {}, "hidden": {}, "batch": {}, "updates": {UPDATES}, "lr": {}, "clip": {}}}"#,
        c.cell,
        c.task.kind.name(),
        c.task.lag,
        c.hidden,
        c.batch,
        c.adam.lr,
        c.clip.map_or("null".to_string(), |c| c.to_string())
    );
    (to_safetensors_bytes(&tensors).unwrap(), config)
}

#[test]
#[ignore = "writes the inputs for benches/peers/train_check.py"]
fn export_pytorch_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pytorch-cases");
    for (name, c) in pytorch_cases() {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let (bytes, config) = case_inputs(&c);
        std::fs::write(dir.join("inputs.safetensors"), bytes).unwrap();
        std::fs::write(dir.join("config.json"), config).unwrap();
    }
}

#[test]
fn fifty_updates_match_pytorch_in_f64() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/train/pytorch.csv");
    let mut rows = csv::Reader::from_path(&path).unwrap();
    let mut expected: Vec<(String, String, usize, f64, f64)> = Vec::new();
    for r in rows.deserialize() {
        expected.push(r.unwrap());
    }
    let cases = pytorch_cases();
    assert_eq!(expected.len(), cases.len() * UPDATES, "{} rows", expected.len());
    for (name, c) in &cases {
        let torch: Vec<&(String, String, usize, f64, f64)> = expected.iter().filter(|r| r.0 == *name).collect();
        assert_eq!(torch.len(), UPDATES, "{name}");
        let hash = format!("{:016x}", gradlab::experiment::grid::fnv1a(&case_inputs(c).0));
        assert_eq!(torch[0].1, hash, "{name}: the fixture was made from other inputs; regenerate it");
        let run = train::<f64>(c, |_| {});
        let (mut clipped, mut worst) = (0, 0.0f64);
        for (k, t) in torch.iter().enumerate() {
            let r = &run.log[k];
            assert_eq!(t.2, k);
            for (what, ours, theirs) in [("loss", r.loss, t.3), ("grad_norm", r.grad_norm, t.4)] {
                let rel = ((ours - theirs) / theirs).abs();
                assert!(rel <= 1e-9, "{name} update {k} {what}: gradlab {ours}, torch {theirs} (rel {rel:e})");
                worst = worst.max(rel);
            }
            clipped += r.clipped as usize;
        }
        // Clipping binds where it is set (else the clipped path is untested), and never without.
        match c.clip {
            Some(_) => assert!(clipped > 0, "{name}: clipping never bound"),
            None => assert_eq!(clipped, 0),
        }
        eprintln!("{name}: {UPDATES} updates, largest relative difference from torch {worst:.1e}, clipped {clipped}");
        let first = (run.log[0].loss, run.log[UPDATES - 1].loss);
        assert!(first.1 < first.0, "{name}: 50 updates lower the loss: {first:?}");
    }
}
