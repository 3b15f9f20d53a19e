//! A plain SVG of API requests per second over a run, with the API's limit drawn across:
//! no plotting dependency for one chart.

use std::fmt::Write;

const W: f64 = 900.0;
const H: f64 = 260.0;
const PAD: f64 = 40.0;

/// `per_second[i]`: requests that arrived in second `i` of the run.
pub fn requests_per_second_svg(title: &str, per_second: &[u32], limit: u32) -> String {
    let secs = per_second.len().max(1) as f64;
    let top = f64::from(per_second.iter().copied().max().unwrap_or(0).max(limit) + 1);
    let x = |i: f64| PAD + i / secs * (W - 2.0 * PAD);
    let y = |v: f64| H - PAD - v / top * (H - 2.0 * PAD);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{PAD}" y="20">{title}</text>
"##
    );
    // Axes and horizontal grid at each whole request count.
    for v in 0..=top as u32 {
        let yy = y(f64::from(v));
        let _ = writeln!(
            svg,
            r##"<line x1="{PAD}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v}</text>"##,
            W - PAD,
            PAD - 6.0,
            yy + 4.0
        );
    }
    let mut points = String::new();
    for (i, &n) in per_second.iter().enumerate() {
        let _ = write!(
            points,
            "{:.1},{:.1} {:.1},{:.1} ",
            x(i as f64),
            y(f64::from(n)),
            x(i as f64 + 1.0),
            y(f64::from(n))
        );
    }
    let _ = writeln!(
        svg,
        r##"<polyline fill="none" stroke="#1f77b4" stroke-width="1" points="{points}"/>"##
    );
    let ly = y(f64::from(limit));
    let _ = writeln!(
        svg,
        r##"<line x1="{PAD}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="#d62728" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" fill="#d62728" text-anchor="end">API limit {limit}/s</text>"##,
        W - PAD,
        W - PAD,
        ly - 6.0
    );
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds since the simulator started ({} s)</text>"##,
        W / 2.0,
        H - 8.0,
        per_second.len()
    );
    svg.push_str("</svg>\n");
    svg
}
