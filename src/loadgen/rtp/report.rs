//! The RTP run's output: a table for people, JSON for machines, and an SVG
//! plot in the style of the other scenarios' (packets per second sent and
//! forwarded, one-way latency p50/p99 per second).

use std::fmt::Write as _;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::{RtpReport, RtpSecond};
use crate::loadgen::report::{
    asked_line, chart, count, latency_panel, points, render, stacked, t_end, Area, Entry, Failure,
    Series, Timed, ASKED, BLUE, GREEN, ORANGE, PURPLE,
};

impl Timed for RtpSecond {
    fn t(&self) -> u32 {
        self.t
    }
}

/// Nanoseconds as microseconds with one decimal.
fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}

/// A plain-text summary table.
pub fn table(r: &RtpReport) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "relay                {}", r.relay);
    let _ = writeln!(
        t,
        "calls                {} asked, {} set up in {:.2} s, {} deleted",
        r.calls_asked, r.calls_set_up, r.setup_s, r.calls_deleted
    );
    if r.ng_errors + r.ng_timeouts + r.ng_retransmissions > 0 {
        let _ = writeln!(
            t,
            "ng trouble           {} errors, {} timeouts, {} retransmissions{}",
            r.ng_errors,
            r.ng_timeouts,
            r.ng_retransmissions,
            r.ng_first_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        t,
        "flows                {} ({} streams × 2 directions) at {} pps, {} B payload",
        r.flows, r.streams, r.pps_per_flow, r.payload_bytes
    );
    let _ = writeln!(
        t,
        "send window          {:.2} s: sent {} ({:.0} pps offered), skipped {} (generator behind), kernel refused {}",
        r.send_window_s, r.sent, r.offered_pps, r.skipped_behind, r.send_dropped
    );
    let _ = writeln!(
        t,
        "forwarded            {:.0} pps in the window; {} received in all, delivery {:.4}",
        r.forwarded_pps, r.received, r.delivery
    );
    let s = &r.spread;
    let _ = writeln!(
        t,
        "per-flow delivery    min {:.4}  median {:.4}  max {:.4}  silent flows {}",
        s.min, s.median, s.max, s.silent
    );
    let _ = writeln!(
        t,
        "corrupted payloads   {} (foreign packets {})",
        r.corrupted, r.foreign
    );
    let l = &r.latency_ns;
    let _ = writeln!(
        t,
        "one-way latency (us) p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        us(l.p50),
        us(l.p90),
        us(l.p99),
        us(l.p999),
        us(l.max)
    );
    if let Some(c) = r.server_cpu_us_per_packet {
        let _ = writeln!(
            t,
            "server CPU/packet    {c:.3} us ({:.2} s over the window)",
            r.server_cpu_s.unwrap_or(0.0)
        );
    }
    if let Some(c) = r.generator_cpu_us_per_packet {
        let _ = writeln!(t, "own CPU/packet       {c:.3} us (sent or received)");
    }
    if let Some(b) = r.generator_busy {
        let _ = writeln!(
            t,
            "own CPU              {b:.2} cores{}",
            if b > 0.9 || r.skipped_behind > 0 {
                " — the generator was saturated: latency and loss are partly its own"
            } else {
                ""
            }
        );
    }
    t
}

/// The report as JSON.
pub fn json(r: &RtpReport) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Packets per second and latency over the send window.
pub fn svg(r: &RtpReport) -> String {
    render(|out| draw(r, out))
}

fn draw(r: &RtpReport, out: &mut String) -> Result<(), Failure> {
    let title = format!(
        "tether bench rtp: {} calls, {} flows at {} pps via {}, forwarded {:.0} pps",
        r.calls_set_up, r.flows, r.pps_per_flow, r.relay, r.forwarded_pps
    );
    let t_end = t_end(&r.timeline);
    stacked(out, &title, 2, |i, plot| match i {
        0 => throughput(plot, r, t_end),
        _ => latency(plot, r, t_end),
    })
}

fn throughput(area: &Area<'_>, r: &RtpReport, t_end: f64) -> Result<Vec<Entry>, Failure> {
    let asked = r.flows * u64::from(r.pps_per_flow);
    let top = r
        .timeline
        .iter()
        .map(|p| p.sent.max(p.received))
        .max()
        .unwrap_or(0)
        .max(asked)
        .max(1) as f64
        * 1.15;
    let mut c = chart(
        area,
        "Packets per second, all flows",
        t_end,
        RangedCoordf64::from(0f64..top),
        "packets per second (1/s)",
        &count,
    )?;
    let series: [Series<RtpSecond>; 2] = [
        ("sent", BLUE, |p| p.sent),
        ("forwarded (received)", GREEN, |p| p.received),
    ];
    let mut entries = Vec::new();
    for (name, color, f) in series {
        let line = points(&r.timeline, r.send_window_s, f);
        c.draw_series(LineSeries::new(line, color.stroke_width(2)))?;
        entries.push((format!("{name} /s"), color));
    }
    if asked > 0 {
        asked_line(&mut c, t_end, asked as f64)?;
        entries.push((format!("asked ({asked}/s)"), ASKED));
    }
    Ok(entries)
}

fn latency(area: &Area<'_>, r: &RtpReport, t_end: f64) -> Result<Vec<Entry>, Failure> {
    let series: [Series<RtpSecond>; 2] = [
        ("p50 (median)", PURPLE, |p| p.p50_ns),
        ("p99", ORANGE, |p| p.p99_ns),
    ];
    latency_panel(
        area,
        "One-way latency through the relay, of the packets received in each second",
        t_end,
        &r.timeline,
        &series,
        1_000,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> RtpReport {
        RtpReport {
            relay: "ng 127.0.0.1:2223".into(),
            calls_asked: 10,
            calls_set_up: 10,
            flows: 40,
            streams: 20,
            pps_per_flow: 50,
            send_window_s: 3.0,
            sent: 6_000,
            received: 5_990,
            forwarded_pps: 1_996.0,
            server_cpu_us_per_packet: Some(3.25),
            timeline: (0..3)
                .map(|t| RtpSecond {
                    t,
                    sent: 2_000,
                    received: 1_996,
                    p50_ns: 40_000,
                    p99_ns: 250_000,
                })
                .collect(),
            ..RtpReport::default()
        }
    }

    #[test]
    fn table_and_plot_say_what_was_measured() {
        let r = report();
        let t = table(&r);
        for text in [
            "10 asked, 10 set up",
            "40 (20 streams × 2 directions) at 50 pps",
            "corrupted payloads   0",
            "server CPU/packet    3.250 us",
        ] {
            assert!(t.contains(text), "{text} missing in\n{t}");
        }
        let svg = svg(&r);
        for text in [
            "packets per second (1/s)",
            "forwarded (received) /s",
            "asked (2000/s)",
            "latency (log scale)",
            "p99",
            "tether bench rtp: 10 calls",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(json(&r).contains("\"forwarded_pps\": 1996.0"));
    }

    #[test]
    fn an_empty_run_still_plots() {
        let r = RtpReport::default();
        assert!(svg(&r).contains("time since start (s)"));
    }
}
