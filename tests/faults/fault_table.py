"""The fault suite's table, generated from a run.

Each fault test records its outcome (:func:`record`): the fault, how long the
plan took to end after it, the error's text, the rows in the HDF5 file and in
Tiled, and whether the next scan worked. With ``PANDA_FAULT_TABLE=FILE`` set
the outcomes are appended to FILE (JSON lines); otherwise nothing is written.
Rendered into the table docs/faults.md includes::

    PANDA_FAULT_TABLE=/tmp/faults.jsonl .venv/bin/python -m pytest tests/faults
    .venv/bin/python tests/faults/fault_table.py /tmp/faults.jsonl \\
        > docs/_generated/fault-table.md
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

#: Where outcomes go (unset: nowhere).
TABLE_ENV = "PANDA_FAULT_TABLE"


@dataclass(frozen=True)
class Outcome:
    """What one fault did."""

    fault: str
    #: Seconds from the fault to the plan's end (None: the scan completed, or
    #: was refused before arming when there is an error).
    ended_after: float | None
    #: The error's class and first line ("" when the scan completed).
    error: str
    rows_in_file: int | None
    rows_in_tiled: int | None
    #: Whether the next scan worked (None: the test runs none).
    next_scan_ok: bool | None
    test: str


def describe(error: BaseException) -> str:
    """The error's class and its first sentence, for the table."""
    text = str(error).splitlines()[0] if str(error) else ""
    if len(text) > 140:
        text = text[:137] + "..."
    return f"{type(error).__name__}: {text}"


def record(outcome: Outcome) -> None:
    """Append ``outcome`` to ``$PANDA_FAULT_TABLE`` if set."""
    path = os.environ.get(TABLE_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(outcome)) + "\n")


def render(outcomes: list[Outcome]) -> str:
    """A Markdown table of ``outcomes``."""

    def cell(text: str) -> str:
        # The tests' temporary data directory, as the table names it.
        text = re.sub(r"/\S*?/panda-data", "DATA", text)
        return text.replace("|", "\\|")

    lines = [
        "| fault | ended after | error | rows in file | rows in Tiled "
        "| next scan | test |",
        "|---|---:|---|---:|---:|---|---|",
    ]
    for o in outcomes:
        if o.ended_after is not None:
            took = f"{o.ended_after:.1f} s"
        else:
            took = "before arming" if o.error else "completed"
        after = {None: "n/a", True: "ok", False: "FAILED"}[o.next_scan_ok]
        rows = [
            "" if n is None else f"{n:,}" for n in (o.rows_in_file, o.rows_in_tiled)
        ]
        lines.append(
            f"| {cell(o.fault)} | {took} | {cell(o.error) or 'none'} | "
            f"{rows[0]} | {rows[1]} | {after} "
            f"| `{o.test}` |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: {Path(__file__).name} OUTCOMES.jsonl", file=sys.stderr)
        return 2
    text = Path(argv[0]).read_text(encoding="utf-8")
    outcomes = [Outcome(**json.loads(line)) for line in text.splitlines() if line]
    sys.stdout.write(render(outcomes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
