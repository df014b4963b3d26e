//! The plots `cargo xtask bench` writes beside its JSON: one SVG per [`Series`]
//! (line charts with markers, one line per dataplane or quantile), drawn with
//! `plotters`' SVG backend (no fonts needed: text stays text).

use std::path::{Path, PathBuf};

use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

use super::Series;

const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// Where the plot of `series` goes for a JSON file at `json`.
pub fn path_for(json: &Path, series: &Series) -> PathBuf {
    let stem = json
        .file_stem()
        .map_or_else(|| "bench".into(), |s| s.to_string_lossy().into_owned());
    json.with_file_name(format!("{stem}.{}.svg", series.name))
}

/// Draws `series` into an SVG file at `path`.
pub fn draw(series: &Series, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    draw_on(&root, series).map_err(|e| format!("plot {}: {e}", series.name))?;
    root.present()
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

fn bounds(series: &Series) -> Option<((f64, f64), (f64, f64))> {
    let points = || series.lines.iter().flat_map(|l| &l.points);
    let finite = |v: &f64| v.is_finite();
    let xs: Vec<f64> = points().map(|p| p.0).filter(finite).collect();
    let ys: Vec<f64> = points().map(|p| p.1).filter(finite).collect();
    let (x0, x1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let y1 = ys.iter().copied().fold(0.0, f64::max);
    if xs.is_empty() {
        return None;
    }
    let (x0, x1) = if series.log_x {
        (x0 / 1.5, x1 * 1.5)
    } else {
        let pad = ((x1 - x0) * 0.05).max(0.5);
        (x0 - pad, x1 + pad)
    };
    Some(((x0, x1), (0.0, (y1 * 1.1).max(1e-9))))
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw_on(root: &DrawingArea<SVGBackend<'_>, Shift>, series: &Series) -> DrawResult {
    root.fill(&WHITE)?;
    let Some(((x0, x1), (y0, y1))) = bounds(series) else {
        return Err("no points".into());
    };
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(&series.title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80);
    if series.log_x {
        let mut chart = builder.build_cartesian_2d((x0..x1).log_scale(), y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(&series.x_label)
            .y_desc(&series.y_label)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()?;
        draw_lines(&mut chart, series)
    } else {
        let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(&series.x_label)
            .y_desc(&series.y_label)
            .draw()?;
        draw_lines(&mut chart, series)
    }
}

/// Every line with its markers and legend entry.
fn draw_lines<'a, CT>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    series: &Series,
) -> DrawResult
where
    CT: CoordTranslate<From = (f64, f64)>,
{
    for (i, line) in series.lines.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(line.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(
            line.points
                .iter()
                .map(|p| Circle::new(*p, 4, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Line;

    #[test]
    fn a_series_draws_to_an_svg_with_its_labels() {
        let dir = std::env::temp_dir().join(format!("enf-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let series = Series {
            name: "t".into(),
            title: "Cost against rules".into(),
            x_label: "rules".into(),
            y_label: "us".into(),
            log_x: true,
            lines: vec![
                Line {
                    label: "enforcer".into(),
                    points: vec![(10.0, 1.0), (10_000.0, 1.1)],
                },
                Line {
                    label: "iptables".into(),
                    points: vec![(10.0, 1.0), (10_000.0, 90.0)],
                },
            ],
        };
        let path = path_for(&dir.join("bench-results.json"), &series);
        draw(&series, &path).unwrap_or_else(|e| panic!("{e}"));
        let svg = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        for text in ["Cost against rules", "enforcer", "iptables", "rules"] {
            assert!(svg.contains(text), "{text} missing from the SVG");
        }
    }
}
