"""Figure 9: flyscans of any length, and what a pause costs.

* A long time-based scan: ``time_scan(panda, 1e6, 10 us)`` (100 kHz;
  ``--quick``: 1e5) into Tiled: efficiency = N x period / wall of the
  ``RE`` call (one table: a uniform time scan fits).
* A 2-D map with a streamed table: ``spec_scan(panda, Fly(1 ms @
  (Line(y, 0, 0.1, 10) * ~Line(x, 0, 9.999, 10000))), control=...)`` (1e5
  frames at 1 kHz, 200,010 table lines; ``--quick``: 4 x 2,500): efficiency
  = frames x frame / wall.
* One pause and resume: the same 4 x 2,500 map with one ``RE.request_pause``
  once 3,000 rows are in, resumed 1 s later; cost = (wall - time paused) -
  wall of the same map without a pause, measured one after the other; also
  request -> RunEngine paused.
* Table generation's peak memory: a fresh Python process builds the path
  and generates every table line of a 1e6-frame map and of a 1e4-frame one
  (``ru_maxrss``); their ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from panda_flyscan.app.bench.suite import Suite

__all__ = ["stream"]

#: The map's x step (mm): one encoder count of the simulated axes.
_X_STEP = 0.001


def _map(bl: Any, lines: int, points: int, frame: float) -> Any:
    from scanspec.specs import Fly, Line

    x, y = bl.motor("x"), bl.motor("y")
    return Fly(
        frame
        @ (
            Line(y, 0.0, 0.01 * (lines - 1), lines)
            * ~Line(x, 0.0, _X_STEP * (points - 1), points)
        )
    )


def _fly_map(
    s: Suite, lines: int, points: int, frame: float, pause_at: int | None = None
) -> tuple[float, float, float]:
    """(wall, seconds paused, request -> paused) of a streamed spec_scan."""
    from bluesky.utils import RunEngineInterrupted
    from ophyd_async.core import wait_for_value

    from panda_flyscan.app.bench.plans_bench import reset_motors
    from panda_flyscan.devices.table_stream import PandaControl
    from panda_flyscan.plans import spec_scan
    from panda_flyscan.storage import read_field

    ctx = s.ctx
    bl = ctx.beamline
    RE: Any = ctx.RE
    reset_motors(RE, bl, {"x": 0.0, "y": 0.0})
    control = PandaControl(ctx.sim.panda_host)
    spec = _map(bl, lines, points, frame)
    requested: list[float] = []
    flying = threading.Event()
    # The count of the previous run stays until this one's capture starts.
    RE.msg_hook = lambda msg: flying.set() if msg.command == "checkpoint" else None

    def pause_later() -> None:
        assert pause_at is not None
        target = pause_at
        captured = bl.panda.data.num_captured
        flying.wait(600)
        _in_loop(RE, wait_for_value(captured, lambda n: n >= target, timeout=600))
        requested.append(time.perf_counter())
        RE.request_pause()

    paused = 0.0
    to_paused = 0.0
    with ctx.writing():
        if pause_at is not None:
            threading.Thread(target=pause_later, daemon=True).start()
        started = time.perf_counter()
        try:
            (uid,) = RE(spec_scan(bl.panda, spec, control=control))
        except RunEngineInterrupted:
            stopped = time.perf_counter()
            to_paused = stopped - requested[0]
            time.sleep(1.0)  # the pause itself, then resume
            paused = time.perf_counter() - stopped
            (uid,) = RE.resume()
        wall = time.perf_counter() - started
        RE.msg_hook = None
        _in_loop(RE, control.close())
    rows = len(read_field(ctx.client, uid, "primary", "x"))
    assert rows == lines * points, f"{rows} rows in Tiled for {lines * points}"
    return wall, paused, to_paused


def _in_loop(RE: Any, coro: Any) -> Any:
    """Run ``coro`` in the RunEngine's loop (where the devices live)."""
    import asyncio

    return asyncio.run_coroutine_threadsafe(coro, RE.loop).result(900)


_MEMORY_SCRIPT = """
import json, resource, sys, tracemalloc
from scanspec.specs import Fly, Line
from panda_flyscan.plans.scan_path import scan_path
from panda_flyscan.plans.seq_lines import streamed_program
from panda_flyscan.plans.seq_program import AxisFacts

class Axis:
    def __init__(self, name): self.name = name

x, y = Axis("x"), Axis("y")
facts = {a: AxisFacts(a.name, i, 0.001, 0.0, "mm", 50.0, 0.1, None, 5.0)
         for i, a in ((1, x), (2, y))}
lines, points = int(sys.argv[1]), int(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
spec = Fly(0.001 @ (Line(y, 0, 1, lines) * ~Line(x, 0, 0.001 * (points - 1), points)))
program = streamed_program(scan_path(spec), facts)
sent = sum(len(c) for c in program.chunks())
traced = tracemalloc.get_traced_memory()[1]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"lines": sent, "before_kb": before, "peak_kb": after,
                  "traced_peak_kb": traced // 1024}))
"""


def _peak_memory(lines: int, points: int) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(lines), str(points)],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def stream(s: Suite) -> None:
    """Figure 9 (see the module)."""
    quick = s.options.quick
    s.warm_up()
    # Long time scan.
    n = 100_000 if quick else 1_000_000
    result = s.flyscan(n, 1e-5)
    fig = s.figure(
        "stream.time.efficiency",
        "stream",
        f"time_scan N={n:,} at 100 kHz: N x period / wall",
    )
    fig.add(n * 1e-5 / result.wall)
    s.log(f"time_scan {n:,} at 100 kHz: {result.wall:.1f} s")
    # Streamed 2-D map.
    lines, points = (4, 2_500) if quick else (10, 10_000)
    wall, _, _ = _fly_map(s, lines, points, 1e-3)
    fig = s.figure(
        "stream.map.efficiency",
        "stream",
        f"spec_scan streamed {lines} x {points:,} at 1 kHz: frames x frame / wall",
    )
    fig.add(lines * points * 1e-3 / wall)
    s.log(f"streamed map {lines} x {points:,}: {wall:.1f} s")
    # One pause and resume, against the same map without.
    plain, _, _ = _fly_map(s, 4, 2_500, 1e-3)
    paused_wall, paused, to_paused = _fly_map(s, 4, 2_500, 1e-3, pause_at=3_000)
    s.figure(
        "stream.pause.cost",
        "stream",
        "one pause/resume of a 4 x 2,500 map at 1 kHz: (wall - paused) - wall unpaused",
        "s",
    ).add(paused_wall - paused - plain)
    s.figure(
        "stream.pause.latency",
        "stream",
        "RE.request_pause() -> RunEngine paused (triggers stopped, motor stopping)",
        "s",
    ).add(to_paused)
    s.log(f"pause: {plain:.1f} s plain, {paused_wall:.1f} s with {paused:.1f} s paused")
    # Table generation memory, 1e6 frames against 1e4.
    small = _peak_memory(10, 1_000)
    large = _peak_memory(100, 10_000)
    s.figure(
        "stream.memory.ratio",
        "stream",
        "table generation peak RSS, 1e6 frames / 1e4 frames (fresh process)",
    ).add(large["peak_kb"] / small["peak_kb"])
    s.figure(
        "stream.memory.traced",
        "stream",
        "table generation's own peak allocations (tracemalloc), 1e6 frames",
        "MB",
    ).add(large["traced_peak_kb"] / 1024)
    s.figure(
        "stream.memory.traced.small",
        "stream",
        "table generation's own peak allocations (tracemalloc), 1e4 frames",
        "MB",
    ).add(small["traced_peak_kb"] / 1024)
    s.log(f"table generation peak RSS: 1e4 {small}, 1e6 {large}")
