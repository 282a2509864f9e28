//! Output files: CSVs of flat rows (round-trip exact floats) and charts, written atomically.

pub mod plot;

use crate::error::{Error, Result};
use crate::tensors::write_atomic;
use serde::Serialize;
use serde::de::DeserializeOwned;
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

/// Reads rows written by [`csv_bytes`] back. Rows are read by position, which also reads rows
/// written as tuples of structs (`(Key, Row)`), and the file's header must be the one gradlab
/// writes for such rows; errors name the file and the line.
pub fn read_csv<R: Serialize + DeserializeOwned>(path: &Path) -> Result<Vec<R>> {
    let bad = |why: String| Error::Format(why).in_file(path);
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let mut r = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes.as_slice());
    let header = r.headers().map_err(|e| bad(format!("CSV: {e}")))?.clone();
    let mut rows = Vec::new();
    for (i, record) in r.records().enumerate() {
        let record = record.map_err(|e| bad(format!("CSV: {e}")))?;
        let row: R = record.deserialize(None).map_err(|e| {
            let columns = header.iter().collect::<Vec<_>>().join(",");
            bad(format!("line {}: {e} (the file's columns: {columns})", i + 2))
        })?;
        if i == 0 {
            let ours = csv_bytes(std::slice::from_ref(&row))?;
            let ours = String::from_utf8_lossy(&ours);
            let expected = ours.lines().next().unwrap_or("");
            let found = header.iter().collect::<Vec<_>>().join(",");
            if found != expected {
                return Err(bad(format!("expected the columns {expected}, found {found}")));
            }
        }
        rows.push(row);
    }
    Ok(rows)
}
