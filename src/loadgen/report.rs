//! Output of a load run: a table for people, JSON for machines, and an SVG
//! plot of throughput and latency over time.

use std::fmt::Write as _;

use super::Summary;

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
    t
}

/// The summary as JSON.
pub fn json(s: &Summary) -> String {
    serde_json::to_string_pretty(s).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Two stacked charts over time: successful REGISTERs and server requests
/// per second (top), p50 and p99 latency per second on a log scale (bottom).
/// Saturation shows as throughput flattening below the asked rate while p99
/// climbs.
pub fn svg(s: &Summary) -> String {
    let (w, h, pad) = (900.0f64, 300.0f64, 50.0f64);
    let n = s.timeline.len().max(2) as f64;
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (n - 1.0);
    let max_rate = s
        .timeline
        .iter()
        .map(|p| (p.ok + p.failed).max(p.requests_received))
        .max()
        .unwrap_or(1)
        .max(u64::from(s.rate_asked))
        .max(1) as f64;
    let y_rate = |v: u64| h - pad - (h - 2.0 * pad) * v as f64 / max_rate;
    let max_lat = s
        .timeline
        .iter()
        .map(|p| p.p99_us)
        .max()
        .unwrap_or(1)
        .max(10) as f64;
    let y_lat = |v: u64| {
        let v = (v.max(1) as f64).log10();
        2.0 * h - pad - (h - 2.0 * pad) * v / max_lat.log10()
    };
    let line = |pts: Vec<(f64, f64)>, color: &str| {
        let p: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
            p.join(" ")
        )
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">",
        2.0 * h
    );
    let _ = writeln!(o, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(o, "<text x=\"{pad}\" y=\"20\" font-size=\"14\">REGISTER/s answered 200 (blue), failed (red), requests from the server/s (green); asked rate dashed</text>");
    if s.rate_asked > 0 {
        let ya = y_rate(u64::from(s.rate_asked));
        let _ = writeln!(
            o,
            "<line x1=\"{pad}\" x2=\"{}\" y1=\"{ya:.1}\" y2=\"{ya:.1}\" stroke=\"gray\" stroke-dasharray=\"6 4\"/>",
            w - pad
        );
    }
    o += &line(
        s.timeline
            .iter()
            .enumerate()
            .map(|(i, p)| (x(i), y_rate(p.ok)))
            .collect(),
        "#1f77b4",
    );
    o += &line(
        s.timeline
            .iter()
            .enumerate()
            .map(|(i, p)| (x(i), y_rate(p.failed)))
            .collect(),
        "#d62728",
    );
    o += &line(
        s.timeline
            .iter()
            .enumerate()
            .map(|(i, p)| (x(i), y_rate(p.requests_received)))
            .collect(),
        "#2ca02c",
    );
    let _ = writeln!(
        o,
        "<text x=\"5\" y=\"{}\">{max_rate:.0}</text><text x=\"5\" y=\"{}\">0</text>",
        pad + 4.0,
        h - pad
    );
    let _ = writeln!(o, "<text x=\"{pad}\" y=\"{}\" font-size=\"14\">latency per second, log scale: p50 (purple), p99 (orange), microseconds</text>", h + 20.0);
    o += &line(
        s.timeline
            .iter()
            .enumerate()
            .map(|(i, p)| (x(i), y_lat(p.p50_us)))
            .collect(),
        "#9467bd",
    );
    o += &line(
        s.timeline
            .iter()
            .enumerate()
            .map(|(i, p)| (x(i), y_lat(p.p99_us)))
            .collect(),
        "#ff7f0e",
    );
    let _ = writeln!(
        o,
        "<text x=\"5\" y=\"{}\">{max_lat:.0}</text><text x=\"5\" y=\"{}\">1</text>",
        h + pad + 4.0,
        2.0 * h - pad
    );
    for (i, p) in s
        .timeline
        .iter()
        .enumerate()
        .step_by((s.timeline.len() / 10).max(1))
    {
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{}\">{}s</text>",
            x(i) - 8.0,
            2.0 * h - pad + 18.0,
            p.t
        );
    }
    o += "</svg>\n";
    o
}
