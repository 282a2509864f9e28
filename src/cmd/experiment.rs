//! `gradlab experiment`: list the built-in experiments, or run one (built-in or a spec file)
//! with its kind's experiment (`crate::experiment::run`).

use crate::cli::{ExperimentArgs, ExperimentCommand, RunArgs};
use crate::error::Result;
use crate::experiment::grid::expand;
use crate::experiment::runner::RunOptions;
use crate::experiment::spec::Spec;
use crate::experiment::{self, BUILT_IN};
use std::fmt::Write as _;

/// Runs the command; returns the report to print.
pub fn run(args: &ExperimentArgs) -> Result<String> {
    match &args.command {
        ExperimentCommand::List => Ok(list()),
        ExperimentCommand::Run { spec, args } => run_spec(&Spec::read(spec)?, args),
        ExperimentCommand::Merge { dirs, out, force } => {
            experiment::merge(dirs, &RunOptions { out: out.clone(), force: *force, ..RunOptions::default() })
        }
        command => {
            let (name, args) = command.built_in().expect("the other commands are built-in experiments");
            run_spec(&Spec::built_in(name)?, args)
        }
    }
}

fn list() -> String {
    let mut r = String::from("built-in experiments (run with `gradlab experiment <name>`):\n");
    for (name, _) in BUILT_IN {
        let spec = Spec::built_in(name).expect("built-in specs are tested");
        let points = expand(&spec).len();
        let _ = writeln!(r, "  {name:<14} {} ({points} grid points, writes {})", spec.description, spec.out.display());
    }
    r.push_str("your own: `gradlab experiment run path/to/spec.toml` (see experiments/*.toml)");
    r
}

fn run_spec(spec: &Spec, args: &RunArgs) -> Result<String> {
    let opts = RunOptions {
        out: args.out.clone(),
        threads: args.threads,
        force: args.force,
        shard: args.shard,
        dry_run: args.dry_run,
    };
    experiment::run(spec, &opts)
}
