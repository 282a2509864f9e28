//! Chart data helpers shared by the experiments (pure: rows in, points out), and the Markdown
//! formatting of summary numbers.

use std::collections::BTreeMap;
use std::f64::consts::LN_10;

/// Median of all values, −inf and +inf included (a norm that underflowed to exactly 0 has log
/// −inf and counts as the smallest value); NaN without values.
pub fn median_all(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
}

/// Per x: (x, median) points and (x, min, max) band of the values gathered at that x, each
/// multiplied by `scale` (e.g. 1/ln 10 to turn natural logs into log10).
pub type Line = (Vec<(f64, f64)>, Vec<(f64, f64, f64)>);

pub fn median_band(groups: &BTreeMap<usize, Vec<f64>>, scale: f64) -> Line {
    let mut points = Vec::with_capacity(groups.len());
    let mut band = Vec::with_capacity(groups.len());
    for (&x, v) in groups {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        points.push((x as f64, scale * median_all(v)));
        band.push((x as f64, scale * lo, scale * hi));
    }
    (points, band)
}

/// Natural log to log10.
pub fn log10_of_ln(v: f64) -> f64 {
    v / LN_10
}

/// `mean ± sd` with `digits` decimals, "—" without values; an infinite mean (a norm exactly 0
/// somewhere) alone, without a spread.
pub fn mean_sd_text(v: &[f64], digits: usize) -> String {
    if v.is_empty() {
        return "—".into();
    }
    let (m, sd) = crate::estimate::mean_sd(v);
    if v.len() == 1 || m.is_infinite() { format!("{m:+.digits$}") } else { format!("{m:+.digits$} ± {sd:.digits$}") }
}

/// The median of values that may be missing (a horizon or an underflow not reached within T),
/// a missing one counted as beyond every value: `None` when the median falls among them.
pub fn censored_median(v: &[Option<f64>]) -> Option<f64> {
    let m = median_all(&v.iter().map(|x| x.unwrap_or(f64::INFINITY)).collect::<Vec<_>>());
    (m < f64::INFINITY).then_some(m)
}

/// [`censored_median`] as text with `digits` decimals, "none" when it falls among the missing,
/// and how many have a value when some do not: "120 (3 of 5)", "none (2 of 5)".
pub fn censored_median_text(v: &[Option<f64>], digits: usize) -> String {
    let m = censored_median(v).map_or("none".to_string(), |m| format!("{m:.digits$}"));
    match v.iter().filter(|x| x.is_some()).count() {
        k if k == v.len() || k == 0 => m,
        k => format!("{m} ({k} of {})", v.len()),
    }
}

/// Counts of each distinct value, in first-seen order: "vanishing 5/5", "vanishing 3/5,
/// neutral 2/5".
pub fn counts_text<T: PartialEq + std::fmt::Display>(v: &[T]) -> String {
    let mut seen: Vec<(&T, usize)> = Vec::new();
    for x in v {
        match seen.iter_mut().find(|(y, _)| *y == x) {
            Some((_, n)) => *n += 1,
            None => seen.push((x, 1)),
        }
    }
    seen.iter().map(|(x, n)| format!("{x} {n}/{}", v.len())).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_sd_text_shows_an_infinite_mean_without_a_nan_spread() {
        assert_eq!(mean_sd_text(&[f64::NEG_INFINITY, -1.0], 2), "-inf");
        assert_eq!(mean_sd_text(&[1.0, 3.0], 1), "+2.0 ± 1.4");
        assert_eq!(mean_sd_text(&[], 1), "—");
    }

    #[test]
    fn censored_medians_count_the_missing_as_beyond_every_value_and_say_how_many() {
        assert_eq!(censored_median_text(&[Some(3.0), Some(1.0), Some(2.0)], 0), "2");
        assert_eq!(censored_median_text(&[Some(3.0), None, Some(1.0), Some(2.0), None], 0), "3 (3 of 5)");
        assert_eq!(censored_median_text(&[Some(3.0), None, None], 1), "none (1 of 3)");
        assert_eq!(censored_median_text(&[None, None], 0), "none");
        assert_eq!(censored_median(&[Some(1.0), None]), None);
        assert_eq!(censored_median(&[Some(1.0), Some(4.0), None]), Some(4.0));
        // −∞ is a value (the log of an exact 0), not a missing one.
        assert_eq!(censored_median(&[Some(f64::NEG_INFINITY), Some(f64::NEG_INFINITY)]), Some(f64::NEG_INFINITY));
    }

    #[test]
    fn medians_keep_infinities_and_bands_span_the_values() {
        assert_eq!(median_all(&[f64::NEG_INFINITY, -3.0, -1.0]), -3.0);
        assert_eq!(median_all(&[f64::NEG_INFINITY, f64::NEG_INFINITY, -1.0]), f64::NEG_INFINITY);
        assert!(median_all(&[]).is_nan());
        let mut g = BTreeMap::new();
        g.insert(2, vec![-1.0, -3.0, -2.0]);
        let (p, b) = median_band(&g, 2.0);
        assert_eq!((p, b), (vec![(2.0, -4.0)], vec![(2.0, -6.0, -2.0)]));
    }

    #[test]
    fn summary_texts() {
        assert_eq!(mean_sd_text(&[1.0, 3.0], 2), "+2.00 ± 1.41");
        assert_eq!(mean_sd_text(&[], 2), "—");
        assert_eq!(counts_text(&["a", "b", "a"]), "a 2/3, b 1/3");
    }
}
