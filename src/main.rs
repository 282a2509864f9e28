//! The `gradlab` binary: parse, run, print; any error is one line on stderr and exit code 2.

use clap::Parser;
use gradlab::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Grad(args) => gradlab::cmd::grad::run(args),
        Command::Probe(args) => gradlab::cmd::probe::run(args),
        Command::Experiment(args) => gradlab::cmd::experiment::run(args),
        Command::Report(args) => gradlab::cmd::report::run(args),
        Command::Plot(args) => gradlab::cmd::plot::run(args),
    };
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
