//! safetensors files: reading with checked dtypes, shapes and values, and atomic writing
//! (a temporary file in the target's folder, renamed into place).

use crate::error::{Error, Result};
use crate::scalar::Scalar;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One tensor as stored: dtype, shape and little-endian bytes.
#[derive(Clone, Debug)]
struct RawTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// The tensors of one safetensors file, by name. Accessors report errors with the file's path.
#[derive(Clone, Debug)]
pub struct TensorFile {
    path: PathBuf,
    tensors: BTreeMap<String, RawTensor>,
}

impl TensorFile {
    /// Reads and parses `path`; a truncated or foreign file is an error naming it.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        Self::parse(path, &bytes)
    }

    /// Parses the bytes of a safetensors file; `path` names it in errors.
    pub fn parse(path: PathBuf, bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::Format(format!("not a valid safetensors file ({e})")).in_file(&path))?;
        let tensors = st
            .iter()
            .map(|(name, view)| {
                (
                    name.to_string(),
                    RawTensor { dtype: view.dtype(), shape: view.shape().to_vec(), data: view.data().to_vec() },
                )
            })
            .collect();
        Ok(TensorFile { path, tensors })
    }

    /// The tensors named `prefix` + name, renamed to name, as in the state_dict of a module that
    /// wraps the model; `head.weight` and `head.bias` are kept as they are. Returns the names
    /// skipped. No tensor with the prefix is an error listing the names' prefixes.
    pub fn strip_prefix(self, prefix: &str) -> Result<(Self, Vec<String>)> {
        if !self.tensors.keys().any(|n| n.starts_with(prefix)) {
            let mut seen: Vec<&str> = self.tensors.keys().filter_map(|n| n.rfind('.').map(|dot| &n[..=dot])).collect();
            seen.dedup();
            let found = if seen.is_empty() { "none".to_string() } else { seen.join(", ") };
            return Err(self.error(Error::Usage(format!(
                "--prefix {prefix:?}: no tensor name starts with it (prefixes found: {found})"
            ))));
        }
        let (mut kept, mut skipped) = (BTreeMap::new(), Vec::new());
        for (name, t) in self.tensors {
            match name.strip_prefix(prefix) {
                Some(rest) => {
                    kept.insert(rest.to_string(), t);
                }
                None if name == "head.weight" || name == "head.bias" => {
                    kept.insert(name, t);
                }
                None => skipped.push(name),
            }
        }
        Ok((TensorFile { path: self.path, tensors: kept }, skipped))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The shape of `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// The dtype of `name`, if present.
    pub fn dtype(&self, name: &str) -> Option<Dtype> {
        self.tensors.get(name).map(|t| t.dtype)
    }

    /// Wraps `err` with this file's path.
    pub fn error(&self, err: Error) -> Error {
        err.in_file(&self.path)
    }

    fn raw(&self, name: &str, why: &str) -> Result<&RawTensor> {
        self.tensors.get(name).ok_or_else(|| self.error(Error::MissingTensor { tensor: name.into(), why: why.into() }))
    }

    /// A float tensor (F32, F64, F16 or BF16, converted to `T`) whose shape matches `expected`, where `None`
    /// accepts any extent; NaN and Inf are errors. `why` says what a missing tensor is for.
    pub fn floats<T: Scalar>(&self, name: &str, expected: &[Option<usize>], why: &str) -> Result<(Vec<usize>, Vec<T>)> {
        let raw = self.raw(name, why)?;
        self.check_shape(name, &raw.shape, expected)?;
        let values: Vec<T> = match raw.dtype {
            Dtype::F64 => {
                raw.data.chunks_exact(8).map(|b| T::of(f64::from_le_bytes(b.try_into().expect("8 bytes")))).collect()
            }
            Dtype::F32 => raw
                .data
                .chunks_exact(4)
                .map(|b| T::of(f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64))
                .collect(),
            Dtype::F16 => raw
                .data
                .chunks_exact(2)
                .map(|b| T::of(half::f16::from_le_bytes(b.try_into().expect("2 bytes")).to_f64()))
                .collect(),
            Dtype::BF16 => raw
                .data
                .chunks_exact(2)
                .map(|b| T::of(half::bf16::from_le_bytes(b.try_into().expect("2 bytes")).to_f64()))
                .collect(),
            other => {
                return Err(self.error(Error::Dtype {
                    tensor: name.into(),
                    expected: "F32, F64, F16 or BF16".into(),
                    found: format!("{other:?}"),
                }));
            }
        };
        if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
            return Err(self.error(Error::Value {
                tensor: name.into(),
                problem: format!(
                    "element {} (flat index {pos}) is {}; values must be finite",
                    index_of(pos, &raw.shape),
                    values[pos]
                ),
            }));
        }
        Ok((raw.shape.clone(), values))
    }

    /// An integer tensor (any signed or unsigned integer dtype) whose shape matches `expected`.
    pub fn integers(&self, name: &str, expected: &[Option<usize>], why: &str) -> Result<(Vec<usize>, Vec<i128>)> {
        let raw = self.raw(name, why)?;
        self.check_shape(name, &raw.shape, expected)?;
        let d = &raw.data;
        let values: Vec<i128> = match raw.dtype {
            Dtype::I64 => d.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8")) as i128).collect(),
            Dtype::U64 => d.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8")) as i128).collect(),
            Dtype::I32 => d.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().expect("4")) as i128).collect(),
            Dtype::U32 => d.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().expect("4")) as i128).collect(),
            Dtype::I16 => d.chunks_exact(2).map(|b| i16::from_le_bytes(b.try_into().expect("2")) as i128).collect(),
            Dtype::U16 => d.chunks_exact(2).map(|b| u16::from_le_bytes(b.try_into().expect("2")) as i128).collect(),
            Dtype::I8 => d.iter().map(|&b| b as i8 as i128).collect(),
            Dtype::U8 => d.iter().map(|&b| b as i128).collect(),
            other => {
                return Err(self.error(Error::Dtype {
                    tensor: name.into(),
                    expected: "an integer dtype (I64, I32, ...)".into(),
                    found: format!("{other:?}"),
                }));
            }
        };
        Ok((raw.shape.clone(), values))
    }

    fn check_shape(&self, name: &str, found: &[usize], expected: &[Option<usize>]) -> Result<()> {
        let ok = found.len() == expected.len() && found.iter().zip(expected).all(|(f, e)| e.is_none_or(|e| e == *f));
        if ok {
            return Ok(());
        }
        let dims: Vec<String> = expected.iter().map(|e| e.map_or("*".to_string(), |v| v.to_string())).collect();
        Err(self.error(Error::Shape {
            tensor: name.into(),
            expected: format!("[{}]", dims.join(", ")),
            found: found.to_vec(),
        }))
    }
}

/// The multi-index of flat position `pos` in a row-major tensor of `shape`, as `[i, j, ...]`.
fn index_of(mut pos: usize, shape: &[usize]) -> String {
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[i] = pos % d;
            pos /= d;
        }
    }
    format!("{idx:?}")
}

/// A named tensor to write: (name, shape, row-major values).
pub type NamedTensor<T> = (String, Vec<usize>, Vec<T>);

/// Serializes tensors of scalar type `T` to safetensors bytes.
pub fn to_safetensors_bytes<T: Scalar>(tensors: &[NamedTensor<T>]) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, values)| {
            let mut b = Vec::with_capacity(values.len() * std::mem::size_of::<T>());
            for &v in values {
                v.write_le(&mut b);
            }
            (name.clone(), shape.clone(), b)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, b)| TensorView::new(T::DTYPE, shape.clone(), b).map(|v| (name.as_str(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Format(format!("safetensors: {e}")))?;
    safetensors::serialize(views, None).map_err(|e| Error::Format(format!("safetensors: {e}")))
}

/// Refuses an existing `path` unless `force`: call before long work so nothing is computed in vain.
pub fn check_writable(path: &Path, force: bool) -> Result<()> {
    if !force && path.exists() {
        return Err(Error::OutputExists { path: path.to_path_buf() });
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically: into a temporary file in the same folder, then renamed,
/// so readers see the old file or the whole new one. Without `force` an existing file is kept
/// and reported, even if it appeared while we worked. Missing folders are created.
pub fn write_atomic(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    check_writable(path, force)?;
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    #[cfg(unix)]
    {
        // Temporary files are private (0600); a result is an ordinary file (0644).
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    if force {
        tmp.persist(path).map_err(|e| io(e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| match e.error.kind() {
            std::io::ErrorKind::AlreadyExists => Error::OutputExists { path: path.to_path_buf() },
            _ => io(e.error),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_shape_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let t: Vec<NamedTensor<f64>> = vec![("a".into(), vec![2, 3], (0..6).map(f64::from).collect())];
        write_atomic(&path, &to_safetensors_bytes(&t).unwrap(), false).unwrap();
        let f = TensorFile::read(&path).unwrap();
        let (shape, v) = f.floats::<f32>("a", &[Some(2), None], "test").unwrap();
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(v, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let err = f.floats::<f64>("a", &[Some(3), Some(3)], "test").unwrap_err().to_string();
        assert!(err.contains("t.safetensors") && err.contains("expected shape [3, 3], found [2, 3]"), "{err}");
        let err = f.floats::<f64>("b", &[], "needed for the test").unwrap_err().to_string();
        assert!(err.contains("missing tensor `b` (needed for the test)"), "{err}");
        let err = write_atomic(&path, b"x", false).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(TensorFile::read(&path).unwrap().names().collect::<Vec<_>>(), vec!["a"]);
    }

    #[test]
    fn index_of_is_row_major() {
        assert_eq!(index_of(5, &[2, 3]), "[1, 2]");
        assert_eq!(index_of(0, &[4]), "[0]");
    }
}
