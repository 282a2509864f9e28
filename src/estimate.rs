//! Estimators of a gradient-decay curve (THEORY.md §5), shared by every experiment and by
//! `gradlab probe`. A curve is `log_norm[k]`, the natural log of a norm at distance k = 0..=T
//! (k = T − s). Curves are not always single exponentials (a chrono-initialised LSTM drops fast
//! for tens of steps, then decays slowly), so two ranges are fitted and named:
//! - `decay_rate`: least-squares slope over the far half, k ∈ [⌊T/2⌋, T] (the asymptotic rate,
//!   comparable with λ_1 and with ½ ln χ), with a spread from the slopes of four blocks of it;
//! - `decay_rate_near`: the slope over k ∈ [1, min(50, ⌊T/4⌋)] (at least two points).
//!
//! The horizon is the smallest k after which the norm stays below a threshold for good (last
//! crossing, absolute: ∂h_T/∂h_T = I has norm 1). A curve that is still above the threshold at
//! k = T has no horizon; its [`Regime`] says whether it vanishes slowly, stays level or explodes.

use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;

/// A far rate within ± this many nats per step of zero is `neutral` (a factor e over 1000 steps).
pub const NEUTRAL_RATE: f64 = 1e-3;

/// How many consecutive blocks of the far range give the rate's spread.
const BLOCKS: usize = 4;

/// What a curve does far from T.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Regime {
    /// The far rate is below −max(2·spread, [`NEUTRAL_RATE`]).
    Vanishing,
    /// The far rate is above +max(2·spread, [`NEUTRAL_RATE`]).
    Exploding,
    /// Neither: the far rate is within its spread (or [`NEUTRAL_RATE`]) of zero.
    Neutral,
}

impl std::fmt::Display for Regime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Regime::Vanishing => "vanishing",
            Regime::Exploding => "exploding",
            Regime::Neutral => "neutral",
        })
    }
}

/// The estimators of one curve; serialized as the columns `decay_rate`, `decay_rate_se`,
/// `decay_rate_near`, `horizon`, `regime` of a summary CSV (after the columns saying which curve).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurveSummary {
    /// Slope of ln‖·‖ over the far range (per step); `None` with fewer than two finite values.
    pub decay_rate: Option<f64>,
    /// Standard error of the far rate from the slopes of four consecutive blocks of the far range
    /// (their standard deviation / 2); `None` when a block has fewer than two finite values.
    pub decay_rate_se: Option<f64>,
    /// Slope of ln‖·‖ over the near range (per step).
    pub decay_rate_near: Option<f64>,
    /// The smallest k with the norm below the threshold at k and at every larger distance.
    pub horizon: Option<usize>,
    pub regime: Regime,
}

/// k ∈ [⌊T/2⌋, T]: the far half of a curve of length T (T ≥ 2).
pub fn far_range(t: usize) -> RangeInclusive<usize> {
    t / 2..=t
}

/// k ∈ [1, min(50, ⌊T/4⌋)], widened to two points where T is short.
pub fn near_range(t: usize) -> RangeInclusive<usize> {
    1..=(t / 4).clamp(2, 50).min(t)
}

/// Least-squares slope of `y[k]` against k over `range`, skipping non-finite values; `None`
/// with fewer than two finite values.
pub fn slope(y: &[f64], range: RangeInclusive<usize>) -> Option<f64> {
    let pts: Vec<(f64, f64)> =
        range.filter_map(|k| y.get(k).filter(|v| v.is_finite()).map(|&v| (k as f64, v))).collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Some(sxy / sxx)
}

/// The smallest k such that `log_norm[j] < ln(threshold)` for every j ≥ k (NaN counts as not
/// below); `None` if the last value is not below.
pub fn horizon(log_norm: &[f64], threshold: f64) -> Option<usize> {
    let limit = threshold.ln();
    // The last value that is not below the limit (NaN included).
    match log_norm.iter().rposition(|&v| v.partial_cmp(&limit) != Some(std::cmp::Ordering::Less)) {
        None => Some(0),
        Some(k) if k + 1 < log_norm.len() => Some(k + 1),
        Some(_) => None,
    }
}

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 { (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (m, sd)
}

/// Median of the finite values; NaN if there are none.
pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
}

/// Ranks 1..=n of `v` (ties share the mean of their ranks; +∞ is the largest value).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let j = (i..order.len()).take_while(|&j| v[order[j]] == v[order[i]]).last().expect("i itself");
        for &k in &order[i..=j] {
            r[k] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation of paired values: Pearson's correlation of their ranks (ties
/// averaged). `None` with fewer than 3 pairs, a NaN, or a side whose values are all equal.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 3 || x.iter().chain(y).any(|v| v.is_nan()) {
        return None;
    }
    let (rx, ry) = (ranks(x), ranks(y));
    let (mx, my) = (mean_sd(&rx).0, mean_sd(&ry).0);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// All estimators of `log_norm` (k = 0..=T, T = len − 1 ≥ 2).
pub fn summarize(log_norm: &[f64], threshold: f64) -> CurveSummary {
    let t = log_norm.len().saturating_sub(1);
    let far = far_range(t);
    let decay_rate = slope(log_norm, far.clone());
    let (lo, len) = (*far.start(), far.end() - far.start() + 1);
    let block_slopes: Option<Vec<f64>> = (0..BLOCKS)
        .map(|b| slope(log_norm, lo + b * len / BLOCKS..=(lo + (b + 1) * len / BLOCKS).saturating_sub(1)))
        .collect();
    let decay_rate_se = block_slopes.map(|s| mean_sd(&s).1 / (BLOCKS as f64).sqrt());
    let regime = match decay_rate {
        Some(r) => {
            let band = (2.0 * decay_rate_se.unwrap_or(0.0)).max(NEUTRAL_RATE);
            if r < -band {
                Regime::Vanishing
            } else if r > band {
                Regime::Exploding
            } else {
                Regime::Neutral
            }
        }
        // No finite far values: the norm underflowed to exactly 0, or overflowed.
        None => match log_norm.last() {
            Some(&v) if v == f64::NEG_INFINITY => Regime::Vanishing,
            Some(&v) if v == f64::INFINITY => Regime::Exploding,
            _ => Regime::Neutral,
        },
    };
    CurveSummary {
        decay_rate,
        decay_rate_se,
        decay_rate_near: slope(log_norm, near_range(t)),
        horizon: horizon(log_norm, threshold),
        regime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_on_known_rankings() {
        // Monotone but not linear: ±1 exactly.
        assert_eq!(spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 8.0, 27.0, 64.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0, 4.0], &[9.0, 4.0, 1.0, 0.0]), Some(-1.0));
        // Ranks (1, 2, 3, 4, 5) against (2, 1, 4, 3, 5): 1 − 6·Σd²/(n(n²−1)) = 1 − 6·4/120 = 0.8.
        let r = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[20.0, 10.0, 40.0, 30.0, 50.0]).unwrap();
        assert!((r - 0.8).abs() < 1e-15, "{r}");
        // Ties share their mean rank; +∞ ranks last: x ranks (1, 2.5, 2.5, 4), y ranks (1, 2, 3, 4):
        // Pearson of those is 4.5 / √(4.5 · 5) = 0.9487.
        let r = spearman(&[0.0, 5.0, 5.0, f64::INFINITY], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((r - 4.5 / (4.5f64 * 5.0).sqrt()).abs() < 1e-15, "{r}");
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        assert_eq!(spearman(&[1.0, 2.0], &[1.0, 2.0]), None);
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(spearman(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 3.0]), None);
    }

    fn close(a: Option<f64>, b: f64, tol: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() <= tol)
    }

    #[test]
    fn a_curve_without_finite_far_values_takes_its_regime_from_its_end() {
        let curve = |end: f64| {
            let mut c = vec![0.0, -1.0];
            c.extend(std::iter::repeat_n(end, 9));
            c
        };
        let regime = |end| summarize(&curve(end), 1e-3).regime;
        assert_eq!(regime(f64::NEG_INFINITY), Regime::Vanishing, "underflowed to exactly 0");
        assert_eq!(regime(f64::INFINITY), Regime::Exploding, "overflowed");
        assert_eq!(regime(f64::NAN), Regime::Neutral, "nothing known");
        assert_eq!(summarize(&curve(f64::NEG_INFINITY), 1e-3).decay_rate, None);
    }

    /// The far range of T = 101 is k = 50..=101, four blocks of 13 steps; a curve linear within
    /// each block with slopes s_b has block slopes s_b exactly, so its standard error is
    /// sd(s_0..s_3)/2.
    #[test]
    fn the_rate_standard_error_is_the_spread_of_the_four_block_slopes() {
        let slopes = [-0.1, -0.2, -0.3, -0.4];
        let curve: Vec<f64> = (0..=101usize)
            .map(|k| {
                let b = if k < 50 { 0 } else { ((k - 50) / 13).min(3) };
                3.0 * b as f64 + slopes[b] * k as f64
            })
            .collect();
        let s = summarize(&curve, 1e-3);
        let expected = mean_sd(&slopes).1 / 2.0;
        assert!(close(s.decay_rate_se, expected, 1e-12), "{:?} vs {expected}", s.decay_rate_se);
        assert!((expected - (0.05f64 / 3.0).sqrt() / 2.0).abs() < 1e-15);
    }

    /// ln‖·‖ = −1·k for k ≤ 20, then −0.01 per step: a kinked curve like a chrono LSTM's.
    fn kinked(t: usize) -> Vec<f64> {
        (0..=t).map(|k| if k <= 20 { -(k as f64) } else { -20.0 - 0.01 * (k - 20) as f64 }).collect()
    }

    #[test]
    fn ranges_are_as_documented() {
        assert_eq!(far_range(800), 400..=800);
        assert_eq!(far_range(5), 2..=5);
        assert_eq!(near_range(800), 1..=50);
        assert_eq!(near_range(100), 1..=25);
        assert_eq!(near_range(4), 1..=2);
        assert_eq!(near_range(2), 1..=2);
    }

    #[test]
    fn kinked_curve_gives_each_range_its_own_slope() {
        let s = summarize(&kinked(400), 1e-3);
        assert!(close(s.decay_rate, -0.01, 1e-12), "{s:?}");
        assert!(close(s.decay_rate_se, 0.0, 1e-12), "{s:?}");
        // Near range k = 1..=50 straddles the kink at 20: between the two slopes, not either.
        let near = s.decay_rate_near.unwrap();
        assert!(near < -0.3 && near > -1.0, "{near}");
        // Below ln(1e-3) = −6.9 from k = 7 on, for good.
        assert_eq!(s.horizon, Some(7));
        assert_eq!(s.regime, Regime::Vanishing);
        // A pure exponential: near and far agree exactly, at any length.
        for t in [8, 50, 801] {
            let line: Vec<f64> = (0..=t).map(|k| -0.25 * k as f64).collect();
            let s = summarize(&line, 1e-3);
            assert!(close(s.decay_rate, -0.25, 1e-12) && close(s.decay_rate_near, -0.25, 1e-12), "{t}: {s:?}");
        }
    }

    #[test]
    fn horizon_is_the_last_crossing_not_the_first() {
        // Dips below 1e-3 at k = 5..=7, comes back above at 8..=9, below for good from 10.
        let mut v: Vec<f64> = (0..=30).map(|k| -(k as f64)).collect();
        v[8] = -1.0;
        v[9] = -6.0;
        assert_eq!(horizon(&v, 1e-3), Some(10));
        // Never below: no horizon; below from the start: 0.
        assert_eq!(horizon(&[0.0; 10], 1e-3), None);
        assert_eq!(horizon(&[-10.0; 10], 1e-3), Some(0));
        // Above again at the very end: no horizon.
        let mut w: Vec<f64> = (0..=30).map(|k| -(k as f64)).collect();
        w[30] = 0.0;
        assert_eq!(horizon(&w, 1e-3), None);
        // NaN is not "below".
        let mut n: Vec<f64> = (0..=30).map(|k| -(k as f64)).collect();
        n[20] = f64::NAN;
        assert_eq!(horizon(&n, 1e-3), Some(21));
    }

    #[test]
    fn regimes_follow_the_far_rate_and_its_spread() {
        let explode: Vec<f64> = (0..=200).map(|k| 0.02 * k as f64).collect();
        let s = summarize(&explode, 1e-3);
        assert_eq!((s.regime, s.horizon), (Regime::Exploding, None));
        let flat: Vec<f64> = (0..=200).map(|k| -0.0002 * k as f64).collect();
        assert_eq!(summarize(&flat, 1e-3).regime, Regime::Neutral);
        // A rate of −0.01 buried in oscillations of amplitude 5 is neutral: its spread is larger.
        let wobbly: Vec<f64> = (0..=400).map(|k| -0.01 * k as f64 + 5.0 * (k as f64 / 15.0).sin()).collect();
        let s = summarize(&wobbly, 1e-3);
        assert!(s.decay_rate_se.unwrap() > 0.01, "{s:?}");
        assert_eq!(s.regime, Regime::Neutral, "{s:?}");
        // A norm that reached exactly 0: −inf is skipped by the fits but the curve vanishes.
        let mut zero: Vec<f64> = (0..=40).map(|k| -(k as f64)).collect();
        zero[10..].fill(f64::NEG_INFINITY);
        let s = summarize(&zero, 1e-3);
        assert_eq!((s.decay_rate, s.regime, s.horizon), (None, Regime::Vanishing, Some(7)));
    }

    #[test]
    fn median_and_mean_sd_of_known_values() {
        // Lengths 3 to 6: n / 2 and n % 2 agree at 3, so 5 and 6 tell them apart.
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, f64::NAN, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[5.0, 4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(median(&[6.0, 5.0, 4.0, 1.0, 3.0, 2.0]), 3.5);
        assert_eq!(median(&[5.0, f64::NEG_INFINITY, 1.0]), 3.0, "non-finite values are left out");
        assert!(median(&[f64::NAN]).is_nan());
        // n − 1 = 1 at n = 2, so the sample sd is checked at n = 4 too.
        assert_eq!(mean_sd(&[2.0, 4.0]), (3.0, 2f64.sqrt()));
        let (m, sd) = mean_sd(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((sd - (5.0f64 / 3.0).sqrt()).abs() < 1e-15, "sample sd: {sd}");
        assert_eq!(mean_sd(&[5.0]), (5.0, 0.0));
    }
}
