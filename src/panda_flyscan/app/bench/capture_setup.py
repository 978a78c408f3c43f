"""What the capture benchmarks capture, and the search for the highest rate
sustained; shared by the simulator-alone and the through-the-IOC captures.

For 4 and 16 captured fields (:data:`FIELDS`), CLOCK1 triggers PCAP and the
counters (:func:`wiring`); :func:`highest_sustained` walks up a grid of
rates until the capture stops keeping up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["FIELDS", "FIELDS_4", "frame_bytes", "highest_sustained", "wiring"]

#: Capture lines for 4 and 16 fields; every field changes with the trigger
#: except the encoders (their axes stand still).
FIELDS: dict[int, list[str]] = {
    4: [
        "PCAP.TS_TRIG.CAPTURE=Value",
        "COUNTER1.OUT.CAPTURE=Value",
        "COUNTER2.OUT.CAPTURE=Value",
        "INENC1.VAL.CAPTURE=Value",
    ],
    16: [
        "PCAP.TS_TRIG.CAPTURE=Value",
        "PCAP.TS_START.CAPTURE=Value",
        "PCAP.TS_END.CAPTURE=Value",
        "PCAP.GATE_DURATION.CAPTURE=Value",
        "PCAP.BITS0.CAPTURE=Value",
        "PCAP.BITS1.CAPTURE=Value",  # CLOCK1.OUT is bit 37
        *(f"COUNTER{n}.OUT.CAPTURE=Value" for n in range(1, 9)),
        "INENC1.VAL.CAPTURE=Value",
        "INENC2.VAL.CAPTURE=Value",
    ],
}
#: Kept for older callers.
FIELDS_4 = FIELDS[4]


def _counters(n_fields: int) -> list[int]:
    return [
        int(line.split(".")[0].removeprefix("COUNTER"))
        for line in FIELDS[n_fields]
        if line.startswith("COUNTER")
    ]


def wiring(rate_hz: float, n_fields: int) -> list[str]:
    """Control-port lines: CLOCK1 at ``rate_hz`` triggers PCAP and the
    captured counters (counter n steps by n) while PCAP is active; the last
    line starts the clock."""
    lines = [
        "CLOCK1.ENABLE=ZERO",
        "CLOCK1.PERIOD.UNITS=s",
        f"CLOCK1.PERIOD={1.0 / rate_hz:.12g}",
        "CLOCK1.WIDTH=0",
    ]
    for n in _counters(n_fields):
        lines += [
            f"COUNTER{n}.TRIG=CLOCK1.OUT",
            f"COUNTER{n}.ENABLE=PCAP.ACTIVE",
            f"COUNTER{n}.STEP={n}",
        ]
    return [
        *lines,
        "PCAP.ENABLE=ONE",
        "PCAP.GATE=ONE",
        "PCAP.TRIG=CLOCK1.OUT",
        "PCAP.TRIG_EDGE=Rising",
        "CLOCK1.ENABLE=PCAP.ACTIVE",
    ]


def frame_bytes(n_fields: int) -> int:
    """Bytes of one raw frame of the ``n_fields`` set (timestamps are 64-bit,
    the other fields 32)."""
    return sum(8 if line.startswith("PCAP.TS_") else 4 for line in FIELDS[n_fields])


def highest_sustained(
    measure: Callable[[float], dict[str, Any]],
    rates: Sequence[float],
    threshold: float = 0.98,
) -> dict[str, Any]:
    """Measure each rate (ascending, stopping after two failures in a row);
    return the highest whose realtime >= ``threshold`` without overrun.

    ``{"rate_hz": best or 0, "best": its result or None, "results": all}``.
    """
    results: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    failures = 0
    for rate in sorted(rates):
        result = measure(rate)
        results.append(result)
        if result["realtime"] >= threshold and not result.get("overrun", False):
            best, failures = result, 0
        else:
            failures += 1
            if failures >= 2:
                break
    return {
        "rate_hz": best["rate_hz"] if best else 0.0,
        "best": best,
        "results": results,
    }
