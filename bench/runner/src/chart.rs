//! The SVG chart of a run (plotters): messages per server CPU-second for each
//! echo point, one bar per server, as a multiple of the raw TCP echo ceiling
//! (or absolute when no raw echo ran), with whiskers from the slowest to the
//! fastest sample.

use crate::results::{Kind, Results, Sample};
use crate::table::{si, size_label};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

const LEGEND_WIDTH: u32 = 190;

const COLOURS: [RGBColor; 8] = [
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(127, 127, 127),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];

/// Writes the chart to `path`.
pub fn write_svg(r: &Results, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let points = r.echo_points();
    // The chart shows the ws:// servers; the wss:// ones are in their own tables.
    let names: Vec<&str> =
        r.servers.iter().filter(|s| !s.tls && !s.deflate && !s.rooms).map(|s| s.name.as_str()).collect();
    let raw = r.servers.iter().find(|s| s.raw).map(|s| s.name.clone());
    // (median, min, max) per point and server, scaled to the raw echo's median.
    let bars: Vec<Vec<Option<(f64, f64, f64)>>> = points
        .iter()
        .map(|&pt| {
            let per = |n: &str| r.spread(Kind::Echo, n, pt, Sample::per_server_cpu_second);
            let scale = match &raw {
                Some(raw) => per(raw).map(|x| x.median),
                None => Some(1.0),
            };
            names
                .iter()
                .map(|n| {
                    let (x, k) = (per(n)?, scale?);
                    Some((x.median / k, x.min / k, x.max / k))
                })
                .collect()
        })
        .collect();
    let top = bars.iter().flatten().flatten().map(|b| b.2).fold(0.0f64, f64::max).max(1e-9) * 1.12;
    let width = (160 + 120 * points.len().max(1) as u32).max(900);
    let root = SVGBackend::new(path, (width + LEGEND_WIDTH, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    // The legend gets a column of its own, so it never covers a bar.
    let (plot, legend) = root.split_horizontally(width);
    let caption = match raw {
        Some(_) => "Messages per server CPU-second, relative to the raw TCP echo (1.0)",
        None => "Messages per server CPU-second",
    };
    let mut chart = ChartBuilder::on(&plot)
        .caption(caption, ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(64)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..points.len().max(1) as f64, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .x_labels(0)
        .y_label_formatter(&|y| if raw.is_some() { format!("{y:.1}") } else { si(*y) })
        .draw()?;
    let n = names.len().max(1) as f64;
    let slot = 0.8 / n;
    for (j, name) in names.iter().enumerate() {
        let colour = COLOURS[j % COLOURS.len()];
        let x0 = |i: usize| i as f64 + 0.1 + j as f64 * slot;
        let series = bars.iter().enumerate().filter_map(|(i, b)| b[j].map(|v| (i, v)));
        chart.draw_series(
            series
                .clone()
                .map(|(i, (m, _, _))| Rectangle::new([(x0(i), 0.0), (x0(i) + slot * 0.9, m)], colour.filled())),
        )?;
        let y = 60 + 24 * j as i32;
        legend.draw(&Rectangle::new([(10, y - 6), (22, y + 6)], colour.filled()))?;
        legend.draw(&Text::new(name.to_string(), (30, y - 7), ("sans-serif", 14)))?;
        chart.draw_series(series.map(|(i, (_, lo, hi))| {
            let x = x0(i) + slot * 0.45;
            PathElement::new(vec![(x, lo), (x, hi)], BLACK.stroke_width(1))
        }))?;
    }
    if raw.is_some() {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 1.0), (points.len() as f64, 1.0)],
            BLACK.mix(0.5).stroke_width(1),
        )))?;
    }
    // Category labels under each group, placed in pixels: plotters' numeric
    // axis would put its ticks at round numbers, not at the groups' centres.
    let style = TextStyle::from(("sans-serif", 14)).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, &(c, s, p)) in points.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        plot.draw(&Text::new(format!("{c} conns"), (px, py + 8), style.clone()))?;
        plot.draw(&Text::new(size_label(s), (px, py + 24), style.clone()))?;
        if p > 1 {
            plot.draw(&Text::new(format!("{p} in flight"), (px, py + 40), style.clone()))?;
        }
    }
    root.present()?;
    Ok(())
}

/// Writes the open-loop chart to `path`: latency against offered load, one
/// colour per server, p99 as a solid line with dots and p50 as a thin pale
/// line, on a logarithmic latency axis.
pub fn write_latency_svg(r: &Results, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let loads = r.loads();
    let names = r.servers_with(Kind::Rate);
    let median = |n: &str, o: crate::results::Offered, f: fn(&ricochet::bench::Percentiles) -> f64| {
        r.at_load(n, o, |s| s.latency_us(f)).map(|x| x.median)
    };
    let all: Vec<f64> = names
        .iter()
        .flat_map(|n| loads.iter().flat_map(move |&o| [median(n, o, |l| l.p50), median(n, o, |l| l.p99)]))
        .flatten()
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).max(1.0) / 1.5;
    let hi = all.iter().copied().fold(0.0f64, f64::max).max(lo * 10.0) * 1.5;
    let root = SVGBackend::new(path, (900 + LEGEND_WIDTH, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_horizontally(900);
    let mut chart = ChartBuilder::on(&plot)
        .caption("Echo latency under fixed load: p99 (dots) and p50 (pale)", ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..100f64, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("offered load, % of the slowest server's closed-loop saturation")
        .y_desc("latency")
        .x_label_formatter(&|x| format!("{x:.0}%"))
        .y_label_formatter(&|y| crate::table::duration_us(*y))
        .draw()?;
    for (j, name) in names.iter().enumerate() {
        let colour = COLOURS[j % COLOURS.len()];
        let line = |f: fn(&ricochet::bench::Percentiles) -> f64| -> Vec<(f64, f64)> {
            loads.iter().filter_map(|&o| Some((o.load * 100.0, median(name, o, f)?))).collect()
        };
        let (p99, p50) = (line(|l| l.p99), line(|l| l.p50));
        chart.draw_series(std::iter::once(PathElement::new(p50, colour.mix(0.45).stroke_width(1))))?;
        chart.draw_series(std::iter::once(PathElement::new(p99.clone(), colour.stroke_width(2))))?;
        chart.draw_series(p99.into_iter().map(|p| Circle::new(p, 4, colour.filled())))?;
        let y = 60 + 24 * j as i32;
        legend.draw(&Rectangle::new([(10, y - 6), (22, y + 6)], colour.filled()))?;
        legend.draw(&Text::new(name.to_string(), (30, y - 7), ("sans-serif", 14)))?;
    }
    root.present()?;
    Ok(())
}
