#!/usr/bin/env python3
"""Reads ThreadSanitizer reports and fails on any that involves membound's code.

Usage: tsan_filter.py [--root REPO] PATH...

Each PATH is a report file (TSAN_OPTIONS=log_path=... writes one per process) or a
folder of them. A report is *ours*, and fails the gate, when a frame of one of its
stacks (other than "Thread ... created by" and "allocated by") is membound's: a
symbol in membound (`membound::...` or an impl on a membound type, `<membound::...`)
or a source file under REPO/src/.

The gate runs on a nightly without rust-src, so std is not instrumented. What std
synchronises internally is invisible to TSan, which makes two kinds of noise:

- reports wholly outside membound: libtest's result channel, the tests' own use of
  std (threads, channels, barriers). No membound frame: ignored, and listed.
- the last drop of an `Arc`/`Weak` freeing its allocation: std orders it after every
  other use with an Acquire *fence*, which TSan does not model (std built with TSan
  uses an Acquire load there instead, but this std is not). A report whose racing
  access is that free is ignored even if the other stack shows membound frames.

Prints a summary and exits 1 if any report is ours, 0 otherwise.
"""

import os
import re
import sys

FRAME = re.compile(r"^\s+#\d+ (.*)$")
INTERCEPTORS = re.compile(
    r"^(__tsan_\w+|__interceptor_\w+|mem(cpy|move|set|cmp)|free|malloc|calloc|realloc|"
    r"posix_memalign|aligned_alloc|operator (new|delete)|pthread_\w+)\b"
)
ARC_DROP = re.compile(r"^<alloc::sync::(Arc<.*>>::drop_slow|Weak<.*> as core::ops::drop::Drop>::drop)")
# Stacks that say where something came from, not who raced.
CONTEXT = re.compile(r"(created by|allocated by)")


def reports_in(path):
    """Yields (file, text) for each report in the file at `path`."""
    with open(path, errors="replace") as f:
        text = f.read()
    for chunk in re.split(r"^=+\s*$", text, flags=re.M):
        if "WARNING: ThreadSanitizer:" in chunk:
            yield path, chunk.strip("\n")


def stacks(report):
    """The report's stacks as (header, [frame text]) in order."""
    out = []
    for line in report.splitlines():
        m = FRAME.match(line)
        if m:
            if out:
                out[-1][1].append(m.group(1))
        elif line.startswith("  ") and line.strip():
            out.append((line.strip(), []))
    return out


def is_ours(frame, root):
    return (
        frame.startswith("membound::")
        or frame.startswith("<membound::")
        or (root is not None and (root + "/src/") in frame)
    )


def symbol(frame):
    """The function of a frame, without module, binary and build id."""
    frame = re.sub(r"\s+\(\S+\+0x[0-9a-f]+\).*$", "", frame)
    return re.sub(r"\s+(\S+-cgu\.\d+|<null>|\S+:\d+(:\d+)?)$", "", frame)


def first_real_frame(frames):
    for f in frames:
        if not INTERCEPTORS.match(f):
            return f
    return ""


def classify(report, root):
    racing = [(h, fs) for h, fs in stacks(report) if fs and not CONTEXT.search(h)]
    if any(ARC_DROP.match(first_real_frame(fs)) for _, fs in racing):
        return "arc"
    if any(is_ours(f, root) for _, fs in racing for f in fs):
        return "ours"
    return "outside"


def brief(report, frames_per_stack=6):
    lines = []
    for line in report.splitlines():
        if line.startswith("WARNING"):
            lines.append(line)
    for header, frames in stacks(report):
        if CONTEXT.search(header):
            continue
        lines.append("  " + header)
        lines.extend("      " + f[:200] for f in frames[:frames_per_stack])
    return "\n".join(lines)


def main(argv):
    root = None
    paths = []
    it = iter(argv)
    for arg in it:
        if arg == "--root":
            root = os.path.realpath(next(it))
        else:
            paths.append(arg)
    files = []
    for p in paths:
        if os.path.isdir(p):
            files.extend(
                os.path.join(p, name) for name in sorted(os.listdir(p)) if os.path.isfile(os.path.join(p, name))
            )
        elif os.path.isfile(p):
            files.append(p)
        else:
            print(f"tsan_filter: no such file or folder: {p}")
            return 2
    counts = {"ours": 0, "arc": 0, "outside": 0}
    ours = []
    outside_tops = {}
    for path in files:
        for _, report in reports_in(path):
            kind = classify(report, root)
            counts[kind] += 1
            if kind == "ours":
                ours.append((path, report))
            elif kind == "outside":
                racing = [fs for h, fs in stacks(report) if fs and not CONTEXT.search(h)]
                top = " | ".join(symbol(first_real_frame(fs))[:100] for fs in racing[:2])
                outside_tops[top] = outside_tops.get(top, 0) + 1
    for path, report in ours:
        print(f"--- membound report ({path}):")
        print(brief(report))
    print(
        f"tsan_filter: {len(files)} log file(s); {counts['ours']} report(s) with a membound frame, "
        f"{counts['arc']} Arc/Weak last-drop (fence, ignored), "
        f"{counts['outside']} outside membound (ignored)"
    )
    for top, n in sorted(outside_tops.items(), key=lambda kv: -kv[1]):
        print(f"  ignored x{n}: {top}")
    return 1 if counts["ours"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
