"""spec_scan's wait for a line's end (_LineDone), on soft signals: done by
PCAP's rows or the motor's readback, whichever first; a watchable status
reporting the scan's frames for the progress bar."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace
from typing import Any

import pytest
from ophyd_async.core import soft_signal_rw

from panda_flyscan.plans.scan_path import FlyLine
from panda_flyscan.plans.spec_based import _LineDone


def _setup(timeout: float = 10.0) -> tuple[_LineDone, Any, Any]:
    captured = soft_signal_rw(int, 120, name="captured")
    readback = soft_signal_rw(float, 0.4, name="x")
    axis: Any = SimpleNamespace(name="x", user_readback=readback)
    panda: Any = SimpleNamespace(data=SimpleNamespace(num_captured=captured))
    line = FlyLine(
        first=100, num=50, axis=axis, start=0.0, end=1.0, duration=0.01, fixed={}
    )
    path: Any = SimpleNamespace(frames=300, duration=3.0)
    return _LineDone(panda, line, timeout, path, lambda: 1.5), captured, readback


async def test_done_when_the_rows_reach_the_line_end_reporting_frames() -> None:
    done, captured, _ = _setup()
    updates: list[dict[str, Any]] = []
    status = done.trigger()

    def watcher(**update: Any) -> None:
        updates.append(update)

    status.watch(watcher)  # pyright: ignore[reportArgumentType]
    await asyncio.sleep(0)
    await captured.set(149)
    assert not status.done
    await captured.set(150)
    await asyncio.wait_for(status, 5)
    assert [u["current"] for u in updates] == [120, 149, 150]
    last = updates[-1]
    assert (last["initial"], last["target"], last["name"]) == (0, 300, "frames")
    # The scan's own clock (pauses left out), and what is left of its frames.
    assert last["time_elapsed"] == 1.5
    assert last["time_remaining"] == pytest.approx(150 / 300 * 3.0)


async def test_done_when_the_motor_is_past_the_end_first() -> None:
    done, _, readback = _setup()
    status = done.trigger()
    await readback.set(0.99)
    await asyncio.sleep(0.01)
    assert not status.done
    await readback.set(1.0)
    await asyncio.wait_for(status, 5)


async def test_neither_within_the_bound_names_the_line() -> None:
    done, _, _ = _setup(timeout=0.05)
    with pytest.raises(
        TimeoutError, match=re.escape("line at frame 100 did not end within 0.05 s")
    ):
        await done.trigger()
