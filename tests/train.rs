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
