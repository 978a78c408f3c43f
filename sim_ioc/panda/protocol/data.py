"""The data protocol (TCP 8889), without sockets.

A client first sends one line of options, e.g. ``XML FRAMED RAW``; the server
answers ``OK``. For each acquisition it then sends an XML header describing
the columns followed by an empty line, ``BIN`` frames (``BIN `` + little-endian
uint32 length of the whole message + packed samples) and finally
``END <samples> <reason>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import numpy as np

from ..capture import Column, Plan

_OPTIONS = {"XML", "DEFAULT", "FRAMED", "UNFRAMED", "BASE64", "ASCII", "RAW", "SCALED",
            "NO_HEADER", "NO_STATUS", "ONE_SHOT"}  # fmt: skip


class OptionsError(ValueError):
    """Connection options the simulator cannot honour."""


@dataclass(frozen=True)
class Options:
    """What the client asked for on connection."""

    scaled: bool = True
    one_shot: bool = False

    @classmethod
    def parse(cls, line: str) -> Options:
        words = line.split()
        unknown = [w for w in words if w not in _OPTIONS]
        if unknown:
            raise OptionsError(f"Unknown data option {unknown[0]}")
        for unsupported in ("UNFRAMED", "BASE64", "ASCII", "NO_HEADER", "NO_STATUS"):
            if unsupported in words:
                raise OptionsError(
                    f"Data option {unsupported} not supported by the simulator"
                )
        if "XML" not in words or "FRAMED" not in words:
            raise OptionsError("The simulator streams XML FRAMED data only")
        return cls(scaled="RAW" not in words, one_shot="ONE_SHOT" in words)


def _dtype(column: Column, scaled: bool) -> str:
    if scaled and column.scale is not None:
        return "double"
    return column.raw_dtype


def _columns(plan: Plan, options: Options) -> list[Column]:
    # Hidden columns (the sample count a Mean needs) travel in RAW frames only,
    # counted in sample_bytes but not listed, as the real server sends them.
    return [c for c in plan.columns if options.scaled is False or not c.hidden]


def header(plan: Plan, options: Options, arm_time: str, missed: int = 0) -> bytes:
    """The XML header sent when an acquisition starts."""
    process = "Scaled" if options.scaled else "Raw"
    columns = _columns(plan, options)
    sample_bytes = sum(np.dtype(_dtype(c, options.scaled)).itemsize for c in columns)
    lines = [
        "<header>",
        f'<data missed="{missed}" process="{process}" format="Framed" '
        f'sample_bytes="{sample_bytes}" arm_time={quoteattr(arm_time)} '
        f"start_time={quoteattr(arm_time)} />",
        "<fields>",
    ]
    for c in columns:
        if c.hidden:
            continue
        attrs = (
            f'name="{c.name}" type="{_dtype(c, options.scaled)}" capture="{c.capture}"'
        )
        if c.scale is not None:
            units = quoteattr(c.units or "")
            attrs += f' scale="{c.scale!r}" offset="{c.offset!r}" units={units}'
        lines.append(f"<field {attrs} />")
    lines += ["</fields>", "</header>", ""]
    return ("\n".join(lines) + "\n").encode()


def encode_frames(plan: Plan, options: Options, frames: np.ndarray) -> bytes:
    """Pack (n, frame_words) captured words into one ``BIN`` message."""
    columns = _columns(plan, options)
    dtype = np.dtype(
        [(f"f{i}", _dtype(c, options.scaled)) for i, c in enumerate(columns)]
    )
    out = np.empty(len(frames), dtype=dtype)
    samples = None
    if plan.samples_word is not None:
        samples = frames[:, plan.samples_word].astype(np.float64)
    for i, c in enumerate(columns):
        raw = c.values(frames)
        if options.scaled and c.scale is not None:
            value = raw.astype(np.float64)
            if c.capture == "Mean" and samples is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    value = value / samples
            out[f"f{i}"] = value * c.scale + (c.offset or 0.0)
        else:
            out[f"f{i}"] = raw
    payload = out.tobytes()
    return b"BIN " + (len(payload) + 8).to_bytes(4, "little") + payload


def end(samples: int, reason: str) -> bytes:
    return f"END {samples} {reason}\n".encode()
