//! Output files: CSVs of flat rows (round-trip exact floats) and charts, written atomically.

pub mod plot;

use crate::error::{Error, Result};
use crate::tensors::write_atomic;
use serde::Serialize;
use std::path::Path;

/// Serializes `rows` as CSV with a header row; floats are written round-trip exact
/// (shortest representation), infinities as `inf`/`-inf`.
pub fn csv_bytes<R: Serialize>(rows: &[R]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(|e| Error::Format(format!("CSV: {e}")))?;
    }
    w.into_inner().map_err(|e| Error::Format(format!("CSV: {e}")))
}

/// Writes `rows` to `path` as CSV, atomically; an existing file only with `force`.
pub fn write_csv<R: Serialize>(path: &Path, rows: &[R], force: bool) -> Result<()> {
    write_atomic(path, &csv_bytes(rows)?, force)
}
