//! Charts as SVG text, drawn with plotters' SVG backend. Values arrive as `f64` for drawing
//! only: every number printed next to a chart is formatted by the caller from exact decimals.

use plotters::coord::types::RangedCoordusize;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{FONT_FAMILY, PdfError, Result};

/// Label and value text sizes in SVG pixels (charts are 1000 px wide and scaled to the
/// 17.4 cm text width, so 20 px prints at about 10 pt).
const LABEL: u32 = 20;
const VALUE: u32 = 19;

/// Bar colour (a dark blue) and its accent colours.
const BAR: RGBColor = RGBColor(0x2b, 0x5c, 0x8a);
const MUTED: RGBColor = RGBColor(0x9d, 0xb4, 0xcc);
const ALERT: RGBColor = RGBColor(0xc0, 0x39, 0x2b);
const GRID: RGBColor = RGBColor(0xe3, 0xe3, 0xe3);
const INK: RGBColor = RGBColor(0x33, 0x33, 0x33);

fn err(chart: &str) -> impl Fn(String) -> PdfError + '_ {
    move |message| PdfError::Chart {
        chart: chart.to_string(),
        message,
    }
}

/// A horizontal bar per `(label, value, value_text)`, first on top.
pub fn hbar(name: &str, bars: &[(String, f64, String)], width: u32, height: u32) -> Result<String> {
    let e = err(name);
    let n = bars.len().max(1);
    let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max);
    let longest = bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(4);
    let label_area = u32::try_from(longest).unwrap_or(40).clamp(4, 30) * (LABEL * 3 / 5) + 24;
    // Room on the right of every bar for its value text (DejaVu Sans: about 0.6 em a
    // character): the axis ends where the widest bar-plus-text fits.
    let plot = f64::from(width.saturating_sub(label_area + 30).max(100));
    let text_px = |t: &str| (t.chars().count() as f64 + 1.0) * f64::from(VALUE) * 0.6;
    let xmax = if max > 0.0 {
        bars.iter()
            .map(|b| b.1 * plot / (plot - text_px(&b.2)).max(plot * 0.3))
            .fold(max * 1.05, f64::max)
    } else {
        1.0
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .margin_top(8)
            .margin_right(16)
            .margin_left(4)
            .x_label_area_size(40)
            .y_label_area_size(label_area)
            // Discrete ranges include their end: 0..=n-1 is n bars.
            .build_cartesian_2d(0f64..xmax, (0..n - 1).into_segmented())
            .map_err(|x| e(x.to_string()))?;
        let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        let label_of = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) if *i < labels.len() => labels[labels.len() - 1 - i].clone(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .axis_style(MUTED)
            .y_labels(n)
            .y_label_formatter(&label_of)
            .x_labels(6)
            .x_label_formatter(&|x| axis_number(*x, xmax))
            .label_style((FONT_FAMILY, LABEL).into_font().color(&INK))
            .draw()
            .map_err(|x| e(x.to_string()))?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let y = n - 1 - i;
                let mut r = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(y)),
                        (b.1, SegmentValue::Exact(y + 1)),
                    ],
                    if i == 0 {
                        BAR.filled()
                    } else {
                        BAR.mix(0.75).filled()
                    },
                );
                r.set_margin(7, 7, 0, 0);
                r
            }))
            .map_err(|x| e(x.to_string()))?;
        let value_font = (FONT_FAMILY, VALUE)
            .into_font()
            .color(&INK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                Text::new(
                    format!(" {}", b.2),
                    (b.1, SegmentValue::CenterOf(n - 1 - i)),
                    value_font.clone(),
                )
            }))
            .map_err(|x| e(x.to_string()))?;
        root.present().map_err(|x| e(x.to_string()))?;
    }
    Ok(svg)
}

/// Vertical bars for a few named periods; `None` draws no bar and prints `n/a`.
pub fn vbar(
    name: &str,
    bars: &[(String, Option<f64>, String)],
    width: u32,
    height: u32,
) -> Result<String> {
    let e = err(name);
    let n = bars.len().max(1);
    let max = bars.iter().filter_map(|b| b.1).fold(0.0_f64, f64::max);
    let ymax = if max > 0.0 { max * 1.2 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(90)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0f64..ymax)
            .map_err(|x| e(x.to_string()))?;
        let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .axis_style(MUTED)
            .x_labels(n)
            .x_label_formatter(&|v: &SegmentValue<usize>| match v {
                SegmentValue::CenterOf(i) if *i < labels.len() => labels[*i].clone(),
                _ => String::new(),
            })
            .y_labels(5)
            .y_label_formatter(&|y| axis_number(*y, ymax))
            .label_style((FONT_FAMILY, LABEL).into_font().color(&INK))
            .draw()
            .map_err(|x| e(x.to_string()))?;
        let last = n - 1;
        chart
            .draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
                let v = b.1?;
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), v),
                    ],
                    if i == last {
                        BAR.filled()
                    } else {
                        MUTED.filled()
                    },
                );
                r.set_margin(0, 0, 70, 70);
                Some(r)
            }))
            .map_err(|x| e(x.to_string()))?;
        let font = (FONT_FAMILY, VALUE)
            .into_font()
            .color(&INK)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                Text::new(
                    b.2.clone(),
                    (SegmentValue::CenterOf(i), b.1.unwrap_or(0.0) + ymax * 0.03),
                    font.clone(),
                )
            }))
            .map_err(|x| e(x.to_string()))?;
        root.present().map_err(|x| e(x.to_string()))?;
    }
    Ok(svg)
}

/// A line over the days of a month (`None` = no value that day: a gap), with an area under
/// it, dots, and `marks` (day numbers) highlighted in red.
pub struct DailyLine<'a> {
    pub name: &'a str,
    /// Values for day 1, 2, ...
    pub values: &'a [Option<f64>],
    /// Upper end of the y axis (`None`: from the data).
    pub ymax: Option<f64>,
    /// Formats a y-axis value.
    pub y_format: &'a dyn Fn(f64) -> String,
    /// Formats a day number for the x axis.
    pub x_format: &'a dyn Fn(usize) -> String,
    /// Days (1-based) drawn as red dots.
    pub marks: &'a [usize],
}

pub fn daily_line(c: &DailyLine<'_>, width: u32, height: u32) -> Result<String> {
    let e = err(c.name);
    let n = c.values.len().max(1);
    let max = c.values.iter().flatten().copied().fold(0.0_f64, f64::max);
    let ymax = c.ymax.unwrap_or(if max > 0.0 { max * 1.15 } else { 1.0 });
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .margin_right(18)
            .x_label_area_size(40)
            .y_label_area_size(90)
            // Inclusive: days 1..=n.
            .build_cartesian_2d(RangedCoordusize::from(1..n.max(2)), 0f64..ymax)
            .map_err(|x| e(x.to_string()))?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .axis_style(MUTED)
            .x_labels(n.min(16))
            .x_label_formatter(&|d| (c.x_format)(*d))
            .y_labels(5)
            .y_label_formatter(&|y| (c.y_format)(*y))
            .label_style((FONT_FAMILY, LABEL).into_font().color(&INK))
            .draw()
            .map_err(|x| e(x.to_string()))?;
        // Runs of consecutive days with a value.
        let mut runs: Vec<Vec<(usize, f64)>> = Vec::new();
        let mut run: Vec<(usize, f64)> = Vec::new();
        for (i, v) in c.values.iter().enumerate() {
            match v {
                Some(v) => run.push((i + 1, *v)),
                None if !run.is_empty() => runs.push(std::mem::take(&mut run)),
                None => {}
            }
        }
        if !run.is_empty() {
            runs.push(run);
        }
        for r in &runs {
            chart
                .draw_series(AreaSeries::new(r.iter().copied(), 0.0, BAR.mix(0.12)))
                .map_err(|x| e(x.to_string()))?;
            chart
                .draw_series(LineSeries::new(r.iter().copied(), BAR.stroke_width(3)))
                .map_err(|x| e(x.to_string()))?;
        }
        chart
            .draw_series(
                runs.iter()
                    .flatten()
                    .map(|&(d, v)| Circle::new((d, v), 3, BAR.filled())),
            )
            .map_err(|x| e(x.to_string()))?;
        chart
            .draw_series(
                runs.iter()
                    .flatten()
                    .filter(|(d, _)| c.marks.contains(d))
                    .map(|&(d, v)| Circle::new((d, v), 7, ALERT.stroke_width(3))),
            )
            .map_err(|x| e(x.to_string()))?;
        root.present().map_err(|x| e(x.to_string()))?;
    }
    Ok(svg)
}

/// An axis tick: grouped thousands, decimals only when the axis is small.
pub fn axis_number(x: f64, max: f64) -> String {
    if max >= 20.0 {
        let s = format!("{:.0}", x.round());
        group_digits(&s)
    } else if max >= 2.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// `1234567.5` -> `1,234,567.5` (on the text of a number).
pub fn group_digits(s: &str) -> String {
    let (sign, digits) = s.strip_prefix('-').map_or(("", s), |d| ("-", d));
    let (int, frac) = digits
        .split_once('.')
        .map_or((digits, None), |(i, f)| (i, Some(f)));
    let mut out = String::with_capacity(s.len() + 4);
    out.push_str(sign);
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_group_by_thousands() {
        assert_eq!(group_digits("1234567.50"), "1,234,567.50");
        assert_eq!(group_digits("-1000"), "-1,000");
        assert_eq!(group_digits("999.9"), "999.9");
        assert_eq!(axis_number(12345.4, 50000.0), "12,345");
    }

    #[test]
    fn charts_are_svg_and_survive_empty_data() {
        let svg = hbar("t", &[], 600, 300).unwrap();
        assert!(svg.contains("<svg"));
        let svg = hbar(
            "t",
            &[
                ("a <&> \"b\"".into(), 3.0, "3.00".into()),
                ("c".into(), 1.0, "1.00".into()),
            ],
            600,
            300,
        )
        .unwrap();
        // Text is XML-escaped by the backend.
        assert!(svg.contains("&lt;&amp;&gt;"), "{svg}");
        let none: Vec<Option<f64>> = vec![None; 30];
        let line = DailyLine {
            name: "d",
            values: &none,
            ymax: None,
            y_format: &|y| format!("{y}"),
            x_format: &|d| d.to_string(),
            marks: &[],
        };
        assert!(daily_line(&line, 600, 200).unwrap().contains("<svg"));
    }
}
