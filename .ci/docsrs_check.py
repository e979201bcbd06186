#!/usr/bin/env python3
"""Checks the docs as docs.rs builds them (all features, --cfg docsrs): every
feature-gated module is documented, and its page says which feature it needs.

Usage: docsrs_check.py DOC_DIR (the `doc` folder cargo wrote)."""
import pathlib
import sys

# module page -> the feature its "Available on crate feature ..." note must name
GATED = {
    "membound/adapters/ws/index.html": "ws",
    "membound/adapters/ws/axum/index.html": "axum",
    "membound/adapters/ws/struct.RedisEngine.html": "redis",
    "membound/adapters/state/struct.RedisState.html": "redis",
    "membound/adapters/state/index.html": "state",
    "membound/export/prometheus/index.html": "prometheus",
    "membound/monitor/index.html": "std",
    "membound/os/index.html": "std",
    "membound/backpressure/index.html": "alloc",
    "membound/pool/index.html": "alloc",
}


def main() -> int:
    doc = pathlib.Path(sys.argv[1])
    failures = []
    for page, feature in GATED.items():
        path = doc / page
        if not path.is_file():
            failures.append(f"{page}: missing (is the feature documented?)")
            continue
        html = path.read_text(encoding="utf-8")
        note = f"<code>{feature}</code>"
        if 'class="stab portability"' not in html or note not in html:
            failures.append(f"{page}: no 'Available on crate feature {feature}' note")
    for failure in failures:
        print(f"docs.rs check: {failure}")
    print(f"docs.rs check: {len(GATED) - len(failures)} of {len(GATED)} gated modules say their feature")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
