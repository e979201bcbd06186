#!/usr/bin/env python3
"""Prints BENCHMARKS.md's Markdown tables from criterion results of the ring, SPSC,
waiting, snapshot-vector, pool and state-store benchmarks (`cargo bench --bench
ring|spsc|wait|slice|pool`, `cargo bench --bench state --features state`).

Usage: benches/median_table.py [CRITERION_DIR ...]   (default: target/criterion)

For each benchmark it takes criterion's median from every directory given (one per
run, e.g. copies of target/criterion after each run) and prints the median of those
medians, and the ratio of the group's reference peer's median to this one taken
within each run (above 1.0: faster than the reference): its median and range.
Groups missing from the directories are skipped."""
import json
import pathlib
import statistics
import sys

dirs = [pathlib.Path(d) for d in (sys.argv[1:] or ["target/criterion"])]
# Each group and the peer its ratios are taken against.
reference = {
    "single_thread": "crossbeam_ArrayQueue",
    "spsc_1p1c": "crossbeam_ArrayQueue",
    "mpmc_2p2c": "crossbeam_ArrayQueue",
    "full_drop_oldest": "crossbeam_force_push",
    "spsc_single": "rtrb",
    "spsc_batch": "rtrb",
    "blocking_2p1c": "std_sync_channel",
    "async_1p1c": "tokio_mpsc",
    "read_1_thread": "std_RwLock_Vec",
    "read_2_threads_writer": "std_RwLock_Vec",
    "pool_single_thread": "fresh_vec_zeroed",
    "pool_two_threads": "fresh_vec_zeroed",
    "state_single_op_10k_keys": "mutex_value",
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
            # A parameterised benchmark (`name/param/new`) keeps its parameter.
            name = "/".join(est.relative_to(d / group).parts[:-2])
            value = json.loads(est.read_text())["median"]["point_estimate"]
            runs.setdefault(name, []).append(value)
    return runs


many = len(dirs) > 1
spread_note = ": median (min – max)" if many else ""
print(f"| scenario | implementation | median | reference / this{spread_note} |")
print("|---|---|---:|---:|")
for group, peer in reference.items():
    runs = medians(group)
    if not runs:
        continue
    for name, values in runs.items():
        # A parameterised benchmark is compared with the peer at the same parameter.
        param = name.partition("/")[2]
        ref = runs.get(f"{peer}/{param}" if param else peer)
        # Ratios are taken within each run, so both sides met the same conditions.
        ratios = [r / v for r, v in zip(ref, values)] if ref else []
        ratio = statistics.median(ratios) if ratios else float("nan")
        spread = f" ({min(ratios):.2f} – {max(ratios):.2f})" if many and ratios else ""
        label = f"{group} (vs {peer})" if name == next(iter(runs)) else group
        print(f"| {label} | {name} | {fmt(statistics.median(values))} | {ratio:.2f}x{spread} |")
