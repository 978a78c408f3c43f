"""PCAP capture programming for the server: capture requests to frames.

:func:`capture_layout` turns user capture requests (``Value``, ``Min Max
Mean``...) into the ``WRITE`` list (:mod:`.pcap_words`) and tells which frame
words make each field of the data stream; :func:`field_value` and
:func:`std_dev` read the fields back out of a frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from .pcap_words import MASK32, MAX_FRAME_WORDS, Ext, PosMode, ext_word, pos_word

__all__ = [
    "EXT_SOURCES",
    "POS_CAPTURE_OPTIONS",
    "CaptureLayout",
    "CaptureRequest",
    "FrameField",
    "Kind",
    "RawType",
    "capture_layout",
    "capture_words",
    "field_value",
    "std_dev",
]

#: pos_out capture options, in the order the server lays out each field's.
POS_CAPTURE_OPTIONS = ("Value", "Diff", "Sum", "Min", "Max", "Mean", "StdDev")
#: ext_out sources (``SAMPLES`` is accepted for ``GATE_DURATION``).
EXT_SOURCES = (
    "TS_START",
    "TS_END",
    "TS_TRIG",
    "GATE_DURATION",
    "BITS0",
    "BITS1",
    "BITS2",
    "BITS3",
)

Kind = Literal["pos", "timestamp", "samples", "bits"]
RawType = Literal["uint32", "int32", "int64", "int96"]


@dataclass(frozen=True)
class CaptureRequest:
    """One field to capture, as its ``CAPTURE`` attribute asks.

    ``source`` is a pos-bus index (0..31) or an ext_out name of PCAP
    (``"TS_START"``, ``"TS_END"``, ``"TS_TRIG"``, ``"GATE_DURATION"`` or
    ``"SAMPLES"``, ``"BITS0"``..``"BITS3"``; a ``"PCAP."`` prefix is allowed).
    ``mode`` is the attribute's text: for a pos-bus source any space-separated
    set of ``Value Diff Sum Mean Min Max StdDev`` (so ``"Min Max Mean"`` or
    ``"Mean StdDev"``); for an ext_out only ``"Value"``. ``name`` labels the
    data-stream fields (default ``POS[n]`` or ``PCAP.<NAME>``).
    """

    source: int | str
    mode: str = "Value"
    name: str = ""


@dataclass(frozen=True)
class FrameField:
    """One field of the data stream and the frame words it is made of.

    ``words`` are offsets into a frame, least significant word first: one
    word for 32-bit values, two for 64-bit (Sum, Mean's sum, timestamps),
    three for StdDev's 96-bit sum of squares. ``raw_type`` is the type the
    data port declares for it in RAW mode. ``hidden`` fields are sent in RAW
    mode only: the sample count Mean and StdDev need when GATE_DURATION is not
    captured, and the Mean that comes with a StdDev nobody asked Mean of.
    """

    name: str
    capture: str  # Value, Diff, Sum, Mean, Min, Max or StdDev
    kind: Kind
    words: tuple[int, ...]
    raw_type: RawType
    hidden: bool = False
    #: For StdDev: the words of the matching 64-bit sum.
    sum_words: tuple[int, ...] = ()

    @property
    def signed(self) -> bool:
        """Whether :func:`field_value` reads the words as two's complement.

        Sample counts are unsigned although the server declares them int32.
        """
        return self.raw_type in ("int32", "int64") and self.kind != "samples"


@dataclass(frozen=True)
class CaptureLayout:
    """The WRITE list for PCAP and the meaning of each frame word.

    Frames are laid out as the PandABlocks server lays them out, by how the
    server processes each field, in request order within each group:

    1. the hidden sample count, if Mean or StdDev needs it and GATE_DURATION
       is not captured;
    2. bit-bus quadrants (uint32, never scaled);
    3. 32-bit values: Value, Diff, Min, Max of pos-bus entries and
       GATE_DURATION (int32);
    4. 64-bit values: Sum (sum low, high) and timestamps (low, high) (int64);
    5. Mean: the 64-bit sum (low, high), divided by the sample count by the
       server (scaled data) or the client (raw data);
    6. StdDev: the 64-bit sum then the 96-bit sum of squares (low, mid, high).

    With ``SHIFT_SUM`` the firmware shifts sums, sums of squares and sample
    counts alike, so Mean and StdDev computed from them stay right.
    """

    write_words: tuple[int, ...]
    fields: tuple[FrameField, ...]
    #: Frame offset of the sample count Mean/StdDev divide by, if any.
    samples_word: int | None

    @property
    def frame_words(self) -> int:
        return len(self.write_words)


#: Layout groups, in frame order (see :class:`CaptureLayout`).
_GROUPS = ("unscaled", "scaled32", "scaled64", "averaged", "std_dev")
#: WRITE words of one entry and its fields, offsets relative to the entry.
_Entry = tuple[tuple[int, ...], tuple[FrameField, ...]]


def _ext_source(source: str) -> str:
    name = source.removeprefix("PCAP.")
    name = "GATE_DURATION" if name == "SAMPLES" else name
    if name not in EXT_SOURCES:
        raise ValueError(f"unknown capture source {source!r}")
    return name


def _options(mode: str) -> set[str]:
    words = mode.split()
    if words == ["No"]:
        return set()
    unknown = [w for w in words if w not in POS_CAPTURE_OPTIONS]
    if unknown:
        raise ValueError(f"unknown capture option {unknown[0]!r}")
    return set(words)


def _pos_entries(index: int, name: str, mode: str) -> list[tuple[str, _Entry]]:
    """(group, entry) for each option a pos-bus capture request asks for."""
    opts = _options(mode)
    sum_words = (pos_word(index, PosMode.SUM_L), pos_word(index, PosMode.SUM_H))
    single = {
        "Value": PosMode.VALUE,
        "Diff": PosMode.DIFF,
        "Min": PosMode.MIN,
        "Max": PosMode.MAX,
    }
    out: list[tuple[str, _Entry]] = []
    for option in POS_CAPTURE_OPTIONS:
        if option not in opts:
            continue
        if option in single:
            word = pos_word(index, single[option])
            entry = FrameField(name, option, "pos", (0,), "int32")
            out.append(("scaled32", ((word,), (entry,))))
        elif option == "Sum":
            entry = FrameField(name, "Sum", "pos", (0, 1), "int64")
            out.append(("scaled64", (sum_words, (entry,))))
        elif option == "Mean" and "StdDev" not in opts:
            entry = FrameField(name, "Mean", "pos", (0, 1), "int64")
            out.append(("averaged", (sum_words, (entry,))))
        elif option == "StdDev":
            # The server computes Mean from the same sum when also asked.
            squares = tuple(
                pos_word(index, m)
                for m in (PosMode.SUM2_L, PosMode.SUM2_M, PosMode.SUM2_H)
            )
            mean = FrameField(
                name, "Mean", "pos", (0, 1), "int64", hidden="Mean" not in opts
            )
            sd = FrameField(name, "StdDev", "pos", (2, 3, 4), "int96", False, (0, 1))
            out.append(("std_dev", (sum_words + squares, (mean, sd))))
    return out


def _ext_entry(source: str, name: str, mode: str) -> tuple[str, _Entry] | None:
    """(group, entry) for an ext_out capture request, None for ``No``."""
    ext = _ext_source(source)
    if mode.split() == ["No"]:
        return None
    if mode != "Value":
        raise ValueError(f"{ext} can only be captured as Value, not {mode!r}")
    name = name or f"PCAP.{ext}"
    if ext.startswith("BITS"):
        word = ext_word(Ext(Ext.BITS0 + int(ext[-1])))
        return "unscaled", (
            (word,),
            (FrameField(name, "Value", "bits", (0,), "uint32"),),
        )
    if ext == "GATE_DURATION":
        word = ext_word(Ext.SAMPLES)
        entry = FrameField(name, "Value", "samples", (0,), "int32")
        return "scaled32", ((word,), (entry,))
    low = Ext[f"{ext}_L"]
    entry = FrameField(name, "Value", "timestamp", (0, 1), "int64")
    return "scaled64", ((ext_word(low), ext_word(Ext(low + 1))), (entry,))


def capture_layout(requests: Sequence[CaptureRequest]) -> CaptureLayout:
    """Plan the WRITE list and frame layout for ``requests``.

    Raises :class:`ValueError` for an unknown source or option, when nothing
    is captured, or when a frame would exceed the firmware's 63 words.
    """
    groups: dict[str, list[_Entry]] = {g: [] for g in _GROUPS}
    for req in requests:
        if isinstance(req.source, int):
            name = req.name or f"POS[{req.source}]"
            for group, entry in _pos_entries(req.source, name, req.mode):
                groups[group].append(entry)
        elif (found := _ext_entry(req.source, req.name, req.mode)) is not None:
            groups[found[0]].append(found[1])

    words: list[int] = []
    fields: list[FrameField] = []
    for group in _GROUPS:
        for entry_words, entry_fields in groups[group]:
            base = len(words)
            words.extend(entry_words)
            fields.extend(
                replace(
                    f,
                    words=tuple(base + w for w in f.words),
                    sum_words=tuple(base + w for w in f.sum_words),
                )
                for f in entry_fields
            )
    samples_word = next((f.words[0] for f in fields if f.kind == "samples"), None)
    if samples_word is None and groups["averaged"] + groups["std_dev"]:
        # As the server does: capture the sample count anonymously, first.
        words.insert(0, ext_word(Ext.SAMPLES))
        fields = [
            replace(
                f,
                words=tuple(w + 1 for w in f.words),
                sum_words=tuple(w + 1 for w in f.sum_words),
            )
            for f in fields
        ]
        hidden = FrameField("PCAP.GATE_DURATION", "Value", "samples", (0,), "int32")
        fields.insert(0, replace(hidden, hidden=True))
        samples_word = 0
    if not words:
        raise ValueError("Nothing configured for capture")
    if len(words) > MAX_FRAME_WORDS:
        raise ValueError(
            f"Too many captures for PCAP: {len(words)} words, at most {MAX_FRAME_WORDS}"
        )
    return CaptureLayout(tuple(words), tuple(fields), samples_word)


def capture_words(requests: Sequence[CaptureRequest]) -> list[int]:
    """The WRITE words, in order, for ``requests`` (see :func:`capture_layout`)."""
    return list(capture_layout(requests).write_words)


def field_value(frame: Sequence[int], f: FrameField) -> int:
    """The raw integer a field holds in one frame of 32-bit words."""
    value = 0
    for i, offset in enumerate(f.words):
        value |= (frame[offset] & MASK32) << (32 * i)
    bits = 32 * len(f.words)
    if f.signed and value >> (bits - 1):
        value -= 1 << bits
    return value


def std_dev(samples: int, total: int, squares: int) -> float:
    """Population standard deviation from a sample count, sum and sum of squares.

    Exact integer arithmetic up to the final square root, as the server needs
    for 96-bit sums of squares.
    """
    if samples <= 0:
        return float("nan")
    # n^2 var = n * sum(x^2) - sum(x)^2, an exact non-negative integer.
    spread = samples * squares - total * total
    return math.sqrt(max(spread, 0)) / samples
