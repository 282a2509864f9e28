//! `gradlab plot DIR`: redraw an experiment's charts from the CSVs it wrote
//! (`crate::experiment::plot`).

use crate::cli::PlotArgs;
use crate::error::Result;
use crate::output::plot::Format;

/// Runs the command; returns what to print.
pub fn run(args: &PlotArgs) -> Result<String> {
    let formats = if args.format.is_empty() { vec![Format::Png, Format::Svg] } else { args.format.clone() };
    let size = args.width.zip(args.height);
    // Redrawing into the experiment's own folder replaces the charts it drew from the same CSVs.
    let (out, force) = match &args.out {
        Some(out) => (out.clone(), args.force),
        None => (args.dir.clone(), true),
    };
    let written = crate::experiment::plot(&args.dir, &out, force, &formats, size)?;
    let paths: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    Ok(format!("wrote {}", paths.join(", ")))
}
