"""Declare what the PandA captures, and under which HDF5 dataset name.

ophyd-async's ``HDFPanda`` writes whatever the PandA happens to be set to
capture, and when nothing has a dataset name it only logs a warning and writes
no data at all. Here a capture is declared as data::

    captures = [
        Capture("INENC1.VAL", "angle"),
        Capture("PCAP.TS_TRIG", "trigger_time"),
        Capture("COUNTER1.OUT", "counts", mode="Diff"),
    ]

and checked against the connected PandA before anything is written or armed
(:func:`capture_settings`): an unknown block or field, a capture mode the field
does not offer (or one that writes several datasets), a bad, missing or
duplicate dataset name, or no capture at all, is a :class:`CaptureError` that
says what to change. The result is an ophyd-async ``Settings`` that captures
exactly the declared fields (every other field is set to ``No``), applied with
``apply_panda_settings`` (:func:`apply_captures`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bluesky.utils import MsgGenerator, plan
from ophyd_async.core import (
    Device,
    DeviceVector,
    Settings,
    Signal,
    SignalRW,
    walk_rw_signals,
)
from ophyd_async.fastcs.panda import HDFPanda, apply_panda_settings

from ._aio import wait_for_awaitable

__all__ = [
    "SINGLE_DATASET_MODES",
    "Capture",
    "CaptureError",
    "FieldRef",
    "apply_captures",
    "capture_settings",
    "check_captures",
    "parse_field",
]

#: Capture modes that write exactly one dataset under the declared name. The
#: IOC writes "Min Max" and "Min Max Mean" as NAME-min/NAME-max (+ NAME) but
#: lists only NAME in its DATASETS table, so ophyd-async would describe a
#: dataset that is not in the file (Min Max) or miss two (Min Max Mean).
SINGLE_DATASET_MODES = ("Value", "Diff", "Sum", "Mean", "Min", "Max")

#: Names Tiled's bluesky client uses for itself.
RESERVED_NAMES = ("time", "seq_num")
_DATASET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BLOCK = re.compile(r"^(?P<block>[A-Z][A-Z0-9_]*?)(?P<number>[1-9][0-9]*)?$")


class CaptureError(ValueError):
    """A capture declaration that the PandA cannot honour (nothing was written)."""


@dataclass(frozen=True)
class FieldRef:
    """A PandA field such as ``INENC1.VAL``: block, instance number, field."""

    block: str
    number: int | None
    name: str

    def __str__(self) -> str:
        number = "" if self.number is None else str(self.number)
        return f"{self.block}{number}.{self.name}"


def parse_field(field: str) -> FieldRef:
    """Parse ``"INENC1.VAL"`` or ``"PCAP.TS_TRIG"`` (case-insensitive)."""
    block_part, dot, name = field.strip().upper().partition(".")
    match = _BLOCK.match(block_part)
    if not dot or match is None or not re.match(r"^[A-Z][A-Z0-9_]*$", name):
        raise CaptureError(
            f"{field!r} is not a PandA field: write BLOCK[N].FIELD, e.g. "
            "'INENC1.VAL', 'COUNTER1.OUT' or 'PCAP.TS_TRIG'"
        )
    number = match["number"]
    return FieldRef(match["block"], int(number) if number else None, name)


@dataclass(frozen=True)
class Capture:
    """Capture PandA ``field`` into the HDF5 dataset (and data key) ``dataset``.

    ``mode`` is the PandA capture mode: ``Value`` (at each trigger), or over
    each gate: ``Diff``, ``Sum``, ``Mean``, ``Min``, ``Max``.
    """

    field: str
    dataset: str
    mode: str = "Value"

    @property
    def ref(self) -> FieldRef:
        """The parsed field."""
        return parse_field(self.field)


def check_captures(captures: Iterable[Capture]) -> list[Capture]:
    """The device-independent checks: names, modes, duplicates, not empty."""
    captures = list(captures)
    if not captures:
        raise CaptureError(
            "nothing to capture: declare at least one Capture, e.g. "
            "Capture('PCAP.TS_TRIG', 'trigger_time'); without a dataset the PandA "
            "writes no data at all"
        )
    datasets: dict[str, str] = {}
    fields: dict[FieldRef, str] = {}
    for capture in captures:
        if not isinstance(capture, Capture):
            raise CaptureError(f"expected a Capture, got {capture!r}")
        ref = capture.ref
        if not capture.dataset or not _DATASET_NAME.match(capture.dataset):
            raise CaptureError(
                f"{ref}: dataset name {capture.dataset!r} is not valid: use letters, "
                "digits and underscores, not starting with a digit (it becomes the "
                "HDF5 dataset and the bluesky data key)"
            )
        if capture.dataset.startswith("ts_") or capture.dataset in RESERVED_NAMES:
            raise CaptureError(
                f"{ref}: dataset name {capture.dataset!r} would be hidden or clash in "
                "Tiled (it reads data keys starting with 'ts_' as timestamps, and "
                "'time' and 'seq_num' are its own): choose another, e.g. "
                "'trigger_time'"
            )
        if capture.mode not in SINGLE_DATASET_MODES:
            hint = (
                " (it writes several datasets under one name: declare one Capture "
                "per statistic instead)"
                if capture.mode.startswith("Min Max")
                else ""
            )
            raise CaptureError(
                f"{ref}: capture mode {capture.mode!r} is not supported{hint}; "
                f"use one of {', '.join(SINGLE_DATASET_MODES)}"
            )
        if capture.dataset in datasets:
            raise CaptureError(
                f"dataset name {capture.dataset!r} is used by both "
                f"{datasets[capture.dataset]} and {ref}: names must be unique"
            )
        if ref in fields:
            raise CaptureError(
                f"{ref} is declared twice (as {fields[ref]!r} and "
                f"{capture.dataset!r}): the PandA captures a field once"
            )
        datasets[capture.dataset] = str(ref)
        fields[ref] = capture.dataset
    return captures


def _block_device(panda: Device, ref: FieldRef) -> Device:
    attr = ref.block.lower()
    block = getattr(panda, attr, None)
    if not isinstance(block, Device):
        known = sorted(
            name.upper()
            for name, child in panda.children()
            if isinstance(child, Device) and not isinstance(child, Signal)
        )
        raise CaptureError(
            f"{ref}: the PandA has no block {ref.block}; its blocks are "
            f"{', '.join(known)}"
        )
    if isinstance(block, DeviceVector):
        numbers = sorted(block)
        if ref.number is None or ref.number not in block:
            which = (
                "needs an instance number"
                if ref.number is None
                else f"{ref.number} does not exist"
            )
            raise CaptureError(
                f"{ref}: {ref.block} {which}: this PandA has "
                f"{', '.join(f'{ref.block}{n}' for n in numbers)}"
            )
        return block[ref.number]
    if ref.number is not None:
        raise CaptureError(
            f"{ref}: there is one {ref.block} block: write {ref.block}.{ref.name}"
        )
    return block


def capture_signals(panda: Device, ref: FieldRef) -> tuple[SignalRW, SignalRW]:
    """The ``CAPTURE`` and ``DATASET`` signals of a field."""
    block = _block_device(panda, ref)
    capture = getattr(block, f"{ref.name.lower()}_capture", None)
    dataset = getattr(block, f"{ref.name.lower()}_dataset", None)
    if not isinstance(capture, SignalRW) or not isinstance(dataset, SignalRW):
        capturable = sorted(
            name.removesuffix("_capture").upper()
            for name, _ in block.children()
            if name.endswith("_capture")
        )
        name = f"{ref.block}{ref.number or ''}"
        raise CaptureError(
            f"{ref}: {name} has no capturable field {ref.name}; its capturable "
            f"fields are {', '.join(capturable) or 'none'}"
        )
    return capture, dataset


async def capture_settings(
    panda: HDFPanda, captures: Sequence[Capture]
) -> Settings[HDFPanda]:
    """Check ``captures`` against the connected ``panda``; the Settings to apply.

    Only reads from the PandA. The Settings set every capturable field of the
    PandA to ``No`` except the declared ones, which get their mode and dataset
    name. Raises :class:`CaptureError` on any problem.
    """
    captures = check_captures(captures)
    resolved = [(c, *capture_signals(panda, c.ref)) for c in captures]
    descriptions = await asyncio.gather(*(sig.describe() for _, sig, _ in resolved))
    signals = walk_rw_signals(panda)
    # A field's CAPTURE has a DATASET beside it (DATA.NUM_CAPTURE does not).
    values: dict[SignalRW[Any], Any] = {
        sig: "No"
        for path, sig in signals.items()
        if path.endswith("_capture")
        and path.removesuffix("_capture") + "_dataset" in signals
    }
    for (capture, capture_sig, dataset_sig), description in zip(
        resolved, descriptions, strict=True
    ):
        choices = next(iter(description.values())).get("choices") or []
        if choices and capture.mode not in choices:
            offered = [c for c in choices if c in SINGLE_DATASET_MODES]
            raise CaptureError(
                f"{capture.ref} cannot be captured as {capture.mode!r}; it offers "
                f"{', '.join(offered)}"
            )
        values[capture_sig] = capture.mode
        values[dataset_sig] = capture.dataset
    return Settings(panda, values)


@plan
def apply_captures(
    panda: HDFPanda, captures: Sequence[Capture]
) -> MsgGenerator[Settings[HDFPanda]]:
    """Plan stub: check ``captures`` (raising before any write), then apply them.

    Every signal is written, even if it reads as wanted already: the IOC's
    records can lag the PandA by a poll (0.1 s). Returns the Settings applied.
    """
    settings = yield from wait_for_awaitable(capture_settings(panda, captures))
    yield from apply_panda_settings(settings)
    return settings
