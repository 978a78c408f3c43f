"""``panda-flyscan demo``: a flyscan on the simulated beamline, into Tiled.

Starts the simulated PandA and the real PandABlocks-ioc (or attaches to a
running one), starts the bundled Tiled service, runs one of the flyscan plans
with a RunEngine writing into Tiled, and prints where the data is and a short
summary read back from Tiled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: The plans the demo can run.
DEMO_PLANS = ("time", "position", "async", "map")
#: Lines of the map plan.
MAP_LINES = 10


#: What the demo needs to find the simulated beamline's devices.
_BEAMLINE_VARIABLES = ("PANDA_PREFIX", "PANDA_HOST", "MOTOR_PV", "DETECTOR_PREFIX")


@contextlib.contextmanager
def _beamline(prefix: str, attach: bool) -> Iterator[dict[str, str]]:
    """The beamline's variables (:data:`_BEAMLINE_VARIABLES`): of a new
    simulated beamline, or of the running one the environment describes."""
    if attach:
        missing = [v for v in _BEAMLINE_VARIABLES if not os.environ.get(v)]
        if missing:
            raise RuntimeError(
                f"--attach needs {', '.join(missing)} (and the EPICS_* variables) "
                "in the environment: `panda-flyscan sim --env-file sim.env`, then "
                "`set -a; . ./sim.env; set +a`"
            )
        print(f"Attached to the simulated PandA at {os.environ['PANDA_HOST']}")
        yield {v: os.environ[v] for v in _BEAMLINE_VARIABLES}
        return
    from .simulated.launcher import simulated_beamline

    print(
        "Starting the simulated beamline (PandA, real PandABlocks-ioc, motor, "
        "detector)...",
        flush=True,
    )
    with simulated_beamline(prefix=prefix) as beamline:
        # CA/PVA clients read their settings once, at first use: set them now.
        os.environ.update(beamline.env)
        print(f"Simulated PandA at {beamline.panda_host}")
        print(f"IOC serving it as {beamline.panda_prefix}")
        print(f"Motor {beamline.motor_pv}, detector {beamline.detector_prefix}")
        yield {v: beamline.env[v] for v in _BEAMLINE_VARIABLES}


def _demo_plan(
    kind: str,
    bl: Any,
    frames: int,
    period: float,
    exposure: float | None,
    detector: bool,
):
    from ..plans import async_scan, position_scan, spec_scan, time_scan

    md = {"purpose": "panda-flyscan demo"}
    dets = [bl.detectors["det"]] if detector else []
    if kind == "time":
        return time_scan(bl.panda, frames, period, exposure, detectors=dets, md=md)
    x = bl.motor("x")
    if kind == "map":
        from scanspec.specs import Fly, Line

        points = frames // MAP_LINES
        y = bl.motor("y")
        spec = Fly(
            period
            @ (
                Line(y, 0.0, 0.01 * (MAP_LINES - 1), MAP_LINES)
                * ~Line(x, 0.0, 0.01 * (points - 1), points)
            )
        )
        return spec_scan(bl.panda, spec, detectors=dets, exposure=exposure, md=md)
    # 1 um counts: frames points 10 um apart, flown in frames*period seconds.
    stop = (frames - 1) * 0.01
    if kind == "position":
        return position_scan(
            bl.panda,
            x,
            0.0,
            stop,
            frames,
            velocity=0.01 / period,
            exposure=exposure,
            detectors=dets,
            md=md,
        )
    return async_scan(
        bl.panda,
        motor=x,
        start=0.0,
        stop=stop,
        velocity=0.01 / period,
        sample_period=period,
        md=md,
    )


#: The demo's period without a detector (seconds).
DEFAULT_PERIOD = 1e-3


class DemoInterrupted(RuntimeError):
    """The demo's run was stopped by Ctrl-C or a signal (and closed)."""

    def __init__(self, signal_name: str, message: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name


def run_demo(
    frames: int = 1000,
    period: float | None = None,
    exposure: float | None = None,
    *,
    plan: str = "time",
    prefix: str = "DEMO",
    data_dir: Path | str | None = None,
    attach: bool = False,
    progress: bool = True,
    detector: bool = False,
) -> str:
    """Run a flyscan on the simulated beamline into Tiled; print a summary.

    ``plan`` is ``time`` (``frames`` frames every ``period`` s), ``position``
    (``frames`` points 10 um apart, flown at 10 um per ``period``),
    ``async`` (the same motion, the PandA sampling every ``period``) or
    ``map`` (:data:`MAP_LINES` lines of ``frames / MAP_LINES`` such points,
    snaked, y stepped 10 um between lines, by ``spec_scan``). Data
    (HDF5 files and the Tiled catalog) go to ``data_dir`` (default: a new
    temporary directory), which is kept. ``detector`` adds the simulated area
    detector, triggered by the PandA (time and position plans; its exposure
    plus its readout must fit in ``period``; with no ``period`` one that fits
    is picked). ``period`` defaults to :data:`DEFAULT_PERIOD`. Beside the
    summary, a PNG of what was measured (positions and trigger times; a
    montage of the detector's frames) is written to ``data_dir`` and its
    path printed. Returns the run uid.
    """
    from bluesky import RunEngine
    from bluesky.run_engine import call_in_bluesky_event_loop
    from bluesky.utils import RunEngineInterrupted

    from ..plans import install_progress_bar, seq_timing, stop_flyscans_on_signals
    from ..plans.signals import interrupting_signal
    from ..storage import (
        TiledService,
        external_assets,
        read_stream,
        subscribe_tiled_writer,
    )
    from .simulated import simulated_beamline_devices

    if plan not in DEMO_PLANS:
        raise ValueError(f"plan must be one of {', '.join(DEMO_PLANS)}, got {plan!r}")
    if plan == "map" and (frames % MAP_LINES or frames < 2 * MAP_LINES):
        raise ValueError(
            f"the map plan flies {MAP_LINES} lines: --frames must be a multiple of "
            f"{MAP_LINES}, at least {2 * MAP_LINES}, got {frames}"
        )
    if detector and plan == "async":
        raise ValueError(
            "--detector works with the time and position plans; the async plan's "
            "detectors run on their own clock"
        )
    # Refuse impossible timing before starting anything (the plans check again);
    # a detector's period, if not given, is picked once its readout is known.
    pick_period = period is None and detector
    if not pick_period:
        period = DEFAULT_PERIOD if period is None else period
        seq_timing(frames, period, exposure if plan != "async" else None)
    base = (
        Path(data_dir)
        if data_dir
        else Path(tempfile.mkdtemp(prefix="panda-flyscan-demo-"))
    )
    panda_dir = (base / "panda").resolve()
    panda_dir.mkdir(parents=True, exist_ok=True)
    with (
        _beamline(prefix, attach) as variables,
        TiledService(base / "tiled", readable=[panda_dir]) as tiled,
    ):
        print(f"Tiled serving at {tiled.uri} (API key {tiled.api_key!r})")
        RE = RunEngine({})
        if progress:
            install_progress_bar(RE)
        writer = subscribe_tiled_writer(
            RE,
            tiled.uri,
            tiled.api_key,
            external_dirs=[panda_dir],
            journal_dir=base / "journal",
        )
        try:
            bl = simulated_beamline_devices(
                panda_dir,
                panda_prefix=variables["PANDA_PREFIX"],
                motor_pv=variables["MOTOR_PV"],
                detector_prefix=variables["DETECTOR_PREFIX"],
            )
            if period is None:
                deadtime = call_in_bluesky_event_loop(
                    _deadtime(bl.detectors["det"]), timeout=10
                )
                period = fitting_period(deadtime, exposure)
                print(
                    f"Period {period * 1e3:g} ms: fits det's {deadtime * 1e3:g} ms "
                    "readout after the exposure (--period to choose another)"
                )
                seq_timing(frames, period, exposure)
            started = time.monotonic()
            try:
                with _quiet_run_engine_log(), stop_flyscans_on_signals(RE):
                    (uid,) = RE(
                        _demo_plan(plan, bl, frames, period, exposure, detector)
                    )  # type: ignore[misc]
            except RunEngineInterrupted as exc:
                # Ctrl-C twice or SIGTERM: the plan closed the run ("abort").
                if RE.state != "idle":
                    RE.halt()
                name = interrupting_signal() or "Ctrl-C"
                raise DemoInterrupted(
                    name,
                    f"stopped by {name}: the run was closed (exit status abort) "
                    f"with the rows captured; data kept in {base}",
                ) from exc
            wall = time.monotonic() - started
        finally:
            if writer.token is not None:
                RE.unsubscribe(writer.token)
            writer.close()
            # Close CA channels while the simulated IOCs still answer, so
            # libca has no circuit to report lost when they stop.
            with contextlib.suppress(Exception):
                call_in_bluesky_event_loop(_close_ca_channels(), timeout=5)
            RE.loop.call_soon_threadsafe(RE.loop.stop)
        client = tiled.client()
        run = client[uid]
        data = read_stream(client, uid, "primary")
        [asset] = external_assets(client, uid, "primary", "trigger_time")
        start = run.metadata["start"]
        stop = run.metadata["stop"]
        _print_summary(plan, uid, data, asset.path, start, stop, wall, tiled.uri)
        picture = demo_png(data, start, stop, base / f"demo-{uid[:8]}.png")
        print(f"  picture    : {picture}" if picture else _NO_MATPLOTLIB)
    print(f"Data kept in {base}; serve it again with:")
    print(f"  panda-flyscan tiled serve --data-dir {base / 'tiled'} \\")
    print(f"      --readable {panda_dir}")
    return uid


_NO_MATPLOTLIB = (
    "  picture    : none (matplotlib is missing: pip install 'panda-flyscan[view]')"
)


def fitting_period(deadtime: float, exposure: float | None) -> float:
    """The shortest period, in whole 0.1 ms, that fits the exposure (given, or
    half the period) and then ``deadtime``, with 5% to spare; at least
    :data:`DEFAULT_PERIOD`."""
    needed = 2 * deadtime if exposure is None else exposure + deadtime
    step = 1e-4
    # round() first: 2.1e-3 / 1e-4 is 21.000000000000004, not 21.
    steps = float(np.ceil(round(needed * 1.05 / step, 6)))
    return max(DEFAULT_PERIOD, round(steps * step, 9))


async def _deadtime(det: Any) -> float:
    _, deadtime = await det.get_trigger_deadtime()
    return float(deadtime or 0.0)


class _NoTraceback(logging.Filter):
    """Drops the traceback the RunEngine logs with "Run aborted": the error
    reaches the caller, which reports it (the command: its message alone)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


@contextlib.contextmanager
def _quiet_run_engine_log() -> Iterator[None]:
    from bluesky.log import logger

    quiet = _NoTraceback()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def demo_png(data: Any, start: Any, stop: Any, path: Path) -> Path | None:
    """A PNG of the run read back (``data``: the primary stream's Dataset):
    each captured field against time or position and, for a detector, a
    montage of its frames. None when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    from .view import Frame, LiveRun, montage, save_png

    run = LiveRun(dict(start), stop=dict(stop))
    images = []
    for name, var in data.data_vars.items():
        values = np.asarray(var)
        if values.ndim == 1:
            run.add_rows(str(name), 0, values)
        elif values.ndim >= 3 and len(values):
            tiled, picked = montage(values)
            label = f"{name}: {len(picked)} of {len(values)} frames, evenly spaced"
            images.append(Frame(label, -1, tiled))
    picture = run.picture()
    if images:
        picture = dataclasses.replace(picture, frames=tuple(images))
    return save_png(picture, path)


async def _close_ca_channels() -> None:
    from aioca import purge_channel_caches

    purge_channel_caches()


def _print_detector_summary(frames: np.ndarray, x: np.ndarray) -> None:
    """The detector's frames as Tiled serves them, and whether frame i shows
    the sample where the PandA captured row i's position."""
    from sim_ioc.detector import decode

    images = frames.reshape(-1, *frames.shape[-2:])
    shown = np.array([decode(image).position for image in images])
    apart = np.abs(shown - x[: len(shown)]).max() if len(shown) else 0.0
    print(
        f"  det        : {len(images)} frames of {images.shape[1]}x{images.shape[2]} "
        f"{images.dtype}; frame i was taken within {apart * 1e3:.3f} um of row i's x"
    )


def _print_summary(
    plan: str,
    uid: str,
    data: Any,
    path: Path,
    start: Any,
    stop: Any,
    wall: float,
    uri: str,
) -> None:
    t = np.asarray(data["trigger_time"])
    x = np.asarray(data["x"])
    print()
    print(f"Run {uid} ({start['plan_name']}, exit status {stop['exit_status']})")
    print(f"  in Tiled   : {uri.removesuffix('/api/v1')}/api/v1/metadata/{uid}")
    print(f"  HDF5 file  : {path}")
    print(
        f"  read back  : {len(t)} rows of {', '.join(sorted(map(str, data.data_vars)))}"
    )
    if len(t) > 1:
        spacing = np.diff(t)
        if "shape" in start:  # a map: frames within each line, not turnarounds
            points = int(start["shape"][-1])
            spacing = np.diff(t.reshape(-1, points), axis=1).ravel()
        print(
            f"  trigger_time spacing: {spacing.mean() * 1e6:.3f} us mean, "
            f"{np.ptp(spacing) * 1e9:.1f} ns peak-to-peak"
            + (" (within lines)" if "shape" in start else "")
        )
    print(f"  x (mm)     : {x.min():.3f} .. {x.max():.3f}")
    if "shape" in start:
        y = np.asarray(data["y"])
        print(
            f"  map        : {' x '.join(map(str, start['shape']))} (snaked "
            f"{start['snaking']}), y (mm) {y.min():.3f} .. {y.max():.3f}"
        )
    if "det" in data.data_vars:
        _print_detector_summary(np.asarray(data["det"]), x)
    planned = start.get("num_points", len(t)) * start["plan_args"].get(
        "period", start["plan_args"].get("sample_period", 0) or 0
    )
    ratio = f" ({wall / planned:.2f} x the acquisition time)" if planned else ""
    print(f"  wall time  : {wall:.2f} s{ratio}")
    print("Read it in Python:")
    print("  from tiled.client import from_uri")
    print(f"  client = from_uri({uri.removesuffix('/api/v1')!r}, api_key=...)")
    print(f"  client[{uid!r}]['primary'].read()")
