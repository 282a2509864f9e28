//! Probes against the reference cases (`tests/fixtures/oracle/*/probe.csv`, `decomp.csv`,
//! `lyapunov.csv`, recomputed there at 40 digits): log-norms to 1e-8 absolute, the LSTM
//! decomposition to 1e-8 relative, every Lyapunov exponent to 1e-8.

mod common;

use gradlab::bptt::forward;
use gradlab::model_file::{load_inputs, load_params};
use gradlab::output::csv_bytes;
use gradlab::probe::{LyapunovOptions, Quantity, jacobian_flow, lstm_decomposition, lyapunov_rows};
use gradlab::tensors::TensorFile;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

type Record = HashMap<String, String>;

fn records(bytes: &[u8]) -> Vec<Record> {
    csv::Reader::from_reader(bytes).deserialize().map(|r| r.unwrap()).collect()
}

fn num(r: &Record, k: &str) -> f64 {
    r[k].parse().unwrap_or_else(|_| panic!("column {k}: {:?}", r[k]))
}

fn key(r: &Record, cols: &[&str]) -> String {
    cols.iter().map(|c| r[*c].as_str()).collect::<Vec<_>>().join(",")
}

/// Matches every reference row by `key_cols`, and checks that we produce no other rows.
fn compare(ours: &[Record], reference: &[Record], key_cols: &[&str], check: impl Fn(&Record, &Record) -> f64) -> f64 {
    let by_key: HashMap<String, &Record> = ours.iter().map(|r| (key(r, key_cols), r)).collect();
    assert_eq!(ours.len(), reference.len(), "row counts differ");
    reference
        .iter()
        .map(|r| check(by_key.get(&key(r, key_cols)).unwrap_or_else(|| panic!("no row {}", key(r, key_cols))), r))
        .fold(0.0, common::worse)
}

fn single_layer_cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oracle");
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.join("probe.csv").exists()).collect();
    v.sort();
    assert_eq!(v.len(), 6);
    v
}

#[test]
fn probes_match_the_reference_cases() {
    for dir in single_layer_cases() {
        let params = load_params::<f64>(&TensorFile::read(dir.join("weights.safetensors")).unwrap(), None).unwrap();
        let inputs = load_inputs(&TensorFile::read(dir.join("input.safetensors")).unwrap(), &params).unwrap();
        let tape = forward(&params, &inputs);
        let batches = 0..inputs.batch;
        let name = dir.file_name().unwrap().to_string_lossy().to_string();

        let flow: Vec<_> =
            batches.clone().flat_map(|b| jacobian_flow(&params, &tape, 0, b, &Quantity::PRODUCTS)).collect();
        let ours = records(&csv_bytes(&flow).unwrap());
        let reference = records(&std::fs::read(dir.join("probe.csv")).unwrap());
        let worst = compare(&ours, &reference, &["cell", "batch", "step", "distance", "quantity"], |a, b| {
            let mut e = 0.0_f64;
            for col in ["log_spectral_norm", "log_frobenius_norm"] {
                e = common::worse(e, (num(a, col) - num(b, col)).abs());
            }
            for col in ["spectral_norm", "frobenius_norm"] {
                e = common::worse(e, (num(a, col) / num(b, col)).ln().abs());
            }
            e
        });
        assert!(worst <= 1e-8, "{name}: probe.csv log-norm error {worst:.2e}");

        let lyap: Vec<_> = batches
            .clone()
            .flat_map(|b| lyapunov_rows(&params, &tape, 0, b, &LyapunovOptions::finite_time(None)))
            .collect();
        let ours_l = records(&csv_bytes(&lyap).unwrap());
        let reference_l = records(&std::fs::read(dir.join("lyapunov.csv")).unwrap());
        let worst_l = compare(&ours_l, &reference_l, &["cell", "batch", "index"], |a, b| {
            (num(a, "exponent") - num(b, "exponent")).abs()
        });
        assert!(worst_l <= 1e-8, "{name}: Lyapunov exponent error {worst_l:.2e}");

        let mut worst_d = 0.0;
        if dir.join("decomp.csv").exists() {
            let dec: Vec<_> = batches.clone().flat_map(|b| lstm_decomposition(&params, &tape, 0, b)).collect();
            let ours_d = records(&csv_bytes(&dec).unwrap());
            let reference_d = records(&std::fs::read(dir.join("decomp.csv")).unwrap());
            worst_d = compare(&ours_d, &reference_d, &["batch", "step", "term"], |a, b| {
                ["spectral_norm", "frobenius_norm", "mean_abs_diag"]
                    .iter()
                    .map(|c| ((num(a, c) - num(b, c)) / num(b, c)).abs())
                    .fold(0.0, common::worse)
            });
            assert!(worst_d <= 1e-8, "{name}: decomposition relative error {worst_d:.2e}");
        }
        println!("{name:<34} probe {worst:.1e}  lyapunov {worst_l:.1e}  decomp {worst_d:.1e}");
    }
}
