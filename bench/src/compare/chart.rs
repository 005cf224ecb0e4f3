//! A PNG with one bar panel per figure. Text is drawn with DejaVu Sans compiled into the
//! bench (the `dejavu` crate) through plotters' ab_glyph renderer: no fontconfig, no system
//! fonts.

use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::report::{Results, thousands};

const CAN: RGBColor = RGBColor(31, 119, 180);
const ST: RGBColor = RGBColor(44, 160, 44);
const ST_LIGHT: RGBColor = RGBColor(152, 223, 138);
const CAN_LIGHT: RGBColor = RGBColor(174, 199, 232);
const RAW: RGBColor = RGBColor(127, 127, 127);

type Bar = (String, f64, RGBColor);

pub fn draw(r: &Results, path: &Path) -> anyhow::Result<()> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| anyhow!("the bundled font is not a valid TTF"))?;
    let root = BitMapBackend::new(path, (1500, 960)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, rest) = root.split_vertically(50);
    top.draw_text(
        &format!(
            "CAN Sync vs Syncthing vs raw iroh, loopback, one run ({}{})",
            r.date,
            if r.cfg.quick { ", --quick" } else { "" }
        ),
        &("sans-serif", 24).into_font().color(&BLACK),
        (20, 14),
    )?;
    let panels = rest.split_evenly((2, 3));

    let mut latency: Vec<Bar> = Vec::new();
    if let Some(l) = &r.can.latency {
        latency.push(("CAN Sync".into(), l.p50(), CAN));
    }
    if let Some(l) = &r.st.latency {
        latency.push(("Syncthing 1 s".into(), l.p50(), ST));
    }
    if let Some(l) = &r.st.latency_slow {
        latency.push(("Syncthing 10 s".into(), l.p50(), ST_LIGHT));
    }
    let hi = latency.iter().map(|b| b.1).fold(10.0, f64::max) * 4.0;
    panel(
        &panels[0],
        "propagation of 1 KiB, p50 (ms, log scale)",
        &latency,
        (0.5f64..hi).log_scale(),
        0.5,
    )?;

    let mut bulk: Vec<Bar> = Vec::new();
    for (name, b, color) in [
        ("CAN Sync", &r.can.bulk, CAN),
        ("Syncthing", &r.st.bulk, ST),
    ] {
        if let Some(b) = b {
            bulk.push((name.into(), r.bulk_bytes as f64 / b.secs / 1e6, color));
        }
    }
    if let Some((bytes, secs)) = r.raw_iroh {
        bulk.push(("raw iroh".into(), bytes as f64 / secs / 1e6, RAW));
    }
    linear(&panels[1], "bulk mirror (MB/s, higher is better)", &bulk)?;

    let mut recon_time: Vec<Bar> = Vec::new();
    let mut recon_wire: Vec<Bar> = Vec::new();
    for (name, list, colors) in [
        ("CAN", &r.can.recon, [CAN, CAN_LIGHT]),
        ("ST", &r.st.recon, [ST, ST_LIGHT]),
    ] {
        for (x, color) in list.iter().zip(colors) {
            let label = if x.missing == 0 {
                format!("{name} same")
            } else {
                format!("{name} 1 % diff")
            };
            recon_time.push((label.clone(), x.secs, color));
            if let Some(w) = x.wire {
                recon_wire.push((label, w as f64 / 1e6, color));
            }
        }
    }
    let n = r.can.recon.first().map_or(0, |x| x.assets);
    linear(
        &panels[2],
        &format!("initial reconciliation, {} each side (s)", thousands(n)),
        &recon_time,
    )?;
    linear(&panels[3], "reconciliation, MB on the wire", &recon_wire)?;

    let mut rss: Vec<Bar> = Vec::new();
    let mut cpu: Vec<Bar> = Vec::new();
    if let Some(b) = &r.can.bulk {
        rss.push(("CAN send".into(), crate::proc::mib(b.peak_rss[0]), CAN));
        rss.push((
            "CAN recv".into(),
            crate::proc::mib(b.peak_rss[1]),
            CAN_LIGHT,
        ));
        cpu.push(("CAN agents".into(), b.cpu_agents[0] + b.cpu_agents[1], CAN));
        if let Some(s) = b.cpu_services {
            let total = b.cpu_agents[0] + b.cpu_agents[1] + s[0] + s[1];
            cpu.push(("CAN + services".into(), total, CAN_LIGHT));
        }
    }
    if let Some(b) = &r.st.bulk {
        rss.push(("ST send".into(), crate::proc::mib(b.peak_rss[0]), ST));
        rss.push(("ST recv".into(), crate::proc::mib(b.peak_rss[1]), ST_LIGHT));
        cpu.push(("Syncthing".into(), b.cpu_agents[0] + b.cpu_agents[1], ST));
    }
    linear(&panels[4], "peak RSS during bulk (MiB)", &rss)?;
    linear(&panels[5], "CPU seconds during bulk, both sides", &cpu)?;
    root.present().context("writing the PNG")?;
    Ok(())
}

fn linear(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    title: &str,
    bars: &[Bar],
) -> anyhow::Result<()> {
    let hi = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9) * 1.2;
    panel(area, title, bars, 0f64..hi, 0.0)
}

/// One bar per entry (at x = 0, 1, ...), its value written above it.
fn panel<Y>(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    title: &str,
    bars: &[Bar],
    y: Y,
    base: f64,
) -> anyhow::Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let n = bars.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 19))
        .margin(14)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, y)?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(n + 1)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", 14))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v, color))| {
        let x = i as f64;
        Rectangle::new([(x - 0.36, base), (x + 0.36, *v)], color.filled())
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v, _))| {
        Text::new(
            value(*v),
            (i as f64, *v),
            ("sans-serif", 15).into_font().color(&BLACK).pos(
                plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Bottom,
                ),
            ),
        )
    }))?;
    Ok(())
}

fn value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
