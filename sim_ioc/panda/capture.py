"""What PCAP captures, and the events the data port streams.

:func:`plan` turns the fields whose CAPTURE attribute is set into the PCAP
WRITE words the firmware needs and the :class:`Column` layout of each frame;
:class:`Capture` assembles drained words into whole frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .catalog import FieldDef
from .fields import TICK, FieldError


@dataclass(frozen=True)
class Request:
    """A field to capture, as the CAPTURE attribute asks."""

    name: str  # e.g. "INENC1.VAL" or "PCAP.TS_TRIG"
    definition: FieldDef
    mode: str  # e.g. "Value", "Min Max Mean"
    scale: float
    offset: float
    units: str
    pos_index: int | None


@dataclass(frozen=True)
class Column:
    """One column of the data stream, built from words of each frame."""

    name: str
    capture: str  # a single mode: Value, Diff, Sum, Mean, Min, Max
    kind: str  # "pos", "timestamp", "samples" or "bits"
    words: tuple[int, ...]  # frame offsets, least significant word first
    signed: bool
    raw_dtype: str
    #: Sent in RAW mode but absent from the header (the hidden sample count).
    hidden: bool = False
    scale: float | None = None
    offset: float | None = None
    units: str | None = None

    def values(self, frames: np.ndarray) -> np.ndarray:
        """This column's raw values from an (n, frame_words) uint32 array."""
        if len(self.words) == 1:
            word = frames[:, self.words[0]]
            return word.view(np.int32) if self.signed else word
        low = frames[:, self.words[0]].astype(np.uint64)
        both = low | (frames[:, self.words[1]].astype(np.uint64) << np.uint64(32))
        return both.view(np.int64) if self.signed else both


@dataclass(frozen=True)
class Plan:
    """The PCAP programming and frame layout for one acquisition."""

    write_words: tuple[int, ...]
    columns: tuple[Column, ...]
    frame_words: int
    #: Frame offset of the sample count a Mean divides by, if any.
    samples_word: int | None = None


def plan(requests: list[Request]) -> Plan:
    """Work out the WRITE words and frame layout for ``requests``.

    Mean is captured as a sum plus a sample count, which the data port divides
    (scaled mode) or sends for the client to divide (raw mode), as the real
    server does.
    """
    from .models.pcap import CaptureRequest, capture_layout

    if not requests:
        # The real server's text (server/capture.c).
        raise FieldError("Nothing configured for capture")
    layout = capture_layout(
        [
            CaptureRequest(
                r.pos_index if r.pos_index is not None else r.name, r.mode, r.name
            )
            for r in requests
        ]
    )
    by_name = {r.name: r for r in requests}
    columns = []
    for f in layout.fields:
        req = by_name.get(f.name)
        scale: float | None = None
        offset: float | None = None
        units: str | None = None
        if f.kind == "pos" and req is not None:
            scale, offset, units = req.scale, req.offset, req.units
        elif f.kind == "timestamp" or (f.kind == "samples" and not f.hidden):
            scale, offset, units = TICK, 0.0, "s"
        columns.append(
            Column(
                f.name,
                f.capture,
                f.kind,
                f.words,
                f.signed,
                f.raw_type,
                f.hidden,
                scale,
                offset,
                units,
            )
        )
    return Plan(layout.write_words, tuple(columns), layout.frame_words,
                layout.samples_word)  # fmt: skip


@dataclass
class Capture:
    """One acquisition, from arm to END."""

    plan: Plan
    arm_time: str
    started: bool = False
    ended: bool = False
    #: What END will say: Ok unless disarmed or overrun.
    end_reason: str = "Ok"
    _pending: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint32))

    def add_words(self, words: Sequence[int] | np.ndarray) -> np.ndarray | None:
        """Add drained words; return the whole frames completed so far."""
        width = self.plan.frame_words
        if width == 0:
            return None
        data = np.asarray(words, dtype=np.uint32)
        if len(self._pending):
            data = np.concatenate((self._pending, data))
        whole = len(data) // width * width
        self._pending = data[whole:].copy()
        if not whole:
            return None
        return data[:whole].reshape(-1, width)


@dataclass(frozen=True)
class Start:
    plan: Plan
    arm_time: str


@dataclass(frozen=True)
class Frames:
    frames: np.ndarray  # (n, frame_words) uint32


@dataclass(frozen=True)
class End:
    samples: int
    reason: str


Event = Start | Frames | End
