//! Plain SVG charts, written as text: the HTML report's plots and the benchmark's
//! requests-per-second plot. No plotting dependency for a few line and bar charts, and
//! nothing a browser must fetch or run: the SVG is inline text.
//!
//! A [`Chart`] maps data coordinates (x from `x_min` to `x_max`, y from 0 to `y_max`) to
//! a plot area inside margins for the title, the ticks and the axis labels. Every text is
//! XML-escaped. Series carry a `class` (and lines a `data-points` count) so a test reading
//! the DOM can tell which series are drawn and with how many points.

use std::fmt::Write;

const LEFT: f64 = 60.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 42.0;

/// One chart being drawn; [`Chart::finish`] gives the SVG text.
#[derive(Debug)]
pub struct Chart {
    svg: String,
    width: f64,
    height: f64,
    x_min: f64,
    x_max: f64,
    y_max: f64,
}

impl Chart {
    /// A `width` x `height` chart titled `title`, showing x in `x_min..x_max` and y in
    /// `0..y_max` (empty ranges are widened so nothing divides by zero).
    pub fn new(
        width: f64,
        height: f64,
        (x_min, x_max): (f64, f64),
        y_max: f64,
        title: &str,
    ) -> Chart {
        let x_max = if x_max > x_min { x_max } else { x_min + 1.0 };
        let y_max = if y_max > 0.0 { y_max } else { 1.0 };
        let mut svg = String::new();
        let _ = write!(
            svg,
            r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="sans-serif" font-size="12" role="img" aria-label="{t}">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{t}</text>
"##,
            t = escape(title)
        );
        Chart {
            svg,
            width,
            height,
            x_min,
            x_max,
            y_max,
        }
    }

    /// The pixel column of data x (clamped to the plot area).
    pub fn px(&self, x: f64) -> f64 {
        let f = ((x - self.x_min) / (self.x_max - self.x_min)).clamp(0.0, 1.0);
        LEFT + f * (self.width - LEFT - RIGHT)
    }

    /// The pixel row of data y (clamped to the plot area).
    pub fn py(&self, y: f64) -> f64 {
        let f = (y / self.y_max).clamp(0.0, 1.0);
        self.height - BOTTOM - f * (self.height - TOP - BOTTOM)
    }

    /// Horizontal grid lines with their labels on the left, and the x axis.
    pub fn y_grid(&mut self, ticks: &[(f64, String)]) {
        let (x0, x1) = (LEFT, self.width - RIGHT);
        for (v, label) in ticks {
            let y = self.py(*v);
            let _ = writeln!(
                self.svg,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 - 6.0,
                y + 4.0,
                escape(label)
            );
        }
        let y = self.py(0.0);
        let _ = writeln!(
            self.svg,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" stroke="#888"/>"##
        );
    }

    /// Tick marks with labels under the x axis.
    pub fn x_ticks(&mut self, ticks: &[(f64, String)]) {
        let y = self.py(0.0);
        for (v, label) in ticks {
            let x = self.px(*v);
            let _ = writeln!(
                self.svg,
                r##"<line x1="{x:.1}" y1="{y:.1}" x2="{x:.1}" y2="{:.1}" stroke="#888"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                y + 4.0,
                y + 17.0,
                escape(label)
            );
        }
    }

    /// The x axis's label, under the ticks.
    pub fn x_label(&mut self, text: &str) {
        let _ = writeln!(
            self.svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
            LEFT + (self.width - LEFT - RIGHT) / 2.0,
            self.height - 6.0,
            escape(text)
        );
    }

    /// A line through `points` (data coordinates); `step` holds each value until the next
    /// point, as counts per interval read.
    pub fn line(&mut self, points: &[(f64, f64)], color: &str, class: &str, step: bool) {
        let mut path = String::new();
        let mut prev: Option<f64> = None;
        for &(x, y) in points {
            let (xx, yy) = (self.px(x), self.py(y));
            if let (true, Some(prev_y)) = (step, prev) {
                let _ = write!(path, "{xx:.1},{prev_y:.1} ");
            }
            let _ = write!(path, "{xx:.1},{yy:.1} ");
            prev = Some(yy);
        }
        let _ = writeln!(
            self.svg,
            r##"<polyline class="{}" data-points="{}" fill="none" stroke="{}" stroke-width="2" points="{}"/>"##,
            escape(class),
            points.len(),
            escape(color),
            path.trim_end()
        );
    }

    /// One stacked bar over `x0..x1`: each `(value, color, class)` segment on the last.
    pub fn stacked_bar(&mut self, x0: f64, x1: f64, segments: &[(f64, &str, &str)]) {
        let (left, right) = (self.px(x0), self.px(x1));
        let w = (right - left - 1.0).max(1.0);
        let mut base = 0.0;
        for &(v, color, class) in segments {
            if v <= 0.0 {
                continue;
            }
            let (top, bottom) = (self.py(base + v), self.py(base));
            let _ = writeln!(
                self.svg,
                r##"<rect class="{}" data-value="{v}" x="{left:.1}" y="{top:.1}" width="{w:.1}" height="{:.1}" fill="{}"/>"##,
                escape(class),
                (bottom - top).max(0.5),
                escape(color)
            );
            base += v;
        }
    }

    /// A dashed horizontal line at data y, labelled at its right end.
    pub fn hline(&mut self, y: f64, color: &str, label: &str) {
        let (yy, x0, x1) = (self.py(y), LEFT, self.width - RIGHT);
        let _ = writeln!(
            self.svg,
            r##"<line x1="{x0}" y1="{yy:.1}" x2="{x1:.1}" y2="{yy:.1}" stroke="{c}" stroke-dasharray="6 4"/><text x="{x1:.1}" y="{:.1}" fill="{c}" text-anchor="end">{}</text>"##,
            yy - 6.0,
            escape(label),
            c = escape(color)
        );
    }

    /// A dashed vertical line at data x, labelled at its top.
    pub fn vline(&mut self, x: f64, color: &str, class: &str, label: &str) {
        let (xx, y0, y1) = (self.px(x), TOP, self.py(0.0));
        let anchor = if xx > self.width / 2.0 {
            "end"
        } else {
            "start"
        };
        let dx = if anchor == "end" { -4.0 } else { 4.0 };
        let _ = writeln!(
            self.svg,
            r##"<g class="{}"><line x1="{xx:.1}" y1="{y0}" x2="{xx:.1}" y2="{y1:.1}" stroke="{c}" stroke-width="2" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" fill="{c}" text-anchor="{anchor}">{}</text></g>"##,
            escape(class),
            xx + dx,
            y0 + 12.0,
            escape(label),
            c = escape(color)
        );
    }

    /// Colour swatches with names, in a row at the top right.
    pub fn legend(&mut self, items: &[(&str, &str)]) {
        let mut x = self.width
            - RIGHT
            - items
                .iter()
                .map(|(n, _)| 22.0 + 7.0 * n.len() as f64)
                .sum::<f64>();
        for (name, color) in items {
            let _ = writeln!(
                self.svg,
                r##"<rect x="{x:.1}" y="10" width="12" height="12" fill="{}"/><text x="{:.1}" y="20">{}</text>"##,
                escape(color),
                x + 16.0,
                escape(name)
            );
            x += 22.0 + 7.0 * name.len() as f64;
        }
    }

    /// A message across the middle of the plot area (e.g. "nothing recorded").
    pub fn note(&mut self, text: &str) {
        let _ = writeln!(
            self.svg,
            r##"<text class="note" x="{:.1}" y="{:.1}" text-anchor="middle" fill="#666">{}</text>"##,
            self.width / 2.0,
            self.height / 2.0,
            escape(text)
        );
    }

    pub fn finish(mut self) -> String {
        self.svg.push_str("</svg>\n");
        self.svg
    }
}

/// Round tick values from 0 to at least `max`, about `target` of them, each a multiple of
/// 1, 2 or 5 times a power of ten.
pub fn nice_ticks(max: f64, target: usize) -> Vec<f64> {
    let max = if max > 0.0 { max } else { 1.0 };
    let rough = max / target.max(1) as f64;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * power);
    let n = (max / step).ceil() as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// Text made safe for XML and HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(nice_ticks(10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(nice_ticks(1234.0, 4), vec![0.0, 500.0, 1000.0, 1500.0]);
        assert_eq!(nice_ticks(0.0, 4).last(), Some(&1.0));
    }

    #[test]
    fn text_is_escaped_and_points_are_counted() {
        let mut c = Chart::new(400.0, 200.0, (0.0, 10.0), 5.0, "a <b> & \"c\"");
        c.line(
            &[(0.0, 1.0), (5.0, 2.0), (10.0, 4.0)],
            "#123",
            "series x",
            true,
        );
        c.vline(20.0, "red", "deadline", "dead<line>");
        let svg = c.finish();
        assert!(svg.contains("a &lt;b&gt; &amp; &quot;c&quot;"), "{svg}");
        assert!(!svg.contains("<b>"));
        assert!(svg.contains(r#"class="series x" data-points="3""#), "{svg}");
        assert!(svg.contains("dead&lt;line&gt;"));
        // Out-of-range x is clamped to the plot's right edge, not drawn off the chart.
        assert!(svg.contains(r#"x1="360.0""#), "{svg}");
    }
}
