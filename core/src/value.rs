//! Sample values: Prometheus' stale marker and Go-compatible float formatting.

/// The bits of Prometheus' stale marker, a NaN that means "this series ended here".
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Prometheus' stale marker as an f64. Compare with [`is_stale_nan`], never with `==`.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is exactly Prometheus' stale marker.
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Formats a float exactly as Go's `strconv.FormatFloat(f, 'g', -1, 64)` does, with Prometheus'
/// spelling of the special values (`NaN`, `+Inf`, `-Inf`). This is how the text exposition format
/// writes values (`1`, `0.5`, `1e+06`, `8.785e-05`).
pub fn format_go_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // Shortest round-trip digits and decimal exponent, from Rust's `{:e}` formatting (both
    // languages print the shortest digits that round-trip).
    let e = format!("{:e}", f.abs());
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    if f < 0.0 {
        out.push('-');
    }
    // Go's shortest 'g' format switches to %e when the exponent is < -4 or >= 6.
    if !(-4..6).contains(&exp) {
        format_exp(&digits, exp, out);
    } else {
        format_fixed(&digits, exp, out);
    }
}

/// [`format_go_float`] into a new string.
pub fn go_float(f: f64) -> String {
    let mut s = String::new();
    format_go_float(f, &mut s);
    s
}

/// Prometheus' `formatOpenMetricsFloat`: like [`go_float`], with `.0` added to integers. Used to
/// normalise `le` and `quantile` label values of classic histograms and summaries.
pub fn openmetrics_float(f: f64) -> String {
    let mut s = go_float(f);
    if f.is_finite() && !s.contains(['e', '.']) {
        s.push_str(".0");
    }
    s
}

fn format_exp(digits: &str, exp: i32, out: &mut String) {
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        out.push('0');
    }
    out.push_str(&a.to_string());
}

fn format_fixed(digits: &str, exp: i32, out: &mut String) {
    let dp = exp + 1; // digits before the decimal point
    if dp <= 0 {
        out.push_str("0.");
        for _ in 0..(-dp) {
            out.push('0');
        }
        out.push_str(digits);
    } else if dp as usize >= digits.len() {
        out.push_str(digits);
        for _ in 0..(dp as usize - digits.len()) {
            out.push('0');
        }
    } else {
        out.push_str(&digits[..dp as usize]);
        out.push('.');
        out.push_str(&digits[dp as usize..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_g_formatting() {
        for (f, want) in [
            (1.0, "1"),
            (0.5, "0.5"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (8.785e-05, "8.785e-05"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (1795477171709.0, "1.795477171709e+12"),
            (7.424100000000001e-05, "7.424100000000001e-05"),
            (324789.3, "324789.3"),
            (1e21, "1e+21"),
            (1e-300, "1e-300"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (0.0, "0"),
        ] {
            assert_eq!(go_float(f), want, "{f:e}");
        }
    }

    #[test]
    fn openmetrics_normalisation() {
        assert_eq!(openmetrics_float(0.0), "0.0");
        assert_eq!(openmetrics_float(1.0), "1.0");
        assert_eq!(openmetrics_float(0.25), "0.25");
        assert_eq!(openmetrics_float(1e6), "1e+06");
        assert_eq!(openmetrics_float(f64::INFINITY), "+Inf");
    }

    #[test]
    fn stale_marker_is_a_specific_nan() {
        assert!(stale_nan().is_nan());
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
    }
}
