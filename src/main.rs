//! The `gradlab` binary: parse, run, print; any error is one line on stderr and exit code 2.

use clap::Parser;
use gradlab::cli::{Cli, Command};
use std::process::ExitCode;

/// Heap bytes counted, for the calibrated memory estimates of `experiment` runs.
#[global_allocator]
static HEAP: gradlab::heap::Counting = gradlab::heap::Counting;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Experiment(_) | Command::Report(_)) {
        // Ctrl-C: finish the points in progress, keep every finished point, say how to resume;
        // a second Ctrl-C quits at once (the finished points are stored either way).
        let _ = ctrlc::set_handler(|| {
            if gradlab::experiment::runner::request_stop() {
                std::process::exit(130);
            }
            eprintln!("\nstopping after the points in progress (Ctrl-C again to quit now)");
        });
    }
    let result = match &cli.command {
        Command::Grad(args) => gradlab::cmd::grad::run(args),
        Command::Probe(args) => gradlab::cmd::probe::run(args),
        Command::Experiment(args) => gradlab::cmd::experiment::run(args),
        Command::Report(args) => gradlab::cmd::report::run(args),
        Command::Plot(args) => gradlab::cmd::plot::run(args),
        Command::Train(args) => gradlab::cmd::train::run(args),
    };
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
