//! One module per subcommand: each validates its input, runs, writes its files and returns the
//! report the binary prints.

pub mod experiment;
pub mod grad;
pub mod plot;
pub mod probe;
pub mod report;
pub mod train;
