//! The `gradlab` binary end to end: reference cases reproduced through files, and every bad input
//! of the `grad` command answered with exit code 2 and a one-line message naming the problem.

mod common;

use gradlab::tensors::TensorFile;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

type Raw = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

fn case(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oracle").join(name)
}

const LSTM: &str = "lstm_h16_i5_t10_b3_mse_orth0.9"; // T=10, B=3, I=5, H=16, no head, h0/c0 given
const GRU_CE: &str = "gru_h3_i5_t2_b3_ce_gauss"; // T=2, B=3, O=4 head, labels

fn read_raw(path: &Path) -> Raw {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.iter().map(|(n, v)| (n.to_string(), (v.dtype(), v.shape().to_vec(), v.data().to_vec()))).collect()
}

fn write_raw(path: &Path, raw: &Raw) {
    let views: Vec<(&str, TensorView)> =
        raw.iter().map(|(n, (d, s, b))| (n.as_str(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn gradlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradlab")).args(args).output().unwrap()
}

/// `gradlab grad --weights w --input x --out out` plus `extra` flags.
fn grad_files(w: &Path, x: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args =
        vec!["grad", "--weights", w.to_str().unwrap(), "--input", x.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    gradlab(&args)
}

/// Runs `grad` on (possibly modified) copies of a case's files; returns exit code and stderr.
fn grad_with(
    case_name: &str,
    edit_weights: impl FnOnce(&mut Raw),
    edit_input: impl FnOnce(&mut Raw),
    extra: &[&str],
) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let (w, x, out) =
        (dir.path().join("w.safetensors"), dir.path().join("x.safetensors"), dir.path().join("g.safetensors"));
    let mut wr = read_raw(&case(case_name).join("weights.safetensors"));
    let mut xr = read_raw(&case(case_name).join("input.safetensors"));
    edit_weights(&mut wr);
    edit_input(&mut xr);
    write_raw(&w, &wr);
    write_raw(&x, &xr);
    let o = grad_files(&w, &x, &out, extra);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    if o.status.code() == Some(2) {
        assert!(!out.exists(), "a failed run must not leave an output file");
    }
    (o.status.code().unwrap_or(-1), stderr)
}

/// Asserts exit code 2, a single-line message, no panic, and that it mentions every `needle`.
fn assert_rejected((code, stderr): (i32, String), needles: &[&str]) {
    assert_eq!(code, 2, "expected exit code 2, stderr: {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "message lacks {n:?}: {stderr}");
    }
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn set_f64(raw: &mut Raw, name: &str, index: usize, value: f64) {
    raw.get_mut(name).unwrap().2[index * 8..index * 8 + 8].copy_from_slice(&value.to_le_bytes());
}

fn no_edit(_: &mut Raw) {}

#[test]
fn grad_reproduces_every_reference_case_through_files() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(case("")).unwrap() {
        let c = entry.unwrap().path();
        if !c.is_dir() {
            continue;
        }
        let out = dir.path().join(format!("{}.safetensors", c.file_name().unwrap().to_string_lossy()));
        let o = grad_files(&c.join("weights.safetensors"), &c.join("input.safetensors"), &out, &[]);
        assert!(o.status.success(), "{}: {}", c.display(), String::from_utf8_lossy(&o.stderr));
        let ours = TensorFile::read(&out).unwrap();
        let reference = TensorFile::read(c.join("grads.safetensors")).unwrap();
        assert_eq!(ours.names().collect::<Vec<_>>(), reference.names().collect::<Vec<_>>(), "{}", c.display());
        for name in reference.names() {
            assert_eq!(ours.dtype(name), Some(Dtype::F64));
            let shape: Vec<Option<usize>> = reference.shape(name).unwrap().iter().map(|&d| Some(d)).collect();
            let (_, a) = ours.floats::<f64>(name, &shape, "").unwrap();
            let (_, b) = reference.floats::<f64>(name, &shape, "").unwrap();
            let err = common::rel_err(&format!("{}: {name}", c.display()), &a, &b);
            assert!(err <= 1e-9, "{}: {name} relative error {err:.2e}", c.display());
        }
    }
}

#[test]
fn f32_weights_compute_and_write_f32() {
    let to_f32 = |raw: &mut Raw| {
        for (d, _, b) in raw.values_mut() {
            if *d == Dtype::F64 {
                *b = b
                    .chunks_exact(8)
                    .flat_map(|c| (f64::from_le_bytes(c.try_into().unwrap()) as f32).to_le_bytes())
                    .collect();
                *d = Dtype::F32;
            }
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (w, out) = (dir.path().join("w.safetensors"), dir.path().join("g.safetensors"));
    let mut wr = read_raw(&case(LSTM).join("weights.safetensors"));
    to_f32(&mut wr);
    write_raw(&w, &wr);
    let x = case(LSTM).join("input.safetensors");
    let o = grad_files(&w, &x, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("f32"));
    assert_eq!(TensorFile::read(&out).unwrap().dtype("weight_hh_l0"), Some(Dtype::F32));
    let o = grad_files(&w, &x, &out, &["--precision", "f64", "--force"]);
    assert!(o.status.success());
    assert_eq!(TensorFile::read(&out).unwrap().dtype("weight_hh_l0"), Some(Dtype::F64));
}

#[test]
fn missing_and_unknown_tensors_are_named() {
    assert_rejected(
        grad_with(LSTM, |w| drop(w.remove("bias_hh_l0")), no_edit, &[]),
        &["w.safetensors", "missing tensor `bias_hh_l0`"],
    );
    assert_rejected(
        grad_with(LSTM, |w| drop(w.remove("weight_hh_l0")), no_edit, &[]),
        &["missing tensor `weight_hh_l0`"],
    );
    assert_rejected(grad_with(LSTM, no_edit, |x| drop(x.remove("x")), &[]), &["x.safetensors", "missing tensor `x`"]);
    assert_rejected(
        grad_with(
            LSTM,
            |w| drop(w.insert("weight_hr_l0".into(), (Dtype::F64, vec![1], f64_bytes(&[0.0])))),
            no_edit,
            &[],
        ),
        &["unknown tensor `weight_hr_l0`", "weight_ih_l{k}"],
    );
    assert_rejected(
        grad_with(LSTM, no_edit, |x| drop(x.insert("xx".into(), (Dtype::F64, vec![1], f64_bytes(&[0.0])))), &[]),
        &["unknown tensor `xx`"],
    );
    assert_rejected(
        grad_with(
            "rnn_h3_i5_t2_b3_ce_gauss",
            no_edit,
            |x| drop(x.insert("c0".into(), (Dtype::F64, vec![1, 3, 3], f64_bytes(&[0.0; 9])))),
            &[],
        ),
        &["unknown tensor `c0`", "only an LSTM"],
    );
    // A head needs both of its tensors.
    assert_rejected(grad_with(GRU_CE, |w| drop(w.remove("head.bias")), no_edit, &[]), &["missing tensor `head.bias`"]);
}

#[test]
fn layer_numbers_are_range_checked_before_anything_is_sized_by_them() {
    let extra = |name: &'static str| {
        move |w: &mut Raw| drop(w.insert(name.into(), (Dtype::F64, vec![64], f64_bytes(&[0.0; 64]))))
    };
    // Once an abort on allocation, once silently ignored (k + 1 wrapped to 0).
    assert_rejected(
        grad_with(LSTM, extra("bias_hh_l1000000000000"), no_edit, &[]),
        &["tensor `bias_hh_l1000000000000`", "layer 1000000000000", "no tensor of layer 1"],
    );
    assert_rejected(
        grad_with(LSTM, extra("bias_hh_l18446744073709551615"), no_edit, &[]),
        &["tensor `bias_hh_l18446744073709551615`", "no tensor of layer 1"],
    );
    assert_rejected(
        grad_with(LSTM, extra("bias_hh_l99999999999999999999999"), no_edit, &[]),
        &["unknown tensor `bias_hh_l99999999999999999999999`"],
    );
}

/// Runs `grad` on edited copies of `case_name`'s files and returns the gradients file's bytes.
fn grads_of(case_name: &str, edit_weights: impl FnOnce(&mut Raw), extra: &[&str]) -> (Vec<u8>, String) {
    let dir = tempfile::tempdir().unwrap();
    let (w, out) = (dir.path().join("w.safetensors"), dir.path().join("g.safetensors"));
    let mut wr = read_raw(&case(case_name).join("weights.safetensors"));
    edit_weights(&mut wr);
    write_raw(&w, &wr);
    let o = grad_files(&w, &case(case_name).join("input.safetensors"), &out, extra);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (std::fs::read(&out).unwrap(), String::from_utf8_lossy(&o.stdout).to_string())
}

#[test]
fn a_wrapped_modules_state_dict_is_read_with_prefix_and_hinted_without() {
    let wrap = |w: &mut Raw| {
        let layers: Raw = std::mem::take(w).into_iter().map(|(n, t)| (format!("rnn.{n}"), t)).collect();
        *w = layers;
        w.insert("fc.weight".into(), (Dtype::F64, vec![1], f64_bytes(&[1.0])));
    };
    assert_rejected(grad_with(LSTM, wrap, no_edit, &[]), &["missing tensor `weight_hh_l0`", "--prefix rnn."]);
    let (plain, _) = grads_of(LSTM, no_edit, &[]);
    let (wrapped, report) = grads_of(LSTM, wrap, &["--prefix", "rnn."]);
    assert_eq!(plain, wrapped, "the prefixed file must give the plain file's gradients");
    assert!(report.contains("skipped 1 tensor(s) not under --prefix rnn.: fc.weight"), "{report}");
    assert_rejected(grad_with(LSTM, wrap, no_edit, &["--prefix", "model."]), &["--prefix \"model.\"", "rnn."]);
}

#[test]
fn f16_and_bf16_weights_are_widened_exactly() {
    // Rounds every F64 weight to `dtype` and stores it either so or as the F32 of the rounded value.
    fn narrow(dtype: Dtype, store_as_f32: bool) -> impl FnOnce(&mut Raw) {
        move |raw: &mut Raw| {
            for (d, _, b) in raw.values_mut() {
                let values: Vec<f64> = b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
                let rounded: Vec<f32> = values
                    .iter()
                    .map(|&v| match dtype {
                        Dtype::F16 => half::f16::from_f64(v).to_f32(),
                        _ => half::bf16::from_f64(v).to_f32(),
                    })
                    .collect();
                *b = if store_as_f32 {
                    rounded.iter().flat_map(|v| v.to_le_bytes()).collect()
                } else if dtype == Dtype::F16 {
                    rounded.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect()
                } else {
                    rounded.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect()
                };
                *d = if store_as_f32 { Dtype::F32 } else { dtype };
            }
        }
    }
    for dtype in [Dtype::F16, Dtype::BF16] {
        let (half_file, report) = grads_of(LSTM, narrow(dtype, false), &[]);
        let (f32_file, _) = grads_of(LSTM, narrow(dtype, true), &[]);
        assert!(report.contains("f32"), "{dtype:?} weights compute in f32 by default: {report}");
        assert_eq!(half_file, f32_file, "{dtype:?} weights must read as the F32 of the same values");
    }
    // The two formats round differently, so a reader that mixed them up would not pass both.
    let (f16, _) = grads_of(LSTM, narrow(Dtype::F16, false), &[]);
    let (bf16, _) = grads_of(LSTM, narrow(Dtype::BF16, false), &[]);
    assert_ne!(f16, bf16);
}

#[test]
fn wrong_shapes_and_dtypes_are_named_with_expected_and_found() {
    assert_rejected(
        grad_with(LSTM, |w| w.get_mut("bias_ih_l0").unwrap().1 = vec![32, 2], no_edit, &[]),
        &["tensor `bias_ih_l0`", "expected shape [64]", "found [32, 2]"],
    );
    assert_rejected(
        grad_with(
            LSTM,
            |w| {
                let t = w.get_mut("weight_hh_l0").unwrap();
                t.1 = vec![48, 20];
                t.2.truncate(48 * 20 * 8);
            },
            no_edit,
            &[],
        ),
        &["weight_hh_l0", "[G·H, H]", "found [48, 20]"],
    );
    // x's input size disagrees with weight_ih_l0.
    assert_rejected(
        grad_with(LSTM, no_edit, |x| x.get_mut("x").unwrap().1 = vec![10, 5, 3], &[]),
        &["tensor `x`", "expected shape [*, *, 5]", "found [10, 5, 3]"],
    );
    // The batch of h0 differs from x's.
    assert_rejected(
        grad_with(
            LSTM,
            no_edit,
            |x| {
                let h0 = x.get_mut("h0").unwrap();
                h0.1 = vec![1, 2, 16];
                h0.2.truncate(2 * 16 * 8);
            },
            &[],
        ),
        &["tensor `h0`", "expected shape [1, 3, 16]", "found [1, 2, 16]"],
    );
    assert_rejected(
        grad_with(
            LSTM,
            no_edit,
            |x| {
                let t = x.get_mut("x").unwrap();
                t.0 = Dtype::U8;
                t.2.truncate(t.2.len() / 8);
            },
            &[],
        ),
        &["tensor `x`", "expected dtype F32, F64, F16 or BF16, found U8"],
    );
    assert_rejected(
        grad_with(
            GRU_CE,
            no_edit,
            |x| {
                let l = x.get_mut("labels").unwrap();
                l.0 = Dtype::F64;
            },
            &[],
        ),
        &["tensor `labels`", "integer", "found F64"],
    );
}

#[test]
fn bad_values_are_reported_with_their_position() {
    assert_rejected(
        grad_with(LSTM, |w| set_f64(w, "weight_hh_l0", 17, f64::NAN), no_edit, &[]),
        &["tensor `weight_hh_l0`", "[1, 1]", "NaN"],
    );
    assert_rejected(grad_with(LSTM, no_edit, |x| set_f64(x, "x", 0, f64::INFINITY), &[]), &["tensor `x`", "inf"]);
    assert_rejected(
        grad_with(LSTM, no_edit, |x| set_f64(x, "target", 3, f64::NEG_INFINITY), &[]),
        &["tensor `target`", "-inf"],
    );
    assert_rejected(
        grad_with(GRU_CE, no_edit, |x| x.get_mut("labels").unwrap().2[8..16].copy_from_slice(&7i64.to_le_bytes()), &[]),
        &["tensor `labels`", "label 7", "[t=0, b=1]", "0..4"],
    );
    assert_rejected(
        grad_with(
            GRU_CE,
            no_edit,
            |x| x.get_mut("labels").unwrap().2[0..8].copy_from_slice(&(-1i64).to_le_bytes()),
            &[],
        ),
        &["label -1"],
    );
    assert_rejected(
        grad_with(
            LSTM,
            no_edit,
            |x| {
                let t = x.get_mut("x").unwrap();
                t.1 = vec![0, 3, 5];
                t.2.clear();
            },
            &[],
        ),
        &["tensor `x`", "T = 0"],
    );
}

#[test]
fn loss_is_taken_from_the_file_and_contradictions_are_errors() {
    assert_rejected(
        grad_with(LSTM, no_edit, |x| drop(x.insert("labels".into(), (Dtype::I64, vec![10, 3], vec![0; 240]))), &[]),
        &["both `target` and `labels`"],
    );
    assert_rejected(grad_with(LSTM, no_edit, |x| drop(x.remove("target")), &[]), &["neither `target`", "nor `labels`"]);
    assert_rejected(grad_with(LSTM, no_edit, no_edit, &["--loss", "ce"]), &["--loss ce contradicts", "`target`"]);
    assert_rejected(
        grad_with(LSTM, no_edit, no_edit, &["--cell", "gru"]),
        &["--cell gru contradicts", "[64, 16]", "lstm"],
    );
    assert_eq!(grad_with(LSTM, no_edit, no_edit, &["--cell", "lstm", "--loss", "mse"]).0, 0);
}

#[test]
fn files_that_are_not_safetensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.safetensors");
    let out = dir.path().join("g.safetensors");
    let x = case(LSTM).join("input.safetensors");
    let run = |w: &Path| {
        let o = grad_files(w, &x, &out, &[]);
        (o.status.code().unwrap(), String::from_utf8_lossy(&o.stderr).to_string())
    };
    let full = std::fs::read(case(LSTM).join("weights.safetensors")).unwrap();
    std::fs::write(&bad, &full[..full.len() - 100]).unwrap();
    assert_rejected(run(&bad), &["bad.safetensors", "not a valid safetensors file"]);
    std::fs::write(&bad, b"weight_ih_l0,1,2,3\n").unwrap();
    assert_rejected(run(&bad), &["bad.safetensors", "not a valid safetensors file"]);
    std::fs::write(&bad, b"").unwrap();
    assert_rejected(run(&bad), &["bad.safetensors", "not a valid safetensors file"]);
    assert_rejected(run(&dir.path().join("absent.safetensors")), &["absent.safetensors", "No such file"]);
}

#[test]
fn existing_outputs_and_inputs_are_never_overwritten_without_asking() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g.safetensors");
    std::fs::write(&out, b"precious").unwrap();
    let (w, x) = (case(LSTM).join("weights.safetensors"), case(LSTM).join("input.safetensors"));
    let o = grad_files(&w, &x, &out, &[]);
    assert_rejected(
        (o.status.code().unwrap(), String::from_utf8_lossy(&o.stderr).to_string()),
        &["g.safetensors", "already exists", "--force"],
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    let o = grad_files(&w, &x, &out, &["--force"]);
    assert!(o.status.success());
    assert!(TensorFile::read(&out).unwrap().contains("loss"));
    // Even with --force, an input is not an output.
    let copy = dir.path().join("w.safetensors");
    std::fs::copy(&w, &copy).unwrap();
    let o = grad_files(&copy, &x, &copy, &["--force"]);
    assert_rejected(
        (o.status.code().unwrap(), String::from_utf8_lossy(&o.stderr).to_string()),
        &["also an input file"],
    );
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&w).unwrap());
    // No temporary files are left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

#[test]
fn usage_errors_exit_with_code_2() {
    let o = gradlab(&["grad", "--weights", "w.safetensors"]);
    assert_eq!(o.status.code(), Some(2));
    let o = gradlab(&["grad", "--weights", "w", "--input", "x", "--out", "o", "--cell", "transformer"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("rnn, lstm, gru"));
}

#[test]
fn cli_definition_is_consistent() {
    use clap::CommandFactory;
    gradlab::cli::Cli::command().debug_assert();
}

#[test]
fn a_relu_rnn_is_chosen_by_flag_and_a_tanh_reading_is_said() {
    const RNN: &str = "rnn_h3_i5_t2_b3_ce_gauss";
    let (tanh, report) = grads_of(RNN, no_edit, &[]);
    assert!(report.contains("read as a tanh RNN") && report.contains("--cell rnn-relu"), "{report}");
    let (relu, report) = grads_of(RNN, no_edit, &["--cell", "rnn-relu"]);
    assert!(!report.contains("read as a tanh RNN") && report.starts_with("rnn-relu"), "{report}");
    assert_ne!(tanh, relu, "the nonlinearity changes the gradients");
    // The flag must still fit the layout.
    assert_rejected(
        grad_with(LSTM, no_edit, no_edit, &["--cell", "rnn-relu"]),
        &["--cell rnn-relu contradicts", "so the cell is lstm"],
    );
    assert_rejected(grad_with(RNN, no_edit, no_edit, &["--cell", "gru"]), &["so the cell is rnn or rnn-relu"]);
}
