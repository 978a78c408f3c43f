"""Co-binning: positions sampled by the PandA, at the times of detector frames.

In an asynchronous scan the PandA samples positions on its clock and the
detectors take frames on theirs. :func:`cobin` puts the positions at each
frame (linear interpolation between samples, or the mean over the frame's
exposure); :func:`cobin_run` does it for a run read back from Tiled, with the
PandA's time axis anchored to host time by the run's ``panda_clock`` stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ..storage.readback import read_stream, stream_names
from .asynchronous import CLOCK_STREAM

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["cobin", "cobin_run", "panda_sample_times"]


def _mean_over(
    t: np.ndarray, p: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Mean of the piecewise-linear p(t) over [lo, hi] (exact)."""
    # Integral of the interpolant from t[0] to each sample, then to any time.
    segment = np.diff(t) * (p[1:] + p[:-1]) / 2
    cumulative = np.concatenate([[0.0], np.cumsum(segment)])

    def integral(x: np.ndarray) -> np.ndarray:
        k = np.clip(np.searchsorted(t, x, side="right") - 1, 0, len(t) - 2)
        px = np.interp(x, t, p)
        return cumulative[k] + (x - t[k]) * (p[k] + px) / 2

    return (integral(hi) - integral(lo)) / (hi - lo)


def cobin(
    sample_times: ArrayLike,
    positions: Mapping[str, ArrayLike],
    frame_times: ArrayLike,
    *,
    exposure: float | None = None,
) -> dict[str, np.ndarray]:
    """Each position at each frame.

    Args:
        sample_times: When the PandA sampled (increasing, seconds).
        positions: Name -> samples, one per sample time.
        frame_times: When each frame started, on the same clock.
        exposure: If given, each frame's value is the mean position over
            ``[t, t + exposure]``; otherwise the position at ``t``.

    Returns name -> one value per frame; NaN for frames (or exposures) not
    wholly inside the sampled interval: positions are never extrapolated.
    """
    t = np.asarray(sample_times, dtype=np.float64)
    frames = np.asarray(frame_times, dtype=np.float64)
    if t.ndim != 1 or len(t) < 2:
        raise ValueError("need at least two position samples")
    if np.any(np.diff(t) <= 0):
        raise ValueError("sample times must increase")
    if exposure is not None and exposure <= 0:
        raise ValueError(f"exposure must be positive, got {exposure}")
    end = frames if exposure is None else frames + exposure
    inside = (frames >= t[0]) & (end <= t[-1])
    out: dict[str, np.ndarray] = {}
    for name, values in positions.items():
        p = np.asarray(values, dtype=np.float64)
        if p.shape != t.shape:
            raise ValueError(f"{name}: {p.shape[0]} samples for {t.shape[0]} times")
        if exposure is None:
            result = np.interp(frames, t, p)
        else:
            result = _mean_over(t, p, frames, end)
        out[name] = np.where(inside, result, np.nan)
    return out


def panda_sample_times(
    client: Any, uid: str, *, time_key: str = "trigger_time"
) -> np.ndarray:
    """Host (epoch) time of each PandA sample of an ``async_scan`` run."""
    if CLOCK_STREAM not in stream_names(client, uid):
        raise ValueError(
            f"run {uid} has no {CLOCK_STREAM!r} stream: it was not taken with "
            "async_scan, so its PandA times are not anchored to host time"
        )
    clock = read_stream(client, uid, CLOCK_STREAM)
    t0 = float(np.asarray(clock["panda_start_time"])[0])
    ts = np.asarray(read_stream(client, uid, "primary", variables=[time_key])[time_key])
    return t0 + ts.astype(np.float64)


def cobin_run(
    client: Any,
    uid: str,
    frame_times: ArrayLike | None = None,
    *,
    frames_stream: str | None = None,
    frame_time_key: str | None = None,
    positions: Iterable[str] | None = None,
    exposure: float | None = None,
    time_key: str = "trigger_time",
) -> pd.DataFrame:
    """Positions of an ``async_scan`` run at each detector frame, from Tiled.

    Frame times (host epoch seconds) are ``frame_times``, or the values of
    ``frame_time_key`` in the stream ``frames_stream`` (a detector's per-frame
    timestamps). ``positions`` are the PandA data keys to co-bin (default: all
    but ``time_key``). Returns a DataFrame indexed by frame number with
    ``frame_time`` and one column per position (NaN outside the sampled
    interval).
    """
    import pandas as pd

    if (frame_times is None) == (frames_stream is None):
        raise ValueError("give either frame_times or frames_stream/frame_time_key")
    if frames_stream is not None:
        if frame_time_key is None:
            raise ValueError(
                f"which key of {frames_stream!r} holds each frame's time? pass "
                "frame_time_key="
            )
        data = read_stream(client, uid, frames_stream, variables=[frame_time_key])
        frame_times = np.asarray(data[frame_time_key]).ravel()
    assert frame_times is not None
    primary = read_stream(client, uid, "primary")
    names = (
        [str(n) for n in primary.data_vars if n != time_key]
        if positions is None
        else list(positions)
    )
    times = panda_sample_times(client, uid, time_key=time_key)
    binned = cobin(
        times,
        {name: np.asarray(primary[name]) for name in names},
        frame_times,
        exposure=exposure,
    )
    frame = pd.DataFrame({"frame_time": np.asarray(frame_times, np.float64), **binned})
    frame.index.name = "frame"
    return frame
