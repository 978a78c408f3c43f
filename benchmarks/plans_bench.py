"""Flyscan efficiency benchmark: the time-based plan versus a step scan.

Run on demand (not a test)::

    .venv/bin/python benchmarks/plans_bench.py [--frames 1000 10000 100000]
        [--period 1e-3] [--step-max 10000] [--attach]

Starts the simulated beamline (the simulated PandA and the real
PandABlocks-ioc; ``--attach`` uses the one the environment describes instead)
and the bundled Tiled service, with a RunEngine writing every run into Tiled.
For each N:

* flyscan: ``time_scan(panda, N, period)``; efficiency = wall time of the whole
  plan (``RE(...)`` call, from staging to the run being in Tiled) / (N x
  period). 1.0 would be no overhead at all. The data read back from Tiled are
  checked: N rows, TRIGGER_TIME exactly one period apart.
* step scan: ``bp.scan([INENC1.VAL], x, ...)`` with the same N points (1 um
  steps of the simulated axis), wall time / (N x period) on the same scale.
  Step scans longer than ``--step-max`` points are not run: their time is
  extrapolated from the largest one run, and marked so.

Prints one table of figures and ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import bluesky.plans as bp
import numpy as np
from bluesky import RunEngine

from panda_flyscan.devices import Beamline, simulated_beamline_devices
from panda_flyscan.plans import time_scan
from panda_flyscan.storage import TiledService, read_stream, subscribe_tiled_writer

API_KEY = "bench"
TICK = 8e-9


@contextlib.contextmanager
def _beamline(attach: bool) -> Iterator[tuple[str, str]]:
    if attach:
        yield os.environ["PANDA_PREFIX"], os.environ["PANDA_HOST"]
        return
    from sim_ioc.launcher import simulated_beamline

    with simulated_beamline(prefix="BENCH") as beamline:
        os.environ.update(beamline.env)  # before the first CA/PVA use
        yield beamline.panda_prefix, beamline.panda_host


def fly(RE: RunEngine, bl: Beamline, client, frames: int, period: float) -> float:
    started = time.monotonic()
    (uid,) = RE(time_scan(bl.panda, frames, period))  # type: ignore[misc]
    wall = time.monotonic() - started
    t = np.asarray(read_stream(client, uid, variables=["trigger_time"])["trigger_time"])
    ticks = np.rint(t / TICK).astype(np.int64)
    assert len(t) == frames, f"{len(t)} rows in Tiled for {frames} frames"
    assert np.all(np.diff(ticks) == round(period / TICK)), "spacing is not exact"
    return wall


def step(RE: RunEngine, bl: Beamline, client, points: int) -> float:
    x = bl.motor("x")
    encoder = bl.panda.inenc[1].val  # type: ignore[attr-defined]
    started = time.monotonic()
    (uid,) = RE(bp.scan([encoder], x, 0.0, (points - 1) * 0.001, points))  # type: ignore[misc]
    wall = time.monotonic() - started
    rows = len(read_stream(client, uid, variables=["x"])["x"])
    assert rows == points, f"{rows} events in Tiled for {points} points"
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--period", type=float, default=1e-3)
    parser.add_argument("--step-max", type=int, default=10000)
    parser.add_argument("--attach", action="store_true")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="plans-bench-") as tmp,
        _beamline(args.attach) as (prefix, host),
    ):
        data = Path(tmp) / "panda"
        data.mkdir()
        with TiledService(
            Path(tmp) / "tiled", api_key=API_KEY, readable=[data]
        ) as tiled:
            RE = RunEngine({})
            writer = subscribe_tiled_writer(
                RE,
                tiled.uri,
                API_KEY,
                external_dirs=[data],
                journal_dir=Path(tmp) / "j",
            )
            bl = simulated_beamline_devices(data, panda_prefix=prefix, panda_host=host)
            client = tiled.client()
            fly(RE, bl, client, 100, args.period)  # warm-up: connections, caches
            results = []
            step_rate: tuple[int, float] | None = None
            for n in args.frames:
                fly_wall = fly(RE, bl, client, n, args.period)
                if n <= args.step_max:
                    step_wall = step(RE, bl, client, n)
                    step_rate = (n, step_wall)
                    extrapolated = False
                else:
                    assert step_rate is not None, "run at least one step scan"
                    step_wall = step_rate[1] / step_rate[0] * n
                    extrapolated = True
                results.append((n, fly_wall, step_wall, extrapolated))
                print(
                    f"N={n}: flyscan {fly_wall:.2f} s, step scan {step_wall:.1f} s"
                    f"{' (extrapolated)' if extrapolated else ''}",
                    flush=True,
                )
            RE.unsubscribe(writer.token)
            writer.close()
            with contextlib.suppress(Exception):
                from bluesky.run_engine import call_in_bluesky_event_loop

                call_in_bluesky_event_loop(bl.motor("x").close(), timeout=5)
    period = args.period
    print()
    print(f"Time-based flyscan at {1 / period:g} Hz vs step scan, into Tiled")
    print("efficiency = wall time of the plan / (N x period); 1.00 = no overhead")
    print()
    header = (
        f"| {'N':>7} | {'N x period':>10} | {'flyscan':>9} | {'efficiency':>10} "
        f"| {'step scan':>11} | {'step / (N x period)':>19} | {'step / fly':>10} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for n, fly_wall, step_wall, extrapolated in results:
        ideal = n * period
        mark = "*" if extrapolated else " "
        print(
            f"| {n:>7} | {ideal:>8.1f} s | {fly_wall:>7.2f} s "
            f"| {fly_wall / ideal:>10.3f} | {step_wall:>8.1f} s{mark} "
            f"| {step_wall / ideal:>19.1f} | {step_wall / fly_wall:>10.1f} |"
        )
    if any(r[3] for r in results):
        print("* extrapolated from the largest step scan run (--step-max)")


if __name__ == "__main__":
    main()
