//! A plain SVG of API requests per second over a run, with the API's limit drawn across,
//! drawn by the chart module the HTML report uses too.

use gradesync_activities::svg_chart::Chart;

/// `per_second[i]`: requests that arrived in second `i` of the run.
pub fn requests_per_second_svg(title: &str, per_second: &[u32], limit: u32) -> String {
    let secs = per_second.len().max(1) as f64;
    let top = per_second.iter().copied().max().unwrap_or(0).max(limit) + 1;
    let mut chart = Chart::new(900.0, 260.0, (0.0, secs), f64::from(top), title);
    let grid: Vec<_> = (0..=top).map(|v| (f64::from(v), v.to_string())).collect();
    chart.y_grid(&grid);
    let mut points: Vec<_> = per_second
        .iter()
        .enumerate()
        .map(|(i, &n)| (i as f64, f64::from(n)))
        .collect();
    if let Some(&(_, last)) = points.last() {
        points.push((secs, last));
    }
    chart.line(&points, "#1f77b4", "requests", true);
    chart.hline(f64::from(limit), "#d62728", &format!("API limit {limit}/s"));
    chart.x_label(&format!(
        "seconds since the simulator started ({} s)",
        per_second.len()
    ));
    chart.finish()
}
