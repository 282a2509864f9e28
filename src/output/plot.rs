//! Charts with plotters, as PNG and SVG. The font is bundled (a DejaVu Sans subset), registered
//! for the PNG renderer and embedded in every SVG, so charts render on machines with no fonts.
//! Log axes are drawn by plotting log10 of the data on a linear axis with 10^v tick labels,
//! which also handles values far outside f64's range given as logs.

use crate::error::{Error, Result};
use crate::tensors::write_atomic;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use std::sync::Once;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");
const FONT_FAMILY: &str = "sans-serif";
/// Panels per row of a figure's grid.
const COLUMNS: usize = 3;

/// How a line is drawn, so lines that overlap stay distinguishable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dash {
    Solid,
    Dashed,
    Dotted,
}

/// One line, optionally with a shaded band (x, low, high), vertical error bars (x, low, high)
/// and a marker at every point.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub color: RGBColor,
    pub dash: Dash,
    pub markers: bool,
    pub points: Vec<(f64, f64)>,
    pub band: Vec<(f64, f64, f64)>,
    pub error_bars: Vec<(f64, f64, f64)>,
}

impl Series {
    /// A solid line without band, error bars or markers.
    pub fn line(label: impl Into<String>, color: RGBColor, points: Vec<(f64, f64)>) -> Self {
        Series {
            label: label.into(),
            color,
            dash: Dash::Solid,
            markers: false,
            points,
            band: vec![],
            error_bars: vec![],
        }
    }
}

/// A labelled reference line across a panel: horizontal at y = `at` or vertical at x = `at`,
/// in data units.
#[derive(Clone, Debug, PartialEq)]
pub struct RefLine {
    pub at: f64,
    pub label: String,
}

/// Ten colours that stay apart from each other (Tableau 10); [`style`] adds dashes past ten.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Colour and dash of the i-th line of a panel: ten colours, then the same ten dashed, then dotted.
pub fn style(i: usize) -> (RGBColor, Dash) {
    let dash = [Dash::Solid, Dash::Dashed, Dash::Dotted][(i / PALETTE.len()) % 3];
    (PALETTE[i % PALETTE.len()], dash)
}

/// One plotting area with its own series and subtitle.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
    /// Where this panel's legend goes, if not where the figure's `legend` says.
    pub legend: Option<SeriesLabelPosition>,
}

impl Panel {
    pub fn new(title: impl Into<String>, series: Vec<Series>) -> Self {
        Panel { title: title.into(), series, legend: None }
    }
}

/// How an axis maps data: as is, or log10 (data given in natural units).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log,
}

/// A figure: panels in a grid (up to three a row) sharing axis labels, scales and ranges.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_scale: Scale,
    pub y_scale: Scale,
    pub panels: Vec<Panel>,
    pub legend: SeriesLabelPosition,
    /// Empty space added below the data, as a fraction of its span, to keep the legend clear.
    pub legend_room: f64,
    /// Tick positions on the x axis in data units (default: round numbers).
    pub x_ticks: Option<Vec<f64>>,
    /// Horizontal reference lines drawn in every panel (a threshold, y = 1, y = 0).
    pub hlines: Vec<RefLine>,
    /// Vertical reference lines drawn in every panel.
    pub vlines: Vec<RefLine>,
    /// Whether all panels share one y range (else each panel fits its own data).
    pub shared_y: bool,
}

impl Figure {
    /// A figure with linear axes, the legend at the lower left and no reference lines.
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>) -> Self {
        Figure {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            panels: Vec::new(),
            legend: SeriesLabelPosition::LowerLeft,
            legend_room: 0.0,
            x_ticks: None,
            hlines: Vec::new(),
            vlines: Vec::new(),
            shared_y: true,
        }
    }

    /// Pixel size: 1200 × 800 for one row of up to two panels, else 520 wide per column and
    /// 560 high per row (plus the title).
    fn size(&self) -> (u32, u32) {
        let n = self.panels.len().max(1);
        let (cols, rows) = (n.min(COLUMNS), n.div_ceil(COLUMNS));
        if n <= 2 { (1200, 800) } else { ((520 * cols).max(1200) as u32, (560 * rows + 60) as u32) }
    }
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the bundled font does not parse"));
    });
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Format(format!("drawing chart: {e}")).in_file(path)
}

/// A chart file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Png,
    Svg,
    /// Vector PDF, converted from the SVG with the bundled font embedded.
    Pdf,
}

/// The largest width or height in pixels a chart may have (a PNG of 8000 × 8000 is 192 MB of RGB).
pub const MAX_SIDE: u32 = 8000;

/// Writes `stem.png` and `stem.svg` (atomically) at the figure's own size; returns their paths.
pub fn save(fig: &Figure, stem: &Path, force: bool) -> Result<Vec<PathBuf>> {
    save_with(fig, stem, force, &[Format::Png, Format::Svg], None)
}

/// Writes the chart in each of `formats`, at `size` (width, height in pixels, each in
/// 200..=[`MAX_SIDE`], checked by the caller) or the figure's own; returns the paths.
pub fn save_with(
    fig: &Figure,
    stem: &Path,
    force: bool,
    formats: &[Format],
    size: Option<(u32, u32)>,
) -> Result<Vec<PathBuf>> {
    register_font();
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let size = size.unwrap_or_else(|| fig.size());
    let mut written = Vec::new();
    if formats.contains(&Format::Png) {
        write_atomic(&png, &render_png(fig, size, &png)?, force)?;
        written.push(png);
    }
    if formats.contains(&Format::Svg) {
        write_atomic(&svg, render_svg(fig, size, &svg)?.as_bytes(), force)?;
        written.push(svg);
    }
    if formats.contains(&Format::Pdf) {
        let pdf = stem.with_extension("pdf");
        write_atomic(&pdf, &render_pdf(fig, size, &pdf)?, force)?;
        written.push(pdf);
    }
    Ok(written)
}

/// The chart as a PDF: its SVG converted by svg2pdf, text set in the bundled font (usvg does not
/// read the SVG's embedded @font-face, so the font is given to it directly).
#[cfg(feature = "pdf")]
fn render_pdf(fig: &Figure, size: (u32, u32), pdf: &Path) -> Result<Vec<u8>> {
    let svg = render_svg(fig, size, pdf)?;
    let mut options = svg2pdf::usvg::Options::default();
    options.fontdb_mut().load_font_data(FONT.to_vec());
    options.fontdb_mut().set_sans_serif_family("DejaVu Sans");
    options.font_family = "DejaVu Sans".into();
    let tree = svg2pdf::usvg::Tree::from_str(&svg, &options).map_err(|e| plot_err(pdf, e))?;
    svg2pdf::to_pdf(&tree, svg2pdf::ConversionOptions::default(), svg2pdf::PageOptions::default())
        .map_err(|e| plot_err(pdf, e))
}

#[cfg(not(feature = "pdf"))]
fn render_pdf(_: &Figure, _: (u32, u32), _: &Path) -> Result<Vec<u8>> {
    Err(Error::Usage(
        "--format pdf: this gradlab was built without PDF charts; build it with `--features pdf` (e.g. \
         cargo run --release --features pdf -- plot DIR --format pdf)"
            .into(),
    ))
}

fn render_svg(fig: &Figure, size: (u32, u32), svg: &Path) -> Result<String> {
    let mut svg_text = String::new();
    {
        let root = SVGBackend::with_string(&mut svg_text, size).into_drawing_area();
        draw(&root, fig).map_err(|e| plot_err(svg, e))?;
        root.present().map_err(|e| plot_err(svg, e))?;
    }
    Ok(embed_font(&svg_text))
}

fn render_png(fig: &Figure, size: (u32, u32), png: &Path) -> Result<Vec<u8>> {
    let mut rgb = vec![0u8; (size.0 as usize) * (size.1 as usize) * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        draw(&root, fig).map_err(|e| plot_err(png, e))?;
        root.present().map_err(|e| plot_err(png, e))?;
    }
    encode_png(&rgb, size).map_err(|e| plot_err(png, e))
}

fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> std::result::Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(rgb)?;
    Ok(out)
}

/// Makes the SVG carry its font: an @font-face with the bundled font as a data URI.
fn embed_font(svg: &str) -> String {
    use base64::Engine;
    let family = "GradlabSans";
    let data = base64::engine::general_purpose::STANDARD.encode(FONT);
    let style = format!(
        "<defs><style>@font-face{{font-family:{family};src:url(data:font/ttf;base64,{data}) format(\"truetype\");}}</style></defs>"
    );
    let body =
        svg.replace(&format!("font-family=\"{FONT_FAMILY}\""), &format!("font-family=\"{family}, {FONT_FAMILY}\""));
    match body.find('>') {
        Some(end_of_svg_tag) if body[..end_of_svg_tag].contains("<svg") => {
            format!("{}{}{}", &body[..=end_of_svg_tag], style, &body[end_of_svg_tag + 1..])
        }
        _ => body,
    }
}

fn to_axis(v: f64, s: Scale) -> f64 {
    match s {
        Scale::Linear => v,
        Scale::Log => v.log10(),
    }
}

fn tick_label(v: f64, s: Scale) -> String {
    match s {
        Scale::Linear => format_number(v),
        Scale::Log => format_number(10f64.powf(v)),
    }
}

/// Three significant digits, no trailing zeros; exponent form outside [1e-3, 1e5).
fn format_number(v: f64) -> String {
    let a = v.abs();
    if a < 1e-12 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&a) {
        let e = a.log10().floor();
        let m = v / 10f64.powf(e);
        return if (m.abs() - 1.0).abs() < 1e-9 {
            format!("{}1e{e}", if v < 0.0 { "-" } else { "" })
        } else {
            format!("{m:.2}e{e}")
        };
    }
    let digits = (2 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

/// Round tick positions in axis units over [lo, hi]: 1-2-5 steps on a linear axis; on a log axis
/// whole decades, or 1-2-5 within decades when the range spans fewer than three.
fn ticks(lo: f64, hi: f64, s: Scale) -> Vec<f64> {
    let span = hi - lo;
    if span.is_nan() || span <= 0.0 {
        return vec![lo];
    }
    match s {
        Scale::Linear => {
            let raw = span / 7.0;
            let base = 10f64.powf(raw.log10().floor());
            let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * base).find(|&st| st >= raw).unwrap_or(10.0 * base);
            let first = (lo / step).ceil() as i64;
            let last = (hi / step).floor() as i64;
            (first..=last).map(|i| i as f64 * step).collect()
        }
        Scale::Log if span >= 3.0 => {
            let stride = (span / 8.0).ceil().max(1.0) as i64;
            ((lo.ceil() as i64)..=(hi.floor() as i64)).filter(|e| e % stride == 0).map(|e| e as f64).collect()
        }
        Scale::Log => {
            let mantissas: &[f64] = if span >= 1.0 { &[1.0, 2.0, 5.0] } else { &[1.0, 1.5, 2.0, 3.0, 5.0, 7.0] };
            let mut v = Vec::new();
            for e in (lo.floor() as i64)..=(hi.ceil() as i64) {
                for m in mantissas {
                    let t = m.log10() + e as f64;
                    if t >= lo && t <= hi {
                        v.push(t);
                    }
                }
            }
            v
        }
    }
}

/// Axis range of finite values with 4% padding (a unit range if degenerate).
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { 0.04 * (hi - lo) } else { 0.5 };
    (lo - pad, hi + pad)
}

/// A linear f64 axis whose ticks are the given positions.
struct TickedAxis {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() { Vec::new() } else { self.ticks.clone() }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    fig: &Figure,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let title_size = if fig.title.chars().count() > 60 { 26 } else { 30 };
    let root = root.titled(&fig.title, (FONT_FAMILY, title_size))?;
    let (xs, ys) = (fig.x_scale, fig.y_scale);
    let x_range = range(
        fig.panels
            .iter()
            .flat_map(|p| p.series.iter())
            .flat_map(|s| s.points.iter().map(|p| to_axis(p.0, xs)))
            .chain(fig.vlines.iter().map(|l| to_axis(l.at, xs))),
    );
    let y_range_of = |panels: &[&Panel]| {
        let mut r = range(
            panels
                .iter()
                .flat_map(|p| p.series.iter())
                .flat_map(|s| {
                    s.points
                        .iter()
                        .map(|p| p.1)
                        .chain(s.band.iter().flat_map(|b| [b.1, b.2]))
                        .chain(s.error_bars.iter().flat_map(|b| [b.1, b.2]))
                })
                .map(|v| to_axis(v, ys))
                .chain(fig.hlines.iter().map(|l| to_axis(l.at, ys))),
        );
        // Ticks cover the data only, not the room added below it for the legend.
        let data_lo = r.0;
        r.0 -= fig.legend_room * (r.1 - r.0);
        (r, data_lo)
    };
    let shared_y_range = y_range_of(&fig.panels.iter().collect::<Vec<_>>());
    let x_ticks: Vec<f64> = match &fig.x_ticks {
        Some(t) => t.iter().map(|&v| to_axis(v, xs)).collect(),
        None => ticks(x_range.0, x_range.1, xs),
    };
    let n = fig.panels.len().max(1);
    let areas = root.split_evenly((n.div_ceil(COLUMNS), n.min(COLUMNS)));
    for (area, panel) in areas.iter().zip(&fig.panels) {
        let (y_range, data_lo) = if fig.shared_y { shared_y_range } else { y_range_of(&[panel]) };
        let y_ticks = ticks(data_lo, y_range.1, ys);
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, (FONT_FAMILY, 22))
            .margin(12)
            .x_label_area_size(55)
            .y_label_area_size(80)
            .build_cartesian_2d(
                TickedAxis { inner: (x_range.0..x_range.1).into(), ticks: x_ticks.clone() },
                TickedAxis { inner: (y_range.0..y_range.1).into(), ticks: y_ticks },
            )?;
        chart
            .configure_mesh()
            .x_desc(&fig.x_label)
            .y_desc(&fig.y_label)
            .axis_desc_style((FONT_FAMILY, 20))
            .label_style((FONT_FAMILY, 16))
            .x_label_formatter(&|v| tick_label(*v, xs))
            .y_label_formatter(&|v| tick_label(*v, ys))
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()?;
        for s in &panel.series {
            let color = s.color;
            if !s.band.is_empty() {
                let mut poly: Vec<(f64, f64)> = s.band.iter().map(|b| (to_axis(b.0, xs), to_axis(b.2, ys))).collect();
                poly.extend(s.band.iter().rev().map(|b| (to_axis(b.0, xs), to_axis(b.1, ys))));
                poly.retain(|p| p.0.is_finite() && p.1.is_finite());
                chart.draw_series(std::iter::once(Polygon::new(poly, color.mix(0.18).filled())))?;
            }
            let line: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|p| (to_axis(p.0, xs), to_axis(p.1, ys)))
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            let stroke = color.stroke_width(3);
            let drawn = match s.dash {
                Dash::Solid => chart.draw_series(LineSeries::new(line.clone(), stroke))?,
                Dash::Dashed => chart.draw_series(DashedLineSeries::new(line.clone(), 12, 7, stroke))?,
                Dash::Dotted => chart.draw_series(DashedLineSeries::new(line.clone(), 3, 6, stroke))?,
            };
            let (dash_len, gap) = match s.dash {
                Dash::Solid => (24, 1),
                Dash::Dashed => (9, 6),
                Dash::Dotted => (3, 4),
            };
            let marker = color.mix(if s.markers { 1.0 } else { 0.0 }).filled();
            // A series without a label (a marker line that belongs to a labelled one) has no entry.
            if !s.label.is_empty() {
                drawn.label(&s.label).legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + DashedPathElement::new(vec![(0, 0), (24, 0)], dash_len, gap, stroke)
                        + Circle::new((12, 0), 4, marker)
                });
            }
            if s.markers {
                chart.draw_series(line.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
            }
            chart.draw_series(s.error_bars.iter().map(|&(x, lo, hi)| {
                let (x, lo, hi) = (to_axis(x, xs), to_axis(lo, ys), to_axis(hi, ys));
                ErrorBar::new_vertical(x, lo, (lo + hi) / 2.0, hi, color.stroke_width(2), 10)
            }))?;
        }
        let grey = RGBColor(90, 90, 90);
        let ref_style = grey.stroke_width(2);
        for l in &fig.hlines {
            let y = to_axis(l.at, ys);
            chart.draw_series(DashedLineSeries::new(vec![(x_range.0, y), (x_range.1, y)], 6, 6, ref_style))?;
            let pos = (x_range.1 - 0.01 * (x_range.1 - x_range.0), y + 0.012 * (y_range.1 - y_range.0));
            let style = TextStyle::from((FONT_FAMILY, 15)).color(&grey).pos(Pos::new(HPos::Right, VPos::Bottom));
            chart.draw_series(std::iter::once(Text::new(l.label.clone(), pos, style)))?;
        }
        for l in &fig.vlines {
            let x = to_axis(l.at, xs);
            chart.draw_series(DashedLineSeries::new(vec![(x, y_range.0), (x, y_range.1)], 6, 6, ref_style))?;
            let pos = (x + 0.01 * (x_range.1 - x_range.0), y_range.1 - 0.01 * (y_range.1 - y_range.0));
            let style = TextStyle::from((FONT_FAMILY, 15)).color(&grey).pos(Pos::new(HPos::Left, VPos::Top));
            chart.draw_series(std::iter::once(Text::new(l.label.clone(), pos, style)))?;
        }
        chart
            .configure_series_labels()
            .position(panel.legend.clone().unwrap_or(fig.legend.clone()))
            .label_font((FONT_FAMILY, 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_read_well() {
        assert_eq!(tick_label(2.0, Scale::Log), "100");
        assert_eq!(tick_label(-3.0, Scale::Log), "0.001");
        assert_eq!(tick_label(-5.0, Scale::Log), "1e-5");
        assert_eq!(tick_label(2.5, Scale::Log), "316");
        assert_eq!(tick_label(0.5, Scale::Linear), "0.5");
        assert_eq!(tick_label(-120.0, Scale::Linear), "-120");
        assert_eq!(tick_label(-2.2e-16, Scale::Linear), "0");
        assert_eq!(tick_label(0.25, Scale::Linear), "0.25");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(-0.05, 1.03, Scale::Linear), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        assert_eq!(ticks(-4.2, 0.1, Scale::Log), vec![-4.0, -3.0, -2.0, -1.0, 0.0]);
        let t: Vec<String> = ticks(-1.5, 0.2, Scale::Log).iter().map(|&v| tick_label(v, Scale::Log)).collect();
        assert_eq!(t, vec!["0.05", "0.1", "0.2", "0.5", "1"]);
    }

    #[test]
    fn svg_gets_the_font_embedded() {
        let svg = "<svg width=\"1\"><text font-family=\"sans-serif\">x</text></svg>";
        let out = embed_font(svg);
        assert!(out.starts_with("<svg width=\"1\"><defs><style>@font-face{font-family:GradlabSans;"));
        assert!(out.contains("font-family=\"GradlabSans, sans-serif\""));
    }

    #[test]
    fn pdf_charts_are_vector_pdfs_or_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let fig = Figure {
            panels: vec![Panel::new("p", vec![Series::line("a", RED, vec![(0.0, 1.0), (1.0, 2.0)])])],
            ..Figure::new("title", "x", "y")
        };
        let r = save_with(&fig, &dir.path().join("c"), false, &[Format::Pdf], Some((400, 300)));
        if cfg!(feature = "pdf") {
            let pdf = std::fs::read(&r.unwrap()[0]).unwrap();
            assert!(pdf.starts_with(b"%PDF-") && pdf.len() > 2000, "{} bytes", pdf.len());
        } else {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("--features pdf") && !dir.path().join("c.pdf").exists(), "{e}");
        }
    }

    #[test]
    fn draws_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let s = Series {
            dash: Dash::Dashed,
            markers: true,
            band: vec![(1.0, 1e-4, 1e-2), (100.0, 0.5, 2.0)],
            error_bars: vec![(10.0, 0.05, 0.2)],
            ..Series::line("a", RED, vec![(1.0, 1e-3), (10.0, 1e-1), (100.0, 1.0)])
        };
        let fig = Figure {
            x_scale: Scale::Log,
            y_scale: Scale::Log,
            panels: vec![Panel::new("p", vec![s])],
            hlines: vec![RefLine { at: 1e-2, label: "threshold".into() }],
            vlines: vec![RefLine { at: 3.0, label: "edge".into() }],
            ..Figure::new("t", "x", "y")
        };
        let paths = save(&fig, &dir.path().join("chart"), false).unwrap();
        let png = std::fs::read(&paths[0]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(std::fs::read_to_string(&paths[1]).unwrap().contains("@font-face"));
    }
}
