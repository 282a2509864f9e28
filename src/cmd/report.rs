//! `gradlab report`: every built-in experiment (reusing finished folders) and one REPORT.md
//! (`crate::report`).

use crate::cli::ReportArgs;
use crate::error::Result;
use crate::experiment::BUILT_IN;
use crate::experiment::runner::RunOptions;
use crate::experiment::spec::Spec;

/// Runs the command; returns what to print.
pub fn run(args: &ReportArgs) -> Result<String> {
    let specs = BUILT_IN.iter().map(|(name, _)| Spec::built_in(name)).collect::<Result<Vec<_>>>()?;
    let opts = RunOptions { out: None, threads: args.threads, force: args.force, shard: None, dry_run: false };
    let command: Vec<String> = std::env::args().collect();
    crate::report::build(&specs, &args.out, &opts, &command.join(" "))
}
