#!/usr/bin/env python3
"""The README table of benches/peer/run.sh: one row per rate, each side's
p99 (nchan: publish -> event; collabd: invite -> alert), CPU per delivered
event and errors, from the JSON reports in the directory given."""
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def nchan_row(r):
    if r is None:
        return ["–"] * 4
    errors = r["refused"] + r["unanswered"] + r["missing"] + r["stream_drops"]
    return [
        f"{r['latency']['p99']:.1f} ms",
        f"{r['node_us_per_event']:.1f}" if r.get("node_us_per_event") else "–",
        f"{r['generator_us_per_event']:.1f}" if r.get("generator_us_per_event") else "–",
        f"{errors:,}" + (f" ({r['missing']:,} missing)" if r["missing"] else ""),
    ]


def collabd_row(r):
    if r is None:
        return ["–"] * 5
    breaks = sum(
        r.get(k, 0)
        for k in (
            "double_winners",
            "no_winners",
            "missing_alerts",
            "missing_withdrawals",
            "customer_leaks",
            "acknowledged_lost",
            "lead_breaks",
        )
    )
    cpu = r.get("node_cpu") or {}
    gen = r.get("generator_cpu") or {}
    return [
        f"{r['latency_ms']['invite_to_alert']['p99']:.1f} ms",
        f"{cpu['us_per_delivered_event']:.1f}" if cpu.get("us_per_delivered_event") else "–",
        f"{gen['us_per_delivered_event']:.1f}" if gen.get("us_per_delivered_event") else "–",
        f"{r['errors']:,}",
        f"{breaks}",
    ]


def main():
    out = sys.argv[1]
    rates = os.environ.get("RATES", "100 200 300 500 800 1000").split()
    print(
        "| msg/s | nchan p99 | nchan µs/event | nchan generator µs/event | nchan errors "
        "| collabd p99 | collabd µs/event | collabd generator µs/event | collabd errors "
        "| collabd breaks | ratio µs/event |"
    )
    print("|" + " --- |" * 11)
    for rate in rates:
        n = load(os.path.join(out, f"nchan-{rate}.json"))
        c = load(os.path.join(out, f"collabd-{rate}.json"))
        ratio = "–"
        try:
            ratio = (
                f"{c['node_cpu']['us_per_delivered_event'] / n['node_us_per_event']:.2f}×"
            )
        except (TypeError, KeyError, ZeroDivisionError):
            pass
        print("| " + " | ".join([rate] + nchan_row(n) + collabd_row(c) + [ratio]) + " |")


if __name__ == "__main__":
    main()
