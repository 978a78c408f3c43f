"""Run upstream tick-level timing vectors (``*.timing.ini``) against our models.

A vector file has a ``[.]`` section naming its block (``scope: pulse.block.ini``)
and one section per scenario whose lines read::

    tick : FIELD=value, ... -> OUTPUT=value, ...

Inputs are applied on that tick; the listed outputs must hold those values
after it, and no output may change on a tick where no change is listed.

SEQ scenarios program the block through DMA (``TABLE_ADDRESS``); upstream keeps
that memory beside the vectors as ``<address>.txt`` files (a title line, then
one 32-bit word per line). Pass their folder with ``--tables``; scenarios whose
memory is not available are skipped, saying so.

This module is pure: it reads files and drives models, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from .models import MODELS, Block, Bus
from .models.base import to_int32

_BUS_ENTRY = re.compile(r"^(POS|BIT)\[(\d+)\]$")


@dataclass(frozen=True)
class Step:
    """One line of a scenario."""

    tick: int
    inputs: dict[str, str]
    outputs: dict[str, str]
    line: int


@dataclass
class Scenario:
    """One ``[section]`` of a vector file."""

    name: str
    steps: list[Step] = field(default_factory=list)


@dataclass
class VectorFile:
    """A parsed ``*.timing.ini`` file."""

    path: Path
    block: str
    description: str
    scenarios: list[Scenario]


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Result:
    """What happened to one scenario."""

    block: str
    scenario: str
    outcome: Outcome
    detail: str = ""


class VectorError(Exception):
    """A vector file that cannot be parsed."""


def _assignments(text: str, path: Path, lineno: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise VectorError(f"{path}:{lineno}: expected NAME=value, got {part!r}")
        name, value = part.split("=", 1)
        out[name.strip()] = value.strip()
    return out


def parse_vector_file(path: Path | str) -> VectorFile:
    """Parse a timing vector file."""
    path = Path(path)
    header: dict[str, str] = {}
    scenarios: list[Scenario] = []
    current: Scenario | None = None
    in_header = False
    last_key = ""
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        # A section name may contain '#' ("[Test case for issue #38]"): only
        # strip comments from other lines.
        stripped = raw.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            line = stripped
        else:
            line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if line.startswith("["):
            name = line.strip()[1:-1]
            in_header = name == "."
            current = None if in_header else Scenario(name)
            if current is not None:
                scenarios.append(current)
            continue
        if in_header:
            if line[0].isspace() and last_key:
                header[last_key] += " " + line.strip()
            elif ":" in line:
                last_key, value = (s.strip() for s in line.split(":", 1))
                header[last_key] = value
            continue
        if current is None:
            raise VectorError(f"{path}:{lineno}: line outside any scenario")
        tick_text, _, rest = line.partition(":")
        try:
            tick = int(tick_text)
        except ValueError:
            raise VectorError(f"{path}:{lineno}: bad tick {tick_text!r}") from None
        ins, _, outs = rest.partition("->")
        current.steps.append(
            Step(
                tick,
                _assignments(ins, path, lineno),
                _assignments(outs, path, lineno),
                lineno,
            )
        )
    scope = header.get("scope", "")
    if not scope.endswith(".block.ini"):
        raise VectorError(f"{path}: [.] section has no 'scope: <block>.block.ini'")
    return VectorFile(
        path,
        scope.removesuffix(".block.ini").upper(),
        header.get("description", ""),
        scenarios,
    )


class DirectoryTableMemory:
    """DMA memory backed by upstream ``<address>.txt`` files."""

    def __init__(self, directory: Path | None):
        self.directory = directory

    def available(self, address: int) -> bool:
        return (
            self.directory is not None and (self.directory / f"{address}.txt").is_file()
        )

    def __call__(self, address: int, length: int) -> Sequence[int]:
        assert self.directory is not None
        lines = (self.directory / f"{address}.txt").read_text().split("\n")
        # First line is a title; the rest are words.
        words = [int(w, 0) for w in lines[1:] if w.strip()]
        return words[:length]


class _Mismatch(Exception):
    pass


def _run(block: Block, scenario: Scenario) -> None:
    next_ts: int | None = None
    for step in scenario.steps:
        # Wake the block wherever it asked to be woken before this line:
        # nothing may change there, since the vector lists no change.
        while next_ts is not None and next_ts < step.tick:
            woken = next_ts
            next_ts = block.on_changes(woken, {})
            if block.changes:
                raise _Mismatch(
                    f"tick {woken}: unexpected change {block.changes} "
                    "(no change listed on this tick)"
                )
            if next_ts is not None and next_ts <= woken:
                raise _Mismatch(f"tick {woken}: asked to be woken at {next_ts}")
        changes: dict[str, int] = {}
        for name, text in step.inputs.items():
            value = int(text, 0)
            if m := _BUS_ENTRY.match(name):
                bus_name, idx = m.group(1), int(m.group(2))
                if bus_name == "POS":
                    block.bus.pos[idx] = to_int32(value)
                else:
                    block.bus.bits[idx] = value
            changes[name] = value
        next_ts = block.on_changes(step.tick, changes)
        if next_ts is not None and next_ts <= step.tick:
            raise _Mismatch(f"tick {step.tick}: asked to be woken at {next_ts}")
        for name, value in block.changes.items():
            if name not in step.outputs:
                raise _Mismatch(f"tick {step.tick}: unexpected change {name}={value}")
        for name, text in step.outputs.items():
            expected = to_int32(int(text, 0))
            actual = to_int32(block.values.get(name, 0))
            if actual != expected:
                raise _Mismatch(
                    f"tick {step.tick}: {name} = {actual}, expected {expected}"
                )


def run_scenario(
    vectors: VectorFile, scenario: Scenario, tables: Path | None = None
) -> Result:
    """Run one scenario against the model of its block."""
    model = MODELS.get(vectors.block)
    if model is None:
        return Result(
            vectors.block,
            scenario.name,
            Outcome.SKIPPED,
            f"no model of {vectors.block} yet",
        )
    reason = getattr(model, "UNMODELLED", {}).get(scenario.name)
    if reason:
        return Result(vectors.block, scenario.name, Outcome.SKIPPED, reason)
    memory = DirectoryTableMemory(tables)
    for step in scenario.steps:
        if "TABLE_ADDRESS" in step.inputs:
            address = int(step.inputs["TABLE_ADDRESS"], 0)
            if not memory.available(address):
                return Result(
                    vectors.block,
                    scenario.name,
                    Outcome.SKIPPED,
                    f"DMA table memory at {address} not provided "
                    "(upstream keeps it beside the vectors as "
                    f"{address}.txt; pass its folder with --tables)",
                )
    block = model(Bus(), memory)
    try:
        _run(block, scenario)
    except _Mismatch as e:
        return Result(vectors.block, scenario.name, Outcome.FAILED, str(e))
    return Result(vectors.block, scenario.name, Outcome.PASSED)


def run_files(
    paths: Iterable[Path | str], tables: Path | None = None
) -> Iterator[Result]:
    """Run every scenario of every file."""
    for path in paths:
        vectors = parse_vector_file(path)
        for scenario in vectors.scenarios:
            yield run_scenario(vectors, scenario, tables)


def summarise(results: Iterable[Result]) -> Mapping[Outcome, int]:
    counts = dict.fromkeys(Outcome, 0)
    for r in results:
        counts[r.outcome] += 1
    return counts


def main(paths: Sequence[str], tables: str | None = None, quiet: bool = False) -> int:
    """Print one line per scenario and the ``N passed, M failed`` total."""
    results: list[Result] = []
    for r in run_files(paths, Path(tables) if tables else None):
        results.append(r)
        if not quiet or r.outcome is not Outcome.PASSED:
            detail = f": {r.detail}" if r.detail else ""
            print(f"{r.outcome.value.upper():7} {r.block}: {r.scenario}{detail}")
    counts = summarise(results)
    line = f"{counts[Outcome.PASSED]} passed, {counts[Outcome.FAILED]} failed"
    if counts[Outcome.SKIPPED]:
        line += f", {counts[Outcome.SKIPPED]} skipped"
    print(line)
    return 1 if counts[Outcome.FAILED] else 0
