//! Small inline SVG line charts for the dashboard, drawn on the server.

use std::fmt::Write;

pub const WIDTH: f64 = 360.0;
pub const HEIGHT: f64 = 80.0;

/// One series: a colour class and its points (unix time, value).
pub struct Series<'a> {
    pub class: &'static str,
    pub points: &'a [(u64, f64)],
}

/// The `points` attribute of a polyline scaled into the chart, time on x
/// from `t0` to `t1`, value on y from 0 to `max`.
fn polyline(points: &[(u64, f64)], t0: u64, t1: u64, max: f64) -> String {
    let span = (t1.saturating_sub(t0)).max(1) as f64;
    let mut out = String::new();
    for &(t, v) in points {
        let x = (t.saturating_sub(t0)) as f64 / span * WIDTH;
        let y = HEIGHT - (v / max).clamp(0.0, 1.0) * (HEIGHT - 4.0);
        let _ = write!(out, "{x:.1},{y:.1} ");
    }
    out.trim_end().to_string()
}

/// The SVG body (polylines and the scale label) of a chart of the window
/// `t0..t1`; an empty chart says so.
pub fn chart(series: &[Series<'_>], t0: u64, t1: u64, unit: &str, scale: impl Fn(f64) -> String) -> String {
    let max = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0_f64, f64::max);
    let mut out = String::new();
    if max <= 0.0 {
        let _ = write!(out, r#"<text x="8" y="{}" class="empty">no {unit} in this window</text>"#, HEIGHT / 2.0);
        return out;
    }
    for s in series {
        let _ = write!(out, r#"<polyline class="{}" points="{}"/>"#, s.class, polyline(s.points, t0, t1, max));
    }
    let _ = write!(out, r#"<text x="4" y="12" class="scale">{}</text>"#, scale(max));
    out
}

/// Bytes per second for people.
pub fn rate_text(bps: f64) -> String {
    format!("{}/s", crate::units::size_text(bps as u64))
}

/// Seconds as milliseconds.
pub fn ms_text(secs: f64) -> String {
    format!("{:.2} ms", secs * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_into_the_box() {
        let pts = [(0u64, 0.0), (50, 5.0), (100, 10.0)];
        assert_eq!(polyline(&pts, 0, 100, 10.0), "0.0,80.0 180.0,42.0 360.0,4.0");
        let svg = chart(&[Series { class: "w", points: &pts }], 0, 100, "writes", rate_text);
        assert!(svg.contains("<polyline class=\"w\""));
        assert!(svg.contains("10 B/s"));
        assert!(chart(&[Series { class: "w", points: &[] }], 0, 100, "writes", rate_text).contains("no writes"));
    }
}
