//! Finished points on disk, in `<out>/partial/`: one file per point, written atomically the moment
//! the point is measured. A run killed at any moment loses only the points in flight; rerunning
//! the same spec into the same folder (or running another shard of it) measures only the rest,
//! and the outputs are assembled from the stored points once all are there.
//!
//! `partial/spec.toml` says which spec the points belong to. A point file `point-<index>.bin` is,
//! little-endian: the magic `GLPT`, the format version (u32), the FNV-1a hash of the spec text
//! (u64), the point index (u64), the payload length (u64), the payload, and the payload's FNV-1a
//! hash (u64). The payload is the point's measurement in postcard, which stores a float as its
//! bits: a point read back is the point measured, bit for bit.

use super::grid::fnv1a;
use super::spec::Spec;
use crate::error::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The store's folder inside an output folder.
pub const PARTIAL: &str = "partial";

const MAGIC: &[u8; 4] = b"GLPT";
const VERSION: u32 = 1;
/// Magic, version, spec hash, index, payload length.
const HEADER: usize = 4 + 4 + 8 + 8 + 8;

/// The finished points of one spec in one folder.
pub struct Store {
    dir: PathBuf,
    spec_hash: u64,
}

/// The spec text a store in `out` belongs to, if there is one.
pub fn owner(out: &Path) -> Option<String> {
    std::fs::read_to_string(out.join(PARTIAL).join("spec.toml")).ok()
}

impl Store {
    /// The store of `spec` in `out`, created if needed: creating it is the check that `out` is
    /// writable, before any compute. A store of another spec is an error, or with `force` is
    /// discarded.
    pub fn open(out: &Path, spec: &Spec, force: bool) -> Result<Store> {
        let dir = out.join(PARTIAL);
        let io = |path: &Path, source| Error::Io { path: path.to_path_buf(), source };
        if let Some(text) = owner(out)
            && text != spec.text
        {
            if !force {
                return Err(Error::Usage(format!(
                    "{}: holds the finished points of an interrupted run of a different spec; rerun that spec \
                     to finish it, or pass --force to discard them",
                    dir.display()
                )));
            }
            std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let spec_file = dir.join("spec.toml");
        if owner(out).as_deref() != Some(spec.text.as_str()) {
            write_durably(&spec_file, spec.text.as_bytes())?;
        }
        Ok(Store { dir, spec_hash: fnv1a(spec.text.as_bytes()) })
    }

    /// The store in `out` (a shard's output) and its spec text; it must exist.
    pub fn existing(out: &Path) -> Result<(Store, String)> {
        let dir = out.join(PARTIAL);
        let text = owner(out).ok_or_else(|| {
            Error::Usage(format!(
                "{}: no finished points here (no {}/spec.toml); is it the --out of a run with --shard?",
                out.display(),
                PARTIAL
            ))
        })?;
        Ok((Store { dir, spec_hash: fnv1a(text.as_bytes()) }, text))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("point-{index}.bin"))
    }

    /// Writes point `index` atomically (a temporary file, synced, renamed into place).
    pub fn save<M: Serialize>(&self, index: usize, measured: &M) -> Result<()> {
        let payload = postcard::to_stdvec(measured).map_err(|e| Error::Format(format!("point {index}: {e}")))?;
        let mut bytes = Vec::with_capacity(HEADER + payload.len() + 8);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&self.spec_hash.to_le_bytes());
        bytes.extend_from_slice(&(index as u64).to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&payload);
        bytes.extend_from_slice(&fnv1a(&payload).to_le_bytes());
        write_durably(&self.path(index), &bytes)
    }

    /// Point `index`: `Ok(None)` if it is not stored; an error if its file is damaged or belongs
    /// to another spec or point.
    pub fn load<M: DeserializeOwned>(&self, index: usize) -> Result<Option<M>> {
        let path = self.path(index);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let bad = |why: String| Error::Format(why).in_file(&path);
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        if bytes.len() < HEADER + 8 || &bytes[..4] != MAGIC {
            return Err(bad("not a gradlab point file".into()));
        }
        let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(bad(format!("point file format {version}, expected {VERSION}")));
        }
        if u64_at(8) != self.spec_hash {
            return Err(bad("measured under a different spec than partial/spec.toml".into()));
        }
        if u64_at(16) != index as u64 {
            return Err(bad(format!("holds point {}, expected point {index}", u64_at(16))));
        }
        let len = u64_at(24);
        if len != (bytes.len() - HEADER - 8) as u64 {
            return Err(bad(format!("payload of {len} bytes declared, {} present", bytes.len() - HEADER - 8)));
        }
        let payload = &bytes[HEADER..bytes.len() - 8];
        if fnv1a(payload) != u64_at(bytes.len() - 8) {
            return Err(bad("checksum mismatch: the file is damaged".into()));
        }
        postcard::from_bytes(payload).map(Some).map_err(|e| bad(format!("undecodable point: {e}")))
    }

    /// Removes the store (after its points have been assembled into outputs).
    pub fn discard(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir).map_err(|source| Error::Io { path: self.dir.clone(), source })
    }
}

/// Checks, leaving no trace, that the folder `out` can be made and written: its nearest existing
/// ancestor must be a folder that takes a (temporary, removed) file.
pub fn check_writable(out: &Path) -> Result<()> {
    let mut at = out;
    let existing = loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => break at,
            Ok(_) => {
                return Err(Error::Usage(format!(
                    "{}: cannot be an output folder, {} is a file",
                    out.display(),
                    at.display()
                )));
            }
            Err(_) => match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => break Path::new("."),
            },
        }
    };
    tempfile::NamedTempFile::new_in(existing).map(drop).map_err(|e| {
        Error::Usage(format!("{}: cannot be written ({e}), so {} cannot be made", existing.display(), out.display()))
    })
}

/// Writes `bytes` to `path` via `<path>.tmp.<pid>` (one per process, so shards sharing a folder
/// never write the same temporary file; truncated if a killed run left one), synced before
/// the rename, so `path` is either absent or complete.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let io = |p: &Path, source| Error::Io { path: p.to_path_buf(), source };
    let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writability_is_checked_without_a_trace() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        check_writable(&deep).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing left behind");
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let e = check_writable(&dir.path().join("f/out")).unwrap_err().to_string();
        assert!(e.contains("is a file"), "{e}");
    }

    fn spec() -> Spec {
        Spec::built_in("gates").unwrap()
    }

    #[test]
    fn a_point_reads_back_bit_for_bit_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &spec(), false).unwrap();
        let m: Vec<(u64, f64)> = vec![(1, f64::NAN), (2, -0.0), (3, 1e-310), (4, f64::INFINITY), (5, 0.1 + 0.2)];
        store.save(7, &m).unwrap();
        let back: Vec<(u64, f64)> = store.load(7).unwrap().unwrap();
        let bits = |v: &[(u64, f64)]| v.iter().map(|(i, x)| (*i, x.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&m));
        assert!(store.load::<Vec<(u64, f64)>>(8).unwrap().is_none());

        let path = store.path(7);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 12] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = store.load::<Vec<(u64, f64)>>(7).unwrap_err().to_string();
        assert!(e.contains("point-7.bin") && e.contains("checksum"), "{e}");
        std::fs::write(&path, &bytes[..n - 20]).unwrap();
        let e = store.load::<Vec<(u64, f64)>>(7).unwrap_err().to_string();
        assert!(e.contains("declared"), "{e}");
        std::fs::copy(&path, store.path(9)).unwrap();
        store.save(7, &m).unwrap();
        std::fs::copy(store.path(7), store.path(9)).unwrap();
        let e = store.load::<Vec<(u64, f64)>>(9).unwrap_err().to_string();
        assert!(e.contains("holds point 7"), "{e}");
    }

    #[test]
    fn a_store_of_another_spec_is_kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path(), &spec(), false).unwrap().save(0, &1u8).unwrap();
        let other = Spec::built_in("memory").unwrap();
        let e = Store::open(dir.path(), &other, false).err().unwrap().to_string();
        assert!(e.contains("different spec") && e.contains("--force"), "{e}");
        assert!(dir.path().join("partial/point-0.bin").exists());
        let s = Store::open(dir.path(), &other, true).unwrap();
        assert!(s.load::<u8>(0).unwrap().is_none());
        assert_eq!(owner(dir.path()).unwrap(), other.text);
    }
}
