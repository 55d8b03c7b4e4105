#!/usr/bin/env python3
"""Prints the medians of the last `cargo bench --bench sip_codec` run as a
Markdown table, tether beside rsip, with ratios. Reads target/criterion."""
import json
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"


def median_ns(group, bench):
    p = root / group / bench / "new" / "estimates.json"
    if not p.exists():
        return None
    return json.loads(p.read_text())["median"]["point_estimate"]


def fmt(ns):
    return "-" if ns is None else (f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns")


print("| message | tether split | tether typed | tether full | rsip untyped | rsip typed | rsip typed / tether typed |")
print("|---|---|---|---|---|---|---|")
for msg in ["register", "options", "invite", "register_200"]:
    g = f"parse_{msg}"
    v = {b: median_ns(g, b) for b in ["tether_split", "tether_typed", "tether_full", "rsip_untyped", "rsip"]}
    ratio = "-" if not (v["rsip"] and v["tether_typed"]) else f"{v['rsip'] / v['tether_typed']:.1f}×"
    print(f"| {msg} | " + " | ".join(fmt(v[b]) for b in v) + f" | {ratio} |")
print()
print("| writer | median |")
print("|---|---|")
for b in ["register_200", "rsip_register_200", "options_request", "notify_request"]:
    print(f"| {b} | {fmt(median_ns('write', b))} |")
