//! Model parameters in PyTorch's layout (THEORY.md §1): per layer `weight_ih_l{k}` [G·H, I_k],
//! `weight_hh_l{k}` [G·H, H], `bias_ih_l{k}`, `bias_hh_l{k}` [G·H], and an optional linear head.
//! The same struct holds gradients, so naming, export and gradient checks are written once.

use crate::cell::CellKind;
use crate::error::{Error, Result};
use crate::scalar::Scalar;
use nalgebra::{DMatrix, DVector};

/// One recurrent layer's weights; gate blocks are stacked in the cell's gate order.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerParams<T: Scalar> {
    pub weight_ih: DMatrix<T>,
    pub weight_hh: DMatrix<T>,
    pub bias_ih: DVector<T>,
    pub bias_hh: DVector<T>,
}

/// The optional linear read-out y_t = V h_t + c of the top layer.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadParams<T: Scalar> {
    pub weight: DMatrix<T>,
    pub bias: DVector<T>,
}

/// A stacked recurrent network (or its gradient), shape-checked on construction.
#[derive(Clone, Debug, PartialEq)]
pub struct Params<T: Scalar> {
    kind: CellKind,
    hidden: usize,
    input: usize,
    layers: Vec<LayerParams<T>>,
    head: Option<HeadParams<T>>,
}

impl<T: Scalar> Params<T> {
    /// Checks every shape against `kind`, the hidden size (from `weight_hh_l0`) and the input size
    /// (from `weight_ih_l0`).
    pub fn new(kind: CellKind, layers: Vec<LayerParams<T>>, head: Option<HeadParams<T>>) -> Result<Self> {
        let first = layers.first().ok_or_else(|| Error::MissingTensor {
            tensor: "weight_ih_l0".into(),
            why: "a model needs at least one layer".into(),
        })?;
        let hidden = first.weight_hh.ncols();
        let input = first.weight_ih.ncols();
        let g = kind.gates() * hidden;
        if hidden == 0 || input == 0 {
            return Err(Error::Shape {
                tensor: if hidden == 0 { "weight_hh_l0" } else { "weight_ih_l0" }.into(),
                expected: "a non-zero number of columns".into(),
                found: vec![g, 0],
            });
        }
        for (k, l) in layers.iter().enumerate() {
            let i_k = if k == 0 { input } else { hidden };
            check_matrix(&format!("weight_ih_l{k}"), &l.weight_ih, g, i_k)?;
            check_matrix(&format!("weight_hh_l{k}"), &l.weight_hh, g, hidden)?;
            check_vector(&format!("bias_ih_l{k}"), &l.bias_ih, g)?;
            check_vector(&format!("bias_hh_l{k}"), &l.bias_hh, g)?;
        }
        if let Some(h) = &head {
            let o = h.weight.nrows();
            check_matrix("head.weight", &h.weight, o, hidden)?;
            check_vector("head.bias", &h.bias, o)?;
        }
        Ok(Params { kind, hidden, input, layers, head })
    }

    /// All-zero parameters of the same shapes (the gradient accumulator).
    pub fn zeros_like(&self) -> Self {
        let mut z = self.clone();
        for (_, s) in z.slices_mut() {
            s.fill(T::zero());
        }
        z
    }

    pub fn kind(&self) -> CellKind {
        self.kind
    }
    /// Hidden size H.
    pub fn hidden(&self) -> usize {
        self.hidden
    }
    /// Input size I of layer 0.
    pub fn input(&self) -> usize {
        self.input
    }
    /// Output size: the head's rows, or H without a head.
    pub fn output(&self) -> usize {
        self.head.as_ref().map_or(self.hidden, |h| h.weight.nrows())
    }
    pub fn layers(&self) -> &[LayerParams<T>] {
        &self.layers
    }
    pub fn head(&self) -> Option<&HeadParams<T>> {
        self.head.as_ref()
    }
    /// Mutable layers; shapes must not change (kernels trust them).
    pub(crate) fn layers_mut(&mut self) -> &mut [LayerParams<T>] {
        &mut self.layers
    }
    pub(crate) fn head_mut(&mut self) -> Option<&mut HeadParams<T>> {
        self.head.as_mut()
    }

    /// Every tensor as (PyTorch name, PyTorch shape, row-major values), layer by layer, head last.
    pub fn to_tensors(&self) -> Vec<(String, Vec<usize>, Vec<T>)> {
        let matrix =
            |name: String, m: &DMatrix<T>| (name, vec![m.nrows(), m.ncols()], m.transpose().as_slice().to_vec());
        let vector = |name: String, v: &DVector<T>| (name, vec![v.len()], v.as_slice().to_vec());
        let mut out = Vec::new();
        for (k, l) in self.layers.iter().enumerate() {
            out.push(matrix(format!("weight_ih_l{k}"), &l.weight_ih));
            out.push(matrix(format!("weight_hh_l{k}"), &l.weight_hh));
            out.push(vector(format!("bias_ih_l{k}"), &l.bias_ih));
            out.push(vector(format!("bias_hh_l{k}"), &l.bias_hh));
        }
        if let Some(h) = &self.head {
            out.push(matrix("head.weight".into(), &h.weight));
            out.push(vector("head.bias".into(), &h.bias));
        }
        out
    }

    /// Every tensor's storage (column-major for matrices) with its name, for element-wise work
    /// such as gradient checks. The order matches between two `Params` of the same shapes.
    pub fn slices_mut(&mut self) -> Vec<(String, &mut [T])> {
        let mut out: Vec<(String, &mut [T])> = Vec::new();
        for (k, l) in self.layers.iter_mut().enumerate() {
            out.push((format!("weight_ih_l{k}"), l.weight_ih.as_mut_slice()));
            out.push((format!("weight_hh_l{k}"), l.weight_hh.as_mut_slice()));
            out.push((format!("bias_ih_l{k}"), l.bias_ih.as_mut_slice()));
            out.push((format!("bias_hh_l{k}"), l.bias_hh.as_mut_slice()));
        }
        if let Some(h) = &mut self.head {
            out.push(("head.weight".into(), h.weight.as_mut_slice()));
            out.push(("head.bias".into(), h.bias.as_mut_slice()));
        }
        out
    }

    /// Converts every value to another scalar type.
    pub fn cast<U: Scalar>(&self) -> Params<U> {
        let m = |a: &DMatrix<T>| a.map(|v| U::of(v.as_f64()));
        let v = |a: &DVector<T>| a.map(|v| U::of(v.as_f64()));
        Params {
            kind: self.kind,
            hidden: self.hidden,
            input: self.input,
            layers: self
                .layers
                .iter()
                .map(|l| LayerParams {
                    weight_ih: m(&l.weight_ih),
                    weight_hh: m(&l.weight_hh),
                    bias_ih: v(&l.bias_ih),
                    bias_hh: v(&l.bias_hh),
                })
                .collect(),
            head: self.head.as_ref().map(|h| HeadParams { weight: m(&h.weight), bias: v(&h.bias) }),
        }
    }
}

fn check_matrix<T: Scalar>(name: &str, m: &DMatrix<T>, rows: usize, cols: usize) -> Result<()> {
    if m.shape() != (rows, cols) {
        return Err(Error::Shape {
            tensor: name.into(),
            expected: format!("[{rows}, {cols}]"),
            found: vec![m.nrows(), m.ncols()],
        });
    }
    Ok(())
}

fn check_vector<T: Scalar>(name: &str, v: &DVector<T>, len: usize) -> Result<()> {
    if v.len() != len {
        return Err(Error::Shape { tensor: name.into(), expected: format!("[{len}]"), found: vec![v.len()] });
    }
    Ok(())
}
