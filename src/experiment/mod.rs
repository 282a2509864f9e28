//! Experiments: a TOML [`spec::Spec`] expands to a [`grid`] of points, each run sequentially
//! from its own seed ([`run`]), in parallel across points; [`stats`] condenses curves into
//! decay rates and horizons.

pub mod charts;
pub mod grid;
pub mod run;
pub mod spec;
pub mod stats;
