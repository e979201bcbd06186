"""Validates AG-UI events with the official Python models (ag-ui-protocol).

Usage: agui_validate.py [--some-types] EVENTS.jsonl

Each line of the file is one event as membound encodes it. Every line must
validate as `ag_ui.core.Event`, keep its `type`, use only fields the models know
(no key kept as an unknown extra, at any depth), and dump back (by alias, in JSON
mode) to the same value for every key it sent. All 31 event types must be seen,
unless `--some-types` (a program's own output, which uses only some of them).
Exits non-zero, printing the failing line, on the first error.
"""

import json
import sys

import pydantic
from ag_ui.core import Event, EventType


def extras(model, path):
    """Paths of the unknown fields kept anywhere inside `model`."""
    found = []
    if isinstance(model, pydantic.BaseModel):
        for key in model.model_extra or {}:
            found.append(f"{path}.{key}")
        for name in type(model).model_fields:
            found.extend(extras(getattr(model, name), f"{path}.{name}"))
    elif isinstance(model, (list, tuple)):
        for i, item in enumerate(model):
            found.extend(extras(item, f"{path}[{i}]"))
    return found


def fail(number, line, why):
    print(f"line {number}: {why}\n  {line}", file=sys.stderr)
    sys.exit(1)


def main():
    adapter = pydantic.TypeAdapter(Event)
    seen = set()
    count = 0
    args = sys.argv[1:]
    every_type = "--some-types" not in args
    args = [a for a in args if a != "--some-types"]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    with open(args[0], encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            try:
                sent = json.loads(line)
                event = adapter.validate_python(sent)
            except Exception as e:  # noqa: BLE001 - any failure is the answer
                fail(number, line, f"does not validate: {e}")
            if event.type.value != sent["type"]:
                fail(number, line, f"type became {event.type.value}")
            unknown = extras(event, "event")
            if unknown:
                fail(number, line, f"unknown fields: {unknown}")
            dumped = adapter.dump_python(event, mode="json", by_alias=True)
            for key, value in sent.items():
                if dumped.get(key) != value:
                    fail(number, line, f"{key} dumps back as {dumped.get(key)!r}")
            seen.add(sent["type"])
            count += 1
    if count == 0:
        print("no events", file=sys.stderr)
        sys.exit(1)
    missing = {t.value for t in EventType} - seen
    if every_type and missing:
        print(f"event types never seen: {sorted(missing)}", file=sys.stderr)
        sys.exit(1)
    print(f"{count} events of {len(seen)} types validate")


if __name__ == "__main__":
    main()
