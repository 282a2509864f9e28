//! Summary statistics of a gradient-decay curve (THEORY.md §5): least-squares decay rate,
//! its fit quality, and the horizon k*.

/// Least-squares slope of `y` against `x` and the fit's R² (1 for a perfect line; 1 as well when
/// `y` is constant). Pairs with a non-finite `y` are skipped; `None` with fewer than two left.
pub fn linear_fit(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let pts: Vec<(f64, f64)> = x.iter().zip(y).filter(|(_, y)| y.is_finite()).map(|(&a, &b)| (a, b)).collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy == 0.0 { 1.0 } else { (sxy * sxy) / (sxx * syy) };
    Some((slope, r2))
}

/// The first distance k ≥ 1 at which `log_norm[k] < log_norm[1] + ln(threshold)`, where
/// `log_norm[k]` is the natural log of the norm at distance k.
pub fn horizon(log_norm: &[f64], threshold: f64) -> Option<usize> {
    let base = *log_norm.get(1)?;
    let limit = base + threshold.ln();
    (1..log_norm.len()).find(|&k| log_norm[k] < limit)
}

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 { (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (m, sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_a_line_and_scores_noise() {
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        let y: Vec<f64> = x.iter().map(|k| 2.0 - 0.3 * k).collect();
        let (s, r2) = linear_fit(&x, &y).unwrap();
        assert!((s + 0.3).abs() < 1e-14 && (r2 - 1.0).abs() < 1e-14);
        let noisy: Vec<f64> = x.iter().map(|k| if (*k as i32) % 2 == 0 { 1.0 } else { -1.0 }).collect();
        assert!(linear_fit(&x, &noisy).unwrap().1 < 0.1);
        assert!(linear_fit(&[1.0], &[1.0]).is_none());
        let with_inf = [0.0, -1.0, f64::NEG_INFINITY, -3.0];
        assert!((linear_fit(&[0.0, 1.0, 2.0, 3.0], &with_inf).unwrap().0 + 1.0).abs() < 1e-14);
    }

    #[test]
    fn horizon_is_the_first_crossing() {
        let logs: Vec<f64> = (0..20).map(|k| -(k as f64)).collect(); // e^{-k}
        // 1e-3 of the k = 1 value: -1 + ln(1e-3) = -7.9: first below at k = 8.
        assert_eq!(horizon(&logs, 1e-3), Some(8));
        assert_eq!(horizon(&[0.0, 0.0, 0.0], 1e-3), None);
    }

    #[test]
    fn mean_sd_of_known_values() {
        assert_eq!(mean_sd(&[2.0, 4.0]), (3.0, 2f64.sqrt()));
        assert_eq!(mean_sd(&[5.0]), (5.0, 0.0));
    }
}
