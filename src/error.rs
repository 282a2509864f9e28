//! The library's one error type. Every message names what to fix (file, tensor, key or flag),
//! what was expected and what was found; the binary prints it on one line and exits with code 2.

use std::path::PathBuf;

/// Everything that can go wrong on user input or output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A problem inside a file, with the file's path in front of the message.
    #[error("{}: {source}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<Error>,
    },
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file's bytes are not in the format expected; the message says which format and why.
    #[error("{0}")]
    Format(String),
    /// A tensor that must be present is missing.
    #[error("missing tensor `{tensor}` ({why})")]
    MissingTensor { tensor: String, why: String },
    /// A tensor nobody asked for: a typo or a layout gradlab does not know.
    #[error("unknown tensor `{tensor}` (expected {expected})")]
    UnknownTensor { tensor: String, expected: String },
    /// A tensor of the wrong shape.
    #[error("tensor `{tensor}`: expected shape {expected}, found {found:?}")]
    Shape { tensor: String, expected: String, found: Vec<usize> },
    /// A tensor of the wrong element type.
    #[error("tensor `{tensor}`: expected dtype {expected}, found {found}")]
    Dtype { tensor: String, expected: String, found: String },
    /// A value that is not allowed (NaN, Inf, a label out of range, ...).
    #[error("tensor `{tensor}`: {problem}")]
    Value { tensor: String, problem: String },
    /// A command-line flag that contradicts the files or another flag.
    #[error("{0}")]
    Usage(String),
    /// The run was stopped (Ctrl-C); the message says what was kept and how to go on.
    #[error("{0}")]
    Interrupted(String),
    /// The output exists and `--force` was not given.
    #[error("{}: already exists; pass --force to overwrite it", path.display())]
    OutputExists { path: PathBuf },
}

impl Error {
    /// The process exit code for this error: 130 for an interrupted run (as for SIGINT), else 2.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Interrupted(_) => 130,
            _ => 2,
        }
    }

    /// Puts `path` in front of this error's message.
    pub fn in_file(self, path: impl Into<PathBuf>) -> Error {
        Error::InFile { path: path.into(), source: Box::new(self) }
    }
}

/// `Result` with gradlab's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
