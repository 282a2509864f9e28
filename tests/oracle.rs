//! The reference cases in `tests/fixtures/oracle/` (independent autodiff, cross-checked against
//! PyTorch): every gradient and forward output must match to 1e-9 relative.

mod common;

use common::{elementwise_rel_err, rel_err, worse};
use gradlab::bptt::gradients;
use gradlab::model_file::{forward_tensors, gradient_tensors, load_inputs, load_params, require_targets};
use gradlab::tensors::TensorFile;
use std::path::PathBuf;

const TOL: f64 = 1e-9;

pub fn case_dirs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oracle");
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    assert_eq!(dirs.len(), 7, "expected the 7 oracle cases in {}", root.display());
    dirs
}

/// Checks one case, returning the worst relative errors over all its tensors: norm-wise, and
/// element by element for every element above 1e-6 of its tensor's largest.
fn check_case(dir: &std::path::Path) -> (f64, f64) {
    let weights = TensorFile::read(dir.join("weights.safetensors")).unwrap();
    let input = TensorFile::read(dir.join("input.safetensors")).unwrap();
    let params = load_params::<f64>(&weights, None).unwrap();
    let inputs = load_inputs(&input, &params).unwrap();
    let targets = require_targets(&input, &params, &inputs, None).unwrap();
    let (tape, loss, grads) = gradients(&params, &inputs, &targets);
    let ours = gradient_tensors(&grads, loss, inputs.steps, inputs.batch).into_iter().chain(forward_tensors(&tape));
    let mut expected_names: Vec<String> = Vec::new();
    let mut worst = (0.0_f64, 0.0_f64);
    for file in ["grads.safetensors", "forward.safetensors"] {
        let reference = TensorFile::read(dir.join(file)).unwrap();
        expected_names.extend(reference.names().map(String::from));
    }
    let mut seen = 0;
    for (name, shape, values) in ours {
        let file = if ["y", "output", "h_n", "c_n"].contains(&name.as_str()) {
            "forward.safetensors"
        } else {
            "grads.safetensors"
        };
        let reference = TensorFile::read(dir.join(file)).unwrap();
        let (ref_shape, ref_values) = reference.floats::<f64>(&name, &vec![None; shape.len()], "reference").unwrap();
        assert_eq!(shape, ref_shape, "{}: {name}", dir.display());
        let (norm_wise, element_wise) =
            (rel_err(&name, &values, &ref_values), elementwise_rel_err(&name, &values, &ref_values, 1e-6));
        assert!(
            worse(norm_wise, element_wise) <= TOL,
            "{}: {name} relative error {norm_wise:.2e} / {element_wise:.2e}",
            dir.display()
        );
        worst.0 = worse(worst.0, norm_wise);
        worst.1 = worse(worst.1, element_wise);
        seen += 1;
    }
    assert_eq!(
        seen,
        expected_names.len(),
        "{}: tensors compared vs in the reference files {expected_names:?}",
        dir.display()
    );
    worst
}

#[test]
fn gradients_and_forward_outputs_match_the_oracle() {
    for dir in case_dirs() {
        let (n, e) = check_case(&dir);
        println!(
            "{:<40} worst relative error: norm-wise {n:.2e}, element-wise {e:.2e}",
            dir.file_name().unwrap().to_string_lossy()
        );
    }
}
