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

/// `mean ± sd` with `digits` decimals, "—" without values.
pub fn mean_sd_text(v: &[f64], digits: usize) -> String {
    if v.is_empty() {
        return "—".into();
    }
    let (m, sd) = crate::estimate::mean_sd(v);
    if v.len() == 1 { format!("{m:+.digits$}") } else { format!("{m:+.digits$} ± {sd:.digits$}") }
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
