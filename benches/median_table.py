#!/usr/bin/env python3
"""Prints a Markdown table of criterion medians for `cargo bench --bench ring`, with
each scenario's ratio of crossbeam's median to membound's (above 1.0: membound is
faster). Reads target/criterion/*/*/new/estimates.json from the last run."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
groups = ["single_thread", "spsc_1p1c", "mpmc_2p2c", "full_drop_oldest"]
reference = {
    "single_thread": ("membound_Ring", "crossbeam_ArrayQueue"),
    "spsc_1p1c": ("membound_Ring", "crossbeam_ArrayQueue"),
    "mpmc_2p2c": ("membound_Ring", "crossbeam_ArrayQueue"),
    "full_drop_oldest": ("membound_force_push", "crossbeam_force_push"),
}


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.2f} ns"


print("| scenario | implementation | median | crossbeam / this |")
print("|---|---|---:|---:|")
for group in groups:
    medians = {}
    for est in sorted((root / group).glob("*/**/new/estimates.json")):
        name = est.relative_to(root / group).parts[0]
        medians[name] = json.loads(est.read_text())["median"]["point_estimate"]
    ours, peer = reference[group]
    for name, ns in medians.items():
        ratio = medians[peer] / ns if peer in medians else float("nan")
        print(f"| {group} | {name} | {fmt(ns)} | {ratio:.2f}x |")
