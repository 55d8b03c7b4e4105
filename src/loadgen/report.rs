//! Output of a load run: a table for people, JSON for machines, and an SVG
//! plot (throughput, latency and fan-out outcomes over time) for reports.

use std::fmt::Write as _;

use plotters::coord::combinators::LogCoord;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Second, Summary};

/// A plain-text summary table.
pub fn table(s: &Summary) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "endpoints            {}", s.endpoints);
    let _ = writeln!(t, "elapsed              {:.1} s", s.elapsed_s);
    let _ = writeln!(t, "registered           {}", s.registered);
    if s.refreshed > 0 {
        let _ = writeln!(t, "refreshed            {}", s.refreshed);
    }
    if s.unregistered > 0 {
        let _ = writeln!(t, "unregistered         {}", s.unregistered);
    }
    let _ = writeln!(
        t,
        "failed               {} (timeouts {})",
        s.failed, s.timeouts
    );
    let _ = writeln!(t, "retransmissions      {}", s.retransmissions);
    if let Some(f) = &s.flood {
        t.push_str(&super::flood::table_lines(f));
    }
    if s.challenges > 0 {
        let _ = writeln!(t, "challenges answered  {}", s.challenges);
    }
    let _ = writeln!(
        t,
        "rate                 {:.0}/s achieved ({} asked)",
        s.achieved_rate,
        if s.rate_asked == 0 {
            "max".to_owned()
        } else {
            s.rate_asked.to_string()
        }
    );
    let l = &s.latency_us;
    let _ = writeln!(
        t,
        "latency (us)         p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        l.p50, l.p90, l.p99, l.p999, l.max
    );
    if let Some(c) = s.generator_cpu_us_per_register {
        let _ = writeln!(t, "own CPU/REGISTER     {c:.2} us");
    }
    if let Some(c) = s.server_cpu_us_per_register {
        let _ = writeln!(t, "server CPU/REGISTER  {c:.2} us");
    }
    if let Some(c) = s.server_cpu_us_per_request {
        let _ = writeln!(t, "server CPU/request   {c:.2} us (during the hold)");
    }
    let codes: Vec<String> = s.codes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
    let _ = writeln!(t, "responses            {}", codes.join(", "));
    if !s.requests_received.is_empty() {
        let reqs: Vec<String> = s
            .requests_received
            .iter()
            .map(|(m, n)| format!("{m}: {n}"))
            .collect();
        let _ = writeln!(
            t,
            "requests from server {} (answered {})",
            reqs.join(", "),
            s.requests_answered
        );
        let _ = writeln!(t, "endpoints prompted   {}", s.endpoints_prompted);
        if s.device_challenges > 0 {
            let _ = writeln!(t, "challenges sent      {}", s.device_challenges);
        }
    }
    if s.churned > 0 || s.churn_failed > 0 {
        let _ = writeln!(
            t,
            "devices restarted    {} (failed {})",
            s.churned, s.churn_failed
        );
    }
    if let Some(j) = &s.soak_jobs {
        let _ = writeln!(
            t,
            "soak jobs            {} jobs, {} devices: delivered {}, rejected {}, timed out {}, other {}, errors {}",
            j.jobs, j.devices, j.delivered, j.rejected, j.timed_out, j.other, j.errors
        );
        if let Some(p) = &j.job_seconds {
            let _ = writeln!(
                t,
                "soak job time (us)   p50 {}  p99 {}  max {}",
                p.p50, p.p99, p.max
            );
        }
    }
    if let Some(c) = &s.calls {
        c.write_table(&mut t);
    }
    if let Some(j) = &s.job {
        let _ = writeln!(
            t,
            "job                  {} devices in {:.2} s: delivered {}, rejected {}, timed out {}, other {}",
            j.devices, j.seconds, j.delivered, j.rejected, j.timed_out, j.other
        );
        if j.seconds > 0.0 {
            let _ = writeln!(
                t,
                "job rate             {:.0} devices/s",
                j.devices as f64 / j.seconds
            );
        }
        if let (Some(cpu), Some(per)) = (j.server_cpu_s, j.server_cpu_us_per_device) {
            let _ = writeln!(
                t,
                "server CPU/job       {cpu:.2} s ({per:.2} us per device)"
            );
        }
        if let Some(l) = &j.api_to_wire_us {
            let _ = writeln!(
                t,
                "API-to-wire (us)     p50 {}  p90 {}  p99 {}  max {}",
                l.p50, l.p90, l.p99, l.max
            );
        }
        if !j.server_metrics.is_empty() {
            let m = |k: &str| j.server_metrics.get(k).copied().unwrap_or(0.0);
            let _ = writeln!(
                t,
                "server /metrics      sent {} retransmitted {} delivered {} challenges answered {}",
                m("tether_notify_requests_sent_total"),
                m("tether_notify_retransmissions_total"),
                m("tether_notify_delivered_total"),
                m("tether_notify_challenges_answered_total"),
            );
        }
        if let Some(e) = &j.error {
            let _ = writeln!(t, "job error            {e}");
        }
    }
    for n in &s.nodes {
        let _ = writeln!(
            t,
            "node {:<21} endpoints {}  ok {}  failed {}  prompts {}  duplicates {}  moved away {}{}",
            n.target,
            n.endpoints,
            n.ok,
            n.failed,
            n.prompts,
            n.duplicate_prompts,
            n.moved_away,
            n.went_down_ms
                .map(|ms| format!("  (down at {:.1} s)", ms as f64 / 1000.0))
                .unwrap_or_default()
        );
    }
    if !s.nodes.is_empty() {
        let _ = writeln!(t, "duplicate prompts    {}", s.duplicate_prompts);
    }
    t
}

/// The summary as JSON.
pub fn json(s: &Summary) -> String {
    serde_json::to_string_pretty(s).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The plot: stacked panels over the run's seconds, each with labelled axes
/// (units included), a grid and a legend. Top: REGISTERs answered 200 and
/// failed per second, requests from the server per second, the asked rate
/// dashed. Middle: p50 and p99 REGISTER latency per second, log scale. For
/// runs with fan-out jobs (`notify`, `soak`), bottom: devices delivered,
/// rejected and timed out per second. Saturation shows as throughput
/// flattening below the asked rate while p99 climbs.
pub fn svg(s: &Summary) -> String {
    render(|out| draw(s, out))
}

/// The SVG `draw` writes, or (a report must still come out) one saying
/// what went wrong.
pub(crate) fn render(draw: impl FnOnce(&mut String) -> Result<(), Failure>) -> String {
    let mut out = String::new();
    if let Err(e) = draw(&mut out) {
        return format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"40\">\
<text x=\"10\" y=\"25\">plot failed: {}</text></svg>\n",
            e.to_string().replace('&', "&amp;").replace('<', "&lt;")
        );
    }
    // plotters' SVG backend cannot dash a line (its dashed series is many
    // short lines); the asked rate is drawn in a colour nothing else uses,
    // and that colour's strokes get a dash pattern here.
    out.replace(
        &format!("stroke=\"{ASKED_HEX}\""),
        &format!("stroke=\"{ASKED_HEX}\" stroke-dasharray=\"9 6\""),
    )
}

pub(crate) const ASKED: RGBColor = RGBColor(0x55, 0x55, 0x56);
pub(crate) const ASKED_HEX: &str = "#555556";
pub(crate) const BLUE: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
pub(crate) const RED: RGBColor = RGBColor(0xd6, 0x27, 0x28);
pub(crate) const GREEN: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
pub(crate) const ORANGE: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
pub(crate) const PURPLE: RGBColor = RGBColor(0x94, 0x67, 0xbd);

pub(crate) type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
pub(crate) type Failure = Box<dyn std::error::Error>;
/// A chart with the run's time on x and a linear y.
pub(crate) type Linear<'a> =
    ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A second of a run's timeline, as the plots place it.
pub(crate) trait Timed {
    fn t(&self) -> u32;
}

impl Timed for Second {
    fn t(&self) -> u32 {
        self.t
    }
}

/// The end of the x axis: the timeline's last second, at least 1.
pub(crate) fn t_end<T: Timed>(timeline: &[T]) -> f64 {
    timeline.last().map_or(1, |p| p.t().max(1)) as f64
}

/// `panels` charts stacked under `title` on `out`, each drawn by `panel`
/// (given its index) with its legend beside it, never over a line.
pub(crate) fn stacked(
    out: &mut String,
    title: &str,
    panels: usize,
    mut panel: impl FnMut(usize, &Area<'_>) -> Result<Vec<Entry>, Failure>,
) -> Result<(), Failure> {
    let root = SVGBackend::with_string(out, (1200, 40 + 330 * panels as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    for (i, area) in root.split_evenly((panels, 1)).iter().enumerate() {
        let (plot, side) = area.split_horizontally(area.dim_in_pixel().0 - LEGEND_W);
        let entries = panel(i, &plot)?;
        legend(&side, &entries)?;
    }
    root.present()?;
    Ok(())
}

/// Throughput and latency panels, and the outcomes panel for fan-out runs.
fn draw(s: &Summary, out: &mut String) -> Result<(), Failure> {
    let fanout = s.job.is_some() || s.soak_jobs.is_some();
    let panels = if fanout { 3 } else { 2 };
    let asked = if s.rate_asked == 0 {
        "as fast as possible".to_owned()
    } else {
        format!("asked {}/s", s.rate_asked)
    };
    let title = match &s.calls {
        Some(c) => format!(
            "tether bench call: {} callers to {} callees, {}, achieved {:.0} calls/s, {:.1} s",
            c.callers,
            c.callees,
            match c.rate_asked {
                0 => "as fast as possible".to_owned(),
                r => format!("asked {r} calls/s"),
            },
            c.calls_per_s,
            s.elapsed_s
        ),
        None => format!(
            "tether bench: {} endpoints, {asked}, achieved {:.0}/s, {:.1} s",
            s.endpoints, s.achieved_rate, s.elapsed_s
        ),
    };
    let t_end = t_end(&s.timeline);
    stacked(out, &title, panels, |i, plot| match i {
        0 => throughput(plot, s, t_end),
        1 => latency(plot, s, t_end),
        _ => outcomes(plot, s, t_end),
    })
}

/// A legend entry: what a line shows, and its colour.
pub(crate) type Entry = (String, RGBColor);
/// A line to draw: its name, colour, and value in a second of the run.
pub(crate) type Series<T = Second> = (&'static str, RGBColor, fn(&T) -> u64);

/// A per-second count as a rate at each second: (x = second, y = count/s).
/// The run's last second is cut short where the run ended: its count is
/// divided by the time it lasted, or left out when that was under 0.2 s (a
/// handful of answers would read as a collapse or a spike).
pub(crate) fn points<T: Timed>(
    timeline: &[T],
    end_s: f64,
    f: impl Fn(&T) -> u64,
) -> Vec<(f64, f64)> {
    timeline
        .iter()
        .filter_map(|p| {
            let t = f64::from(p.t());
            let lasted = (end_s - t).min(1.0);
            (lasted >= 0.2).then(|| (t, f(p) as f64 / lasted))
        })
        .collect()
}

/// The asked rate across the whole run, in the colour that gets dashed.
pub(crate) fn asked_line(c: &mut Linear<'_>, t_end: f64, asked: f64) -> Result<(), Failure> {
    c.draw_series(LineSeries::new(
        [(0.0, asked), (t_end, asked)],
        ASKED.stroke_width(2),
    ))?;
    Ok(())
}

/// A chart on `area` with the run's time on x, `y` on y, grid and axis titles.
pub(crate) fn chart<'a, Y: Ranged<ValueType = f64> + ValueFormatter<f64>>(
    area: &Area<'a>,
    caption: &str,
    t_end: f64,
    y: Y,
    y_desc: &str,
    y_fmt: &dyn Fn(&f64) -> String,
) -> Result<ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>, Failure> {
    let mut c = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(80)
        .build_cartesian_2d(RangedCoordf64::from(0f64..t_end), y)?;
    c.configure_mesh()
        .x_desc("time since start (s)")
        .y_desc(y_desc)
        .y_label_formatter(y_fmt)
        .x_label_formatter(&seconds)
        .x_labels(((t_end as usize) + 1).clamp(3, 13))
        .y_labels(8)
        .max_light_lines(4)
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 13))
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .bold_line_style(RGBColor(0xcc, 0xcc, 0xcc))
        .draw()?;
    Ok(c)
}

/// Whole seconds without a fraction, others with one digit.
fn seconds(v: &f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub(crate) const LEGEND_W: u32 = 260;

/// A framed legend at the top of `area`: a line sample and a label per entry.
pub(crate) fn legend(area: &Area<'_>, entries: &[Entry]) -> Result<(), Failure> {
    let (top, row) = (44, 24);
    let bottom = top + 8 + row * entries.len() as i32;
    area.draw(&Rectangle::new(
        [(4, top), (LEGEND_W as i32 - 10, bottom)],
        RGBColor(0x99, 0x99, 0x99),
    ))?;
    let font =
        TextStyle::from(("sans-serif", 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (label, color)) in entries.iter().enumerate() {
        let y = top + 4 + row / 2 + row * i as i32;
        area.draw(&PathElement::new(
            vec![(12, y), (44, y)],
            color.stroke_width(2),
        ))?;
        area.draw(&Text::new(label.as_str(), (52, y), font.clone()))?;
    }
    Ok(())
}

pub(crate) fn count(v: &f64) -> String {
    if *v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

fn throughput(area: &Area<'_>, s: &Summary, t_end: f64) -> Result<Vec<Entry>, Failure> {
    let series: &[Series] = match s.calls {
        // Calls only: a burst of registrations before them would set the scale.
        Some(_) => &[
            ("calls placed", BLUE, |p| p.calls_placed),
            ("calls answered 200", GREEN, |p| p.calls_answered),
            ("calls failed", RED, |p| p.calls_failed),
        ],
        None => &[
            ("REGISTERs answered 200", BLUE, |p| p.ok),
            ("REGISTERs failed", RED, |p| p.failed),
            ("requests from the server", GREEN, |p| p.requests_received),
        ],
    };
    let asked = s.calls.as_ref().map_or(s.rate_asked, |c| c.rate_asked);
    let top = s
        .timeline
        .iter()
        .flat_map(|p| series.iter().map(|(_, _, f)| f(p)))
        .max()
        .unwrap_or(0)
        .max(u64::from(asked))
        .max(1) as f64
        * 1.15;
    let mut c = chart(
        area,
        "Throughput",
        t_end,
        RangedCoordf64::from(0f64..top),
        "per second (1/s)",
        &count,
    )?;
    let mut entries = Vec::new();
    for (i, &(name, color, f)) in series.iter().enumerate() {
        // The first always (an empty run still says what it would show).
        if i == 0 || s.timeline.iter().any(|p| f(p) > 0) {
            let line = points(&s.timeline, s.elapsed_s, f);
            c.draw_series(LineSeries::new(line, color.stroke_width(2)))?;
            entries.push((format!("{name} /s"), color));
        }
    }
    if asked > 0 {
        asked_line(&mut c, t_end, f64::from(asked))?;
        entries.push((format!("asked rate ({asked}/s)"), ASKED));
    }
    Ok(entries)
}

/// Microseconds as a person reads them: 500 µs, 2 ms, 1.5 s.
pub(crate) fn duration_us(v: &f64) -> String {
    match *v {
        v if v >= 1e6 => format!("{} s", v / 1e6),
        v if v >= 1e3 => format!("{} ms", v / 1e3),
        v => format!("{v} µs"),
    }
}

fn latency(area: &Area<'_>, s: &Summary, t_end: f64) -> Result<Vec<Entry>, Failure> {
    let (caption, series): (_, [Series; 2]) = match s.calls {
        Some(_) => (
            "Call setup latency (INVITE to 200), of the calls answered in each second",
            [
                ("p50 (median)", PURPLE, |p| p.setup_p50_us),
                ("p99", ORANGE, |p| p.setup_p99_us),
            ],
        ),
        None => (
            "REGISTER latency, of the answers in each second",
            [
                ("p50 (median)", PURPLE, |p| p.p50_us),
                ("p99", ORANGE, |p| p.p99_us),
            ],
        ),
    };
    latency_panel(area, caption, t_end, &s.timeline, &series, 1)
}

/// A latency panel: each series per second on a log scale of whole
/// decades, in microseconds (values are `per_us` to the microsecond).
pub(crate) fn latency_panel<T: Timed>(
    area: &Area<'_>,
    caption: &str,
    t_end: f64,
    timeline: &[T],
    series: &[Series<T>],
    per_us: u64,
) -> Result<Vec<Entry>, Failure> {
    let seen = || {
        timeline
            .iter()
            .flat_map(|p| series.iter().map(move |(_, _, f)| f(p) / per_us))
    };
    let lo = seen().filter(|&v| v > 0).min().unwrap_or(10) as f64;
    let hi = seen().max().unwrap_or(1000).max(10) as f64;
    // Whole decades, so the axis always has at least two labelled ticks.
    let lo = 10f64.powf(lo.max(1.0).log10().floor());
    let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
    let y = lo..hi;
    let mut c = chart(
        area,
        caption,
        t_end,
        LogCoord::from(y.log_scale()),
        "latency (log scale)",
        &duration_us,
    )?;
    for &(_, color, f) in series {
        // A second without answers has no latency: the line breaks there.
        // A value under the axis's floor (sub-microsecond) sits on it.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for p in timeline {
            match f(p) {
                0 => runs.push(Vec::new()),
                v => {
                    if let Some(run) = runs.last_mut() {
                        run.push((f64::from(p.t()), (v as f64 / per_us as f64).max(lo)));
                    }
                }
            }
        }
        for run in runs.into_iter().filter(|r| !r.is_empty()) {
            // Dots too, so a second alone between gaps still shows.
            c.draw_series(LineSeries::new(run, color.stroke_width(2)).point_size(2))?;
        }
    }
    Ok(series
        .iter()
        .map(|&(name, color, _)| (name.to_owned(), color))
        .collect())
}

fn outcomes(area: &Area<'_>, s: &Summary, t_end: f64) -> Result<Vec<Entry>, Failure> {
    let top = s
        .timeline
        .iter()
        .map(|p| p.delivered.max(p.rejected).max(p.timed_out))
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.15;
    let mut c = chart(
        area,
        "Fan-out outcomes, as the server's API reported them",
        t_end,
        RangedCoordf64::from(0f64..top),
        "devices per second (1/s)",
        &count,
    )?;
    let series: [Series; 3] = [
        ("delivered", GREEN, |p| p.delivered),
        ("rejected", ORANGE, |p| p.rejected),
        ("timed out", RED, |p| p.timed_out),
    ];
    let mut entries = Vec::new();
    for (name, color, f) in series {
        let line = points(&s.timeline, s.elapsed_s, f);
        c.draw_series(LineSeries::new(line, color.stroke_width(2)))?;
        let total: u64 = s.timeline.iter().map(f).sum();
        entries.push((format!("{name} /s ({total} in all)"), color));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(fanout: bool) -> Summary {
        let timeline = (0..6)
            .map(|t| Second {
                t,
                sent: 100,
                ok: 90 + u64::from(t),
                failed: u64::from(t == 3),
                p50_us: if t == 2 { 0 } else { 300 + 10 * u64::from(t) },
                p99_us: if t == 2 { 0 } else { 2_000 * u64::from(t + 1) },
                delivered: if fanout { 40 } else { 0 },
                rejected: if fanout { 3 } else { 0 },
                timed_out: if fanout { 1 } else { 0 },
                ..Second::default()
            })
            .collect();
        Summary {
            endpoints: 600,
            rate_asked: 100,
            elapsed_s: 6.0,
            registered: 590,
            unregistered: 0,
            refreshed: 0,
            failed: 1,
            timeouts: 0,
            retransmissions: 0,
            challenges: 0,
            codes: Default::default(),
            achieved_rate: 98.0,
            latency_us: Default::default(),
            requests_received: Default::default(),
            requests_answered: 0,
            endpoints_prompted: 0,
            generator_cpu_us_per_register: None,
            server_cpu_us_per_register: None,
            server_cpu_us_per_request: None,
            job: fanout.then(Default::default),
            device_challenges: 0,
            churned: 0,
            churn_failed: 0,
            soak_jobs: None,
            calls: None,
            flood: None,
            nodes: Vec::new(),
            duplicate_prompts: 0,
            timeline,
        }
    }

    #[test]
    fn plot_has_axis_titles_legend_and_a_dashed_asked_rate() {
        let svg = svg(&summary(false));
        assert!(svg.starts_with("<svg"), "{svg}");
        for text in [
            "time since start (s)",
            "per second (1/s)",
            "latency (log scale)",
            "REGISTERs answered 200 /s",
            "REGISTERs failed /s",
            "asked rate (100/s)",
            "p50 (median)",
            "p99",
            "tether bench: 600 endpoints, asked 100/s",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        // Tick labels carry units on the latency axis.
        assert!(svg.contains("\n1 ms\n"), "latency ticks in ms");
        // The asked rate and its legend sample, and nothing else, are dashed.
        assert_eq!(svg.matches("stroke-dasharray").count(), 2, "{svg}");
        let dashed = svg
            .lines()
            .find(|l| l.contains("stroke-dasharray"))
            .unwrap();
        assert!(dashed.contains(ASKED_HEX));
        // No outcomes panel without fan-out jobs.
        assert!(!svg.contains("delivered /s"));
    }

    #[test]
    fn fanout_runs_plot_outcomes_over_time() {
        let svg = svg(&summary(true));
        for text in [
            "devices per second (1/s)",
            "delivered /s (240 in all)",
            "rejected /s (18 in all)",
            "timed out /s (6 in all)",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
    }

    #[test]
    fn call_runs_plot_calls_and_setup_latency_and_list_them() {
        let mut s = summary(false);
        for p in &mut s.timeline {
            (p.calls_placed, p.calls_answered, p.setup_p50_us) = (200, 190, 900);
            p.setup_p99_us = 3_000;
        }
        s.calls = Some(crate::loadgen::CallReport {
            rate_asked: 200,
            answered: 1_140,
            ..Default::default()
        });
        let svg = svg(&s);
        for text in [
            "calls placed /s",
            "calls answered 200 /s",
            "asked rate (200/s)",
            "Call setup latency (INVITE to 200)",
            "tether bench call:",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(table(&s).contains("answered 1140"));
    }

    #[test]
    fn an_empty_run_still_plots() {
        let mut s = summary(false);
        s.timeline.clear();
        s.rate_asked = 0;
        let svg = svg(&s);
        assert!(svg.contains("time since start (s)"), "{svg}");
        assert!(svg.contains("as fast as possible"));
    }
}
