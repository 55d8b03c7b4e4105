//! The Grafana dashboard (contrib/grafana/tether.json) references only
//! metrics that `/metrics` exposes: every PromQL expression in it is
//! scanned for metric names, and each must appear in what a running
//! tether's API serves. A metric renamed in src/metrics.rs without the
//! dashboard fails here.

mod common;

use std::collections::BTreeSet;

const DASHBOARD: &str = include_str!("../contrib/grafana/tether.json");

/// PromQL words that are not metric names when not followed by `(`
/// (aggregations may be: `sum by (x) (…)`).
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
];

/// Keywords whose `( … )` holds label names, not expressions.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Metric names in one PromQL expression: identifiers outside label
/// matchers `{…}`, ranges `[…]`, strings and label lists, that are not
/// functions (followed by `(`) or keywords.
fn metric_names(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut skip_label_list = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b'{' | b'[' => {
                let close = if c == b'{' { b'}' } else { b']' };
                while i < b.len() && b[i] != close {
                    if b[i] == b'"' {
                        i += 1;
                        while i < b.len() && b[i] != b'"' {
                            i += usize::from(b[i] == b'\\') + 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            b'"' | b'\'' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += usize::from(b[i] == b'\\') + 1;
                }
                i += 1;
            }
            b'(' if skip_label_list => {
                while i < b.len() && b[i] != b')' {
                    i += 1;
                }
                skip_label_list = false;
                i += 1;
            }
            // A number (0.9, 1e3, 0x1f) is not an identifier.
            _ if c.is_ascii_digit() || c == b'.' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let next = expr[i..].trim_start().bytes().next();
                if LABEL_LISTS.contains(&word) {
                    skip_label_list = true;
                } else if next != Some(b'(')
                    && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str())
                {
                    out.push(word.to_owned());
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Every `expr` of every panel (rows nest panels), and the metric of each
/// `label_values(metric, label)` template variable.
fn dashboard_metrics() -> BTreeSet<String> {
    let dash: serde_json::Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut names = BTreeSet::new();
    let mut exprs = 0;
    fn walk(v: &serde_json::Value, names: &mut BTreeSet<String>, exprs: &mut usize) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x.as_str()) {
                        ("expr", Some(e)) => {
                            *exprs += 1;
                            let found = metric_names(e);
                            assert!(!found.is_empty(), "no metric in {e:?}");
                            names.extend(found);
                        }
                        ("definition" | "query", Some(q)) if q.starts_with("label_values(") => {
                            let inner = &q["label_values(".len()..];
                            let metric = inner.split([',', ')', '{']).next().unwrap_or("");
                            names.insert(metric.trim().to_owned());
                        }
                        _ => walk(x, names, exprs),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, names, exprs)),
            _ => {}
        }
    }
    walk(&dash, &mut names, &mut exprs);
    assert!(
        exprs > 20,
        "only {exprs} expressions found: is the walk right?"
    );
    names
}

#[test]
fn the_scanner_finds_metric_names_only() {
    assert_eq!(
        metric_names(
            r#"sum by (instance) (rate(tether_a_total{instance=~"$instance", x="}"}[$__rate_interval])) / on (job) tether_b"#
        ),
        ["tether_a_total", "tether_b"]
    );
    assert_eq!(
        metric_names("histogram_quantile(0.9, x_bucket) > bool 1e3"),
        ["x_bucket"]
    );
}

#[test]
fn every_dashboard_metric_is_exposed_by_metrics() {
    let wanted = dashboard_metrics();
    // Persistence renders its rows only when it is on: on, in a scratch dir.
    let dir = common::TempDir::new("dashboard-persist");
    let (_rt, _addr, _api, base) = common::start_with_api(&format!(
        "[persist]\nenabled = true\ndir = \"{}\"\n",
        dir.0.display()
    ));
    let (status, mut body) = common::http("GET", &format!("{base}/metrics"), None, None);
    assert_eq!(status, 200, "{body}");
    // The cluster's rows need Redis to be live (tests/cluster.rs); here they
    // come from the same renderer `/metrics` calls when `[cluster]` is on.
    tether::cluster::Stats::default().render(&mut body);
    let exposed: BTreeSet<&str> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|m| !exposed.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "contrib/grafana/tether.json uses metrics /metrics does not expose: {missing:?}"
    );
    // The issue's list: each area has at least one panel.
    for m in [
        "tether_bindings",
        "tether_registrations_total",
        "tether_keepalive_answered_total",
        "tether_keepalive_missed_total",
        "tether_nat_paths_dead",
        "tether_notify_delivered_total",
        "tether_calls_attempted_total",
        "tether_malformed_dropped_total",
        "tether_persist_records_total",
        "tether_cluster_redis_up",
    ] {
        assert!(wanted.contains(m), "the dashboard has no panel on {m}");
    }
}
