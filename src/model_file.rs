//! Models and data in PyTorch's tensor layout (THEORY.md §1), to and from [`TensorFile`]s:
//! the cell from the gate count, the layer count from the names, the loss from `target` or
//! `labels`, every shape, dtype and value checked with an error that names the tensor.

use crate::bptt::{Grads, Inputs, Tape};
use crate::cell::CellKind;
use crate::error::{Error, Result};
use crate::loss::{LossKind, Targets};
use crate::params::{HeadParams, LayerParams, Params};
use crate::scalar::Scalar;
use crate::tensors::{NamedTensor, TensorFile};
use nalgebra::{DMatrix, DVector};
use safetensors::Dtype;

const LAYER_TENSORS: [&str; 4] = ["weight_ih_l", "weight_hh_l", "bias_ih_l", "bias_hh_l"];

/// Most layers a model file may hold (PyTorch's stacked RNNs rarely exceed a handful).
pub const MAX_LAYERS: usize = 1024;

/// Reads a weights file; with `prefix`, the tensors under it (see [`TensorFile::strip_prefix`]).
/// Returns the file and the names skipped.
pub fn read_weights(path: &std::path::Path, prefix: Option<&str>) -> Result<(TensorFile, Vec<String>)> {
    let file = TensorFile::read(path)?;
    match prefix {
        Some(p) => file.strip_prefix(p),
        None => Ok((file, Vec::new())),
    }
}

/// The report's line on a one-gate-block model read without `--cell`: the weights cannot tell a
/// tanh RNN from a ReLU one.
pub fn assumed_line(params_kind: CellKind, flag: Option<CellKind>) -> Option<String> {
    (params_kind == CellKind::Rnn && flag.is_none()).then(|| {
        "read as a tanh RNN (nn.RNN's default): the weights cannot tell; pass --cell rnn-relu for \
         nonlinearity='relu'"
            .to_string()
    })
}

/// The report's line on the tensors `--prefix` skipped, if any.
pub fn skipped_line(prefix: Option<&str>, skipped: &[String]) -> Option<String> {
    let prefix = prefix?;
    (!skipped.is_empty()).then(|| {
        let shown: Vec<&str> = skipped.iter().take(8).map(String::as_str).collect();
        let more = if skipped.len() > shown.len() {
            format!(" and {} more", skipped.len() - shown.len())
        } else {
            String::new()
        };
        format!("skipped {} tensor(s) not under --prefix {prefix}: {}{more}", skipped.len(), shown.join(", "))
    })
}

/// The cell a weights file holds: rows(weight_hh_l0) / H gate blocks.
pub fn detect_cell(weights: &TensorFile) -> Result<CellKind> {
    let name = "weight_hh_l0";
    let shape = weights.shape(name).ok_or_else(|| {
        let mut why = "the recurrent matrix of layer 0".to_string();
        if let Some(wrapped) = weights.names().find(|n| n.ends_with(".weight_hh_l0")) {
            let prefix = &wrapped[..wrapped.len() - name.len()];
            why += &format!("; the file has `{wrapped}`: pass --prefix {prefix} to read a wrapped module's state_dict");
        }
        weights.error(Error::MissingTensor { tensor: name.into(), why })
    })?;
    let bad = || {
        weights.error(Error::Shape {
            tensor: name.into(),
            expected: "[G·H, H] with G = 1 (rnn), 3 (gru) or 4 (lstm) gate blocks".into(),
            found: shape.to_vec(),
        })
    };
    match shape {
        &[rows, h] if h > 0 && rows % h == 0 => CellKind::from_gates(rows / h).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// The widest float dtype among the weights (F64 if any tensor is F64): the default precision.
pub fn weights_precision(weights: &TensorFile) -> Dtype {
    if weights.names().any(|n| weights.dtype(n) == Some(Dtype::F64)) { Dtype::F64 } else { Dtype::F32 }
}

/// Reads a model; `cell`, if given, must agree with the file.
pub fn load_params<T: Scalar>(weights: &TensorFile, cell: Option<CellKind>) -> Result<Params<T>> {
    let detected = detect_cell(weights)?;
    // The tanh and ReLU RNNs share one layout: the flag tells them apart.
    let kind = cell.filter(|flag| flag.gates() == detected.gates()).unwrap_or(detected);
    if let Some(flag) = cell
        && flag != kind
    {
        let shape = weights.shape("weight_hh_l0").unwrap_or_default();
        return Err(Error::Usage(format!(
            "--cell {flag} contradicts {}: weight_hh_l0 has shape {shape:?}, {} gate block(s) of H = {}, so the cell is {}",
            weights.path().display(),
            kind.gates(),
            shape[1],
            if kind.gates() == 1 { "rnn or rnn-relu" } else { kind.name() }
        )));
    }
    let expected_names = "weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, head.weight, head.bias";
    // Layer indices, checked to run 0..L−1 before anything is sized by them.
    let mut indices = std::collections::BTreeSet::new();
    for name in weights.names() {
        match layer_index(name) {
            Some(k) => {
                indices.insert((k, name));
            }
            None if name == "head.weight" || name == "head.bias" => {}
            None => {
                return Err(
                    weights.error(Error::UnknownTensor { tensor: name.into(), expected: expected_names.into() })
                );
            }
        }
    }
    let n_layers = indices.iter().map(|&(k, _)| k).collect::<std::collections::BTreeSet<_>>().len();
    if let Some(&(k, name)) = indices.iter().next_back()
        && (k >= n_layers || n_layers > MAX_LAYERS)
    {
        let problem = if n_layers > MAX_LAYERS {
            format!("{n_layers} layers, more than the {MAX_LAYERS} gradlab reads")
        } else {
            let gap = (0..k).find(|j| !indices.iter().any(|&(i, _)| i == *j)).expect("a gap below k");
            format!("layer {k}, but no tensor of layer {gap}: layers are numbered 0..L−1 without gaps")
        };
        return Err(weights.error(Error::Value { tensor: name.into(), problem }));
    }
    let h = weights.shape("weight_hh_l0").expect("checked by detect_cell")[1];
    let g = kind.gates() * h;
    let why = |k: usize| format!("layer {k} of {n_layers}: a layer needs weight_ih, weight_hh, bias_ih and bias_hh");
    let mut layers = Vec::with_capacity(n_layers);
    for k in 0..n_layers {
        let i_k = if k == 0 { None } else { Some(h) };
        let (shape, w_ih) = weights.floats::<T>(&format!("weight_ih_l{k}"), &[Some(g), i_k], &why(k))?;
        let (_, w_hh) = weights.floats::<T>(&format!("weight_hh_l{k}"), &[Some(g), Some(h)], &why(k))?;
        let (_, b_ih) = weights.floats::<T>(&format!("bias_ih_l{k}"), &[Some(g)], &why(k))?;
        let (_, b_hh) = weights.floats::<T>(&format!("bias_hh_l{k}"), &[Some(g)], &why(k))?;
        if shape[1] == 0 {
            return Err(weights.error(Error::Shape {
                tensor: "weight_ih_l0".into(),
                expected: format!("[{g}, I] with I ≥ 1"),
                found: shape,
            }));
        }
        layers.push(LayerParams {
            weight_ih: DMatrix::from_row_slice(g, shape[1], &w_ih),
            weight_hh: DMatrix::from_row_slice(g, h, &w_hh),
            bias_ih: DVector::from_vec(b_ih),
            bias_hh: DVector::from_vec(b_hh),
        });
    }
    let head = match (weights.contains("head.weight"), weights.contains("head.bias")) {
        (false, false) => None,
        (has_w, _) => {
            let why = "a head needs both head.weight and head.bias";
            let (shape, w) = weights.floats::<T>("head.weight", &[None, Some(h)], why)?;
            let o = shape[0];
            let missing = if has_w { "head.bias" } else { "head.weight" };
            if !weights.contains(missing) {
                return Err(weights.error(Error::MissingTensor { tensor: missing.into(), why: why.into() }));
            }
            let (_, b) = weights.floats::<T>("head.bias", &[Some(o)], why)?;
            if o == 0 {
                return Err(weights.error(Error::Shape {
                    tensor: "head.weight".into(),
                    expected: format!("[O, {h}] with O ≥ 1"),
                    found: shape,
                }));
            }
            Some(HeadParams { weight: DMatrix::from_row_slice(o, h, &w), bias: DVector::from_vec(b) })
        }
    };
    Params::new(kind, layers, head).map_err(|e| weights.error(e))
}

/// Reads `x` and optional `h0`/`c0` for `params`, after checking that the file holds nothing
/// but those and `target` or `labels`.
pub fn load_inputs<T: Scalar>(input: &TensorFile, params: &Params<T>) -> Result<Inputs<T>> {
    let (l, h, i) = (params.layers().len(), params.hidden(), params.input());
    let mut allowed = vec!["x", "h0", "target", "labels"];
    if params.kind().has_cell_state() {
        allowed.push("c0");
    }
    if let Some(name) = input.names().find(|n| !allowed.contains(n)) {
        let expected = if name == "c0" {
            format!("{}; only an LSTM has a cell state c0", allowed.join(", "))
        } else {
            allowed.join(", ")
        };
        return Err(input.error(Error::UnknownTensor { tensor: name.into(), expected }));
    }

    let (shape, x) = input.floats::<T>("x", &[None, None, Some(i)], "the input sequences [T, B, I]")?;
    let (steps, batch) = (shape[0], shape[1]);
    if steps == 0 || batch == 0 {
        let what = if steps == 0 { "T = 0: a sequence needs at least one step" } else { "B = 0: the batch is empty" };
        return Err(input.error(Error::Value { tensor: "x".into(), problem: format!("shape {shape:?}: {what}") }));
    }
    let x = DMatrix::from_vec(i, steps * batch, x);
    let mut inputs = Inputs::with_zero_state(params, x, steps, batch);
    for (name, states) in [("h0", &mut inputs.h0), ("c0", &mut inputs.c0)] {
        if input.contains(name) {
            let (_, v) = input.floats::<T>(name, &[Some(l), Some(batch), Some(h)], "")?;
            for (k, s) in states.iter_mut().enumerate() {
                s.copy_from_slice(&v[k * batch * h..(k + 1) * batch * h]);
            }
        }
    }
    Ok(inputs)
}

/// Reads `target` (loss mse) or `labels` (loss ce) for `inputs`; `None` if the file holds neither.
/// `loss`, if given, must agree with the file.
pub fn load_targets<T: Scalar>(
    input: &TensorFile,
    params: &Params<T>,
    inputs: &Inputs<T>,
    loss: Option<LossKind>,
) -> Result<Option<Targets<T>>> {
    let (steps, batch, o) = (inputs.steps, inputs.batch, params.output());
    let found = match (input.contains("target"), input.contains("labels")) {
        (true, false) => LossKind::Mse,
        (false, true) => LossKind::Ce,
        (false, false) => return Ok(None),
        (true, true) => {
            return Err(input.error(Error::Usage("holds both `target` and `labels`; give exactly one".into())));
        }
    };
    if let Some(flag) = loss
        && flag != found
    {
        let (tensor, flag_name, right) =
            if found == LossKind::Mse { ("target", "ce", "mse") } else { ("labels", "mse", "ce") };
        return Err(Error::Usage(format!(
            "--loss {flag_name} contradicts {}: it holds `{tensor}`, which goes with --loss {right}",
            input.path().display()
        )));
    }
    Ok(Some(match found {
        LossKind::Mse => {
            let (_, t) = input.floats::<T>("target", &[Some(steps), Some(batch), Some(o)], "")?;
            Targets::Mse(DMatrix::from_vec(o, steps * batch, t))
        }
        LossKind::Ce => {
            let (_, v) = input.integers("labels", &[Some(steps), Some(batch)], "")?;
            if let Some(pos) = v.iter().position(|&c| c < 0 || c >= o as i128) {
                return Err(input.error(Error::Value {
                    tensor: "labels".into(),
                    problem: format!(
                        "label {} at [t={}, b={}] is outside 0..{o} (the model has O = {o} outputs)",
                        v[pos],
                        pos / batch,
                        pos % batch
                    ),
                }));
            }
            Targets::Ce(v.into_iter().map(|c| c as usize).collect())
        }
    }))
}

/// [`load_targets`] for commands that need a loss: a file with neither tensor is an error.
pub fn require_targets<T: Scalar>(
    input: &TensorFile,
    params: &Params<T>,
    inputs: &Inputs<T>,
    loss: Option<LossKind>,
) -> Result<Targets<T>> {
    load_targets(input, params, inputs, loss)?.ok_or_else(|| {
        input.error(Error::Usage("holds neither `target` (loss mse) nor `labels` (loss ce); give exactly one".into()))
    })
}

/// Gradients as named tensors in PyTorch's layout: one per parameter, then `x` [T,B,I],
/// `h0` [L,B,H], `c0` [L,B,H] (LSTM) and `loss` [1].
pub fn gradient_tensors<T: Scalar>(grads: &Grads<T>, loss: T, steps: usize, batch: usize) -> Vec<NamedTensor<T>> {
    let mut out = grads.params.to_tensors();
    out.push(("x".into(), vec![steps, batch, grads.x.nrows()], grads.x.as_slice().to_vec()));
    out.push(stacked("h0", &grads.h0));
    if !grads.c0.is_empty() {
        out.push(stacked("c0", &grads.c0));
    }
    out.push(("loss".into(), vec![1], vec![loss]));
    out
}

/// Forward outputs as named tensors: `y` [T,B,O], `output` [T,B,H], `h_n` and `c_n` [L,B,H].
pub fn forward_tensors<T: Scalar>(tape: &Tape<T>) -> Vec<NamedTensor<T>> {
    let (t, b) = (tape.steps, tape.batch);
    let l = tape.layers.len();
    let mut out = vec![
        ("y".into(), vec![t, b, tape.y.nrows()], tape.y.as_slice().to_vec()),
        ("output".into(), vec![t, b, tape.hidden], tape.output().iter().copied().collect()),
    ];
    let h_n: Vec<T> = (0..l).flat_map(|k| tape.h_n(k).iter().copied().collect::<Vec<_>>()).collect();
    out.push(("h_n".into(), vec![l, b, tape.hidden], h_n));
    if tape.kind.has_cell_state() {
        let c_n: Vec<T> = (0..l).flat_map(|k| tape.c_n(k).iter().copied().collect::<Vec<_>>()).collect();
        out.push(("c_n".into(), vec![l, b, tape.hidden], c_n));
    }
    out
}

/// k for `weight_ih_l{k}` and the other per-layer names (k written without sign or leading zeros).
fn layer_index(name: &str) -> Option<usize> {
    let k = LAYER_TENSORS.iter().find_map(|p| name.strip_prefix(p))?;
    k.parse().ok().filter(|n: &usize| n.to_string() == k)
}

fn stacked<T: Scalar>(name: &str, per_layer: &[DMatrix<T>]) -> NamedTensor<T> {
    let (h, b) = per_layer[0].shape();
    let values = per_layer.iter().flat_map(|m| m.as_slice().iter().copied()).collect();
    (name.into(), vec![per_layer.len(), b, h], values)
}
