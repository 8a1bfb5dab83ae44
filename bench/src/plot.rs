//! The capacity curve: subscribers of one VP8 publisher against the
//! server's CPU (left axis) and the loss subscribers saw (right axis), one
//! pair of lines per data-plane core count, drawn with `plotters` as SVG.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::scenarios::Row;

/// Means over repeats of the 1 → N rows, per core count:
/// cores → [(subscribers joined, CPU %, loss %)]. The x value is the
/// subscribers that joined, not those asked for: past capacity some are
/// still joining when the window closes, and the CPU serves only the others.
pub fn curve_points(rows: &[Row]) -> BTreeMap<usize, Vec<(f64, f64, f64)>> {
    let mut sums: BTreeMap<(usize, usize), (f64, f64, f64, usize)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.spec.on_curve()) {
        let e = sums
            .entry((r.cores, r.spec.total_subscribers()))
            .or_insert((0.0, 0.0, 0.0, 0));
        let publishers = (r.spec.rooms * r.spec.publishers) as u64;
        e.0 += r.joined.saturating_sub(publishers) as f64;
        e.1 += r.server_cpu.unwrap_or(0.0);
        e.2 += r.loss * 100.0;
        e.3 += 1;
    }
    let mut out: BTreeMap<usize, Vec<(f64, f64, f64)>> = BTreeMap::new();
    for ((cores, _), (subs, cpu, loss, n)) in sums {
        let n = n as f64;
        out.entry(cores)
            .or_default()
            .push((subs / n, cpu / n, loss / n));
    }
    out
}

/// Draws the curve of `rows` into an SVG file at `path`; `caption` names
/// the run (date, commit, durations).
pub fn capacity_svg(rows: &[Row], path: &Path, caption: &str) -> Result<(), String> {
    let points = curve_points(rows);
    if points.is_empty() {
        return Err("no 1 → N rows to plot".into());
    }
    let max_subs = points.values().flatten().map(|p| p.0).fold(10.0, f64::max);
    let max_cpu = points.values().flatten().map(|p| p.1).fold(100.0, f64::max) * 1.1;
    let max_loss = points.values().flatten().map(|p| p.2).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0f64..max_subs * 1.05, 0f64..max_cpu)
        .map_err(err)?
        .set_secondary_coord(0f64..max_subs * 1.05, 0f64..max_loss);
    chart
        .configure_mesh()
        .x_desc("subscribers joined (1 VP8 + Opus publisher, 1 room; mean of repeats)")
        .y_desc("server CPU, % of one core")
        .draw()
        .map_err(err)?;
    chart
        .configure_secondary_axes()
        .y_desc("loss, %")
        .draw()
        .map_err(err)?;
    let palette = [BLUE, RED, GREEN, MAGENTA];
    for (i, (cores, pts)) in points.iter().enumerate() {
        let color = palette[i % palette.len()];
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.1)),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("server CPU, {cores} dp core(s)"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                pts.iter()
                    .map(|p| Circle::new((p.0, p.1), 4, color.filled())),
            )
            .map_err(err)?;
        let dashed = color.mix(0.6);
        chart
            .draw_secondary_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.2)),
                dashed.stroke_width(1),
            ))
            .map_err(err)?
            .label(format!("loss, {cores} dp core(s) (right axis)"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], dashed.stroke_width(1))
            });
        chart
            .draw_secondary_series(
                pts.iter()
                    .map(|p| TriangleMarker::new((p.0, p.2), 5, dashed.filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::SPECS;

    fn row(spec: usize, cores: usize, cpu: f64, loss: f64) -> Row {
        Row {
            spec: SPECS[spec],
            cores,
            repeat: 1,
            requested: 0,
            joined: SPECS[spec].total_peers() as u64,
            join_ms: (None, None),
            rx_pps: 0.0,
            loss,
            loss_before: loss,
            stage_p99_ms: (None, None),
            latency_ms: (None, None),
            server_cpu: Some(cpu),
            server_kib_per_sub: None,
            loadgen_kib_per_peer: None,
            loadgen_cpu: None,
        }
    }

    #[test]
    fn curve_averages_repeats_and_skips_other_scenarios() {
        let mut half = row(0, 1, 20.0, 0.02);
        half.joined = 6; // 1 publisher, 5 of 10 subscribers
        let rows = [
            row(0, 1, 10.0, 0.0),
            half,
            row(1, 1, 50.0, 0.0),
            row(5, 1, 99.0, 0.5), // audio: not on the curve
            row(0, 2, 8.0, 0.0),
        ];
        let p = curve_points(&rows);
        assert_eq!(p[&1], vec![(7.5, 15.0, 1.0), (100.0, 50.0, 0.0)]);
        assert_eq!(p[&2], vec![(10.0, 8.0, 0.0)]);
        let path = std::env::temp_dir().join(format!("weir-bench-{}.svg", std::process::id()));
        capacity_svg(&rows, &path, "test").unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("server CPU, 1 dp core(s)"));
        std::fs::remove_file(path).unwrap();
        assert!(capacity_svg(&[], Path::new("/nonexistent.svg"), "x").is_err());
    }
}
