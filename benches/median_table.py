#!/usr/bin/env python3
"""Prints the README's Markdown table from criterion results of
`cargo bench --bench ring`.

Usage: benches/median_table.py [CRITERION_DIR ...]   (default: target/criterion)

For each benchmark it takes criterion's median from every directory given (one per
run, e.g. copies of target/criterion after each of three runs) and prints the
median of those medians, and the ratio of crossbeam's median to this one taken
within each run (above 1.0: faster than crossbeam): its median and range."""
import json
import pathlib
import statistics
import sys

dirs = [pathlib.Path(d) for d in (sys.argv[1:] or ["target/criterion"])]
groups = ["single_thread", "spsc_1p1c", "mpmc_2p2c", "full_drop_oldest"]
peer = {
    "single_thread": "crossbeam_ArrayQueue",
    "spsc_1p1c": "crossbeam_ArrayQueue",
    "mpmc_2p2c": "crossbeam_ArrayQueue",
    "full_drop_oldest": "crossbeam_force_push",
}


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.0f} µs"
    return f"{ns:.2f} ns"


def medians(group):
    runs = {}
    for d in dirs:
        for est in sorted((d / group).glob("*/**/new/estimates.json")):
            name = est.relative_to(d / group).parts[0]
            value = json.loads(est.read_text())["median"]["point_estimate"]
            runs.setdefault(name, []).append(value)
    return runs


many = len(dirs) > 1
if many:
    print("| scenario | implementation | median | crossbeam / this: median (min – max) |")
    print("|---|---|---:|---:|")
else:
    print("| scenario | implementation | median | crossbeam / this |")
    print("|---|---|---:|---:|")
for group in groups:
    runs = medians(group)
    reference = runs.get(peer[group])
    for name, values in runs.items():
        # Ratios are taken within each run, so both sides met the same conditions.
        ratios = [r / v for r, v in zip(reference, values)] if reference else []
        ratio = statistics.median(ratios) if ratios else float("nan")
        spread = f" ({min(ratios):.2f} – {max(ratios):.2f})" if many and ratios else ""
        print(f"| {group} | {name} | {fmt(statistics.median(values))} | {ratio:.2f}x{spread} |")
