"""The benchmark suite: every measurement of ``panda-flyscan bench``.

One simulated beamline (simulator + real PandABlocks-ioc), one Tiled service
and one RunEngine writing into it (:class:`benchmarks.context.BenchContext`)
serve every measurement; each measurement is a function adding samples to
:class:`~benchmarks.stats.Figure` objects, registered in :data:`MEASUREMENTS`
(the names ``--only`` takes). :func:`run_suite` runs them, prints one table
(median, min, max and the number of runs of each figure, ratios measured side
by side), and writes ``results.json``, ``table.md`` and
``scan-efficiency.png`` to the output directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from panda_flyscan.app.bench.context import BenchContext
from panda_flyscan.app.bench.stats import (
    Figure,
    format_table,
    machine_info,
    pairwise_ratio,
    write_json,
)

__all__ = [
    "GROUPS",
    "MEASUREMENTS",
    "Budget",
    "Measurement",
    "Options",
    "Suite",
    "budget_for",
    "run_suite",
]

#: Table sections, in the order printed.
GROUPS = {
    "efficiency": "1. Scan efficiency: wall time / (N x period), writing into Tiled",
    "latency": "2. Data-available latency: stop document -> last frame in Tiled",
    "capture": "3. Capture throughput without overrun: simulator + IOC + HDF5",
    "storage": "4. Storage",
    "fixed": "5. Fixed costs",
}


# -- options and budget ------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What ``panda-flyscan bench`` was asked for."""

    quick: bool = False
    #: Repeats of every figure (None: the budget's per-figure defaults).
    repeats: int | None = None
    #: Measurement names to run (empty: all).
    only: tuple[str, ...] = ()
    output: Path = Path("bench-results")
    #: N of the efficiency figures (None: the budget's).
    sizes: tuple[int, ...] | None = None
    #: Trigger period of the efficiency figures (s).
    period: float = 1e-3
    #: Keep the HDF5 files, Tiled catalog and logs (else deleted at the end).
    keep_data: bool = False


@dataclass(frozen=True)
class Budget:
    """How many runs of what size each figure gets (``--quick`` or full)."""

    #: Simulated beamline start-ups (the shared one counts as the first).
    startup_repeats: int
    #: Device connects after the first.
    connect_repeats: int
    #: (N, repeats) of the efficiency figures.
    efficiency: tuple[tuple[int, int], ...]
    #: (N, repeats) of the step scan with motion (bp.scan of the motor).
    motor_scan: tuple[int, int]
    #: Captured field counts of the capture figure.
    capture_fields: tuple[int, ...]
    #: Rates tried (Hz), and seconds of capture at each.
    capture_rates: tuple[float, ...]
    capture_seconds: float
    capture_repeats: int
    #: Documents per run of the writer-overhead figures.
    events: int
    datums: int
    writer_repeats: int
    #: Rows of the read-back dataset and the period they are captured at.
    readback_rows: int
    readback_period: float
    readback_repeats: int


FULL = Budget(
    startup_repeats=3,
    connect_repeats=5,
    efficiency=((1_000, 3), (10_000, 3), (100_000, 1)),
    motor_scan=(100, 2),
    capture_fields=(4, 16),
    capture_rates=(250_000, 500_000, 1_000_000, 2_000_000, 4_000_000),
    capture_seconds=1.0,
    capture_repeats=2,
    events=2_000,
    datums=1_000,
    writer_repeats=3,
    readback_rows=1_000_000,
    readback_period=10e-6,
    readback_repeats=5,
)

QUICK = Budget(
    startup_repeats=2,
    connect_repeats=3,
    efficiency=((1_000, 3),),
    motor_scan=(20, 1),
    capture_fields=(4, 16),
    capture_rates=(250_000, 1_000_000),
    capture_seconds=0.5,
    capture_repeats=1,
    events=500,
    datums=300,
    writer_repeats=2,
    readback_rows=100_000,
    readback_period=10e-6,
    readback_repeats=3,
)


def budget_for(options: Options) -> Budget:
    """The budget for ``options``: quick or full, ``--repeats`` and sizes applied.

    ``--repeats R`` sets every figure's repeats, except that scans of 1e5
    points or more get R // 3 (at least 1): at 1 kHz each is 100 s or more.
    """
    budget = QUICK if options.quick else FULL
    repeats_of = dict(budget.efficiency)
    if options.sizes is not None:
        default = budget.efficiency[0][1]
        repeats_of = {n: repeats_of.get(n, default) for n in options.sizes}
    if options.repeats is not None:
        r = options.repeats
        if r < 1:
            raise ValueError(f"repeats must be at least 1, got {r}")
        repeats_of = {n: (max(1, r // 3) if n >= 100_000 else r) for n in repeats_of}
        budget = replace(
            budget,
            motor_scan=(budget.motor_scan[0], r),
            startup_repeats=r,
            connect_repeats=r,
            capture_repeats=r,
            writer_repeats=r,
            readback_repeats=r,
        )
    return replace(budget, efficiency=tuple(sorted(repeats_of.items())))


# -- the suite -------------------------------------------------------------------


def _n(n: int) -> str:
    return f"{n:,}"


def _hz(period: float) -> str:
    rate = 1 / period
    return f"{rate / 1000:g} kHz" if rate >= 1000 else f"{rate:g} Hz"


class Suite:
    """A run of the measurements: the shared context, the budget, the figures."""

    def __init__(
        self,
        ctx: BenchContext,
        budget: Budget,
        options: Options,
        log: Callable[[str], None] = print,
    ) -> None:
        self.ctx = ctx
        self.budget = budget
        self.options = options
        self.started = time.perf_counter()
        self._log = log
        self.figures: dict[str, Figure] = {}
        #: Flyscans measured, by N (figures 1, 2 and 5 share them).
        self.flyscans: dict[int, list[Any]] = {}

    def log(self, text: str) -> None:
        self._log(f"[{time.perf_counter() - self.started:7.1f} s] {text}")

    def figure(
        self, key: str, group: str, label: str, unit: str = "", **kwargs: Any
    ) -> Figure:
        """The figure ``key``, made on first use."""
        if key not in self.figures:
            self.figures[key] = Figure(
                key=key, group=GROUPS[group], label=label, unit=unit, **kwargs
            )
        return self.figures[key]

    def ordered(self) -> list[Figure]:
        """The figures by table section, in the order each was made."""
        order = list(GROUPS.values())
        return sorted(self.figures.values(), key=lambda f: order.index(f.group))

    # -- shared flyscans ---------------------------------------------------------

    def fly(self, n: int) -> Any:
        """One more flyscan of ``n`` frames at the period, into Tiled."""
        from panda_flyscan.app.bench.plans_bench import fly

        ctx = self.ctx
        with ctx.writing():
            result = fly(ctx.RE, ctx.beamline, ctx.client, n, self.options.period)
        self.flyscans.setdefault(n, []).append(result)
        return result

    def ensure_flyscans(self, n: int, repeats: int) -> list[Any]:
        """At least ``repeats`` flyscans of ``n`` frames (run if missing)."""
        self.warm_up()
        while len(self.flyscans.get(n, [])) < repeats:
            result = self.fly(n)
            self.log(f"flyscan N={_n(n)}: {result.wall:.2f} s")
        return self.flyscans[n][:repeats]

    _warm = False

    def warm_up(self) -> None:
        """One small flyscan and step scan first (connections, caches, the
        Tiled catalog's first run): not counted."""
        if self._warm:
            return
        from panda_flyscan.app.bench.plans_bench import fly, step

        ctx = self.ctx
        with ctx.writing():
            fly(ctx.RE, ctx.beamline, ctx.client, 100, self.options.period)
            step(ctx.RE, ctx.beamline, ctx.client, 100, self.options.period)
        self._warm = True
        self.log("warm-up flyscan and step scan done (not counted)")


# -- measurements -----------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    name: str
    group: str
    #: One paragraph for ``--help``.
    help: str
    run: Callable[[Suite], None]
    #: Figure keys it makes (for a placeholder if it fails before making them).
    keys: tuple[str, ...] = field(default=())


def measure_startup(s: Suite) -> None:
    """Simulated beamline start-up, repeated; the shared beamline's is the first."""
    from panda_flyscan.app.simulated.launcher import SimulatedBeamline

    fig = s.figure(
        "fixed.startup",
        "fixed",
        "simulated beamline start-up (simulator + IOC, PVs answer)",
        "s",
    )
    s.ctx.sim  # noqa: B018 - the shared beamline: the first sample
    fig.add(s.ctx.startup_seconds["beamline"])
    s.log(f"beamline start-up {fig.samples[-1]:.2f} s (the shared one)")
    for i in range(1, s.budget.startup_repeats):
        prefix = f"BENCHUP{i}"
        beamline = SimulatedBeamline(prefix, log_dir=s.ctx.log_dir / prefix)
        started = time.perf_counter()
        with beamline:
            fig.add(time.perf_counter() - started)
        s.log(f"beamline start-up {fig.samples[-1]:.2f} s")
    tiled = s.figure("fixed.tiled", "fixed", "Tiled service start-up", "s")
    s.ctx.tiled  # noqa: B018
    tiled.add(s.ctx.startup_seconds["tiled"])


def measure_connect(s: Suite) -> None:
    """Device connect: the first of the process, then repeated."""
    cold = s.figure(
        "fixed.connect.first",
        "fixed",
        "device connect, first in the process",
        "s",
    )
    s.ctx.beamline  # noqa: B018
    cold.add(s.ctx.startup_seconds["connect"])
    warm = s.figure(
        "fixed.connect.again",
        "fixed",
        "device connect, again",
        "s",
    )
    for _ in range(s.budget.connect_repeats):
        started = time.perf_counter()
        s.ctx.connect()
        warm.add(time.perf_counter() - started)
    s.log(f"device connect: first {cold.samples[0]:.2f} s, again {warm.median:.2f} s")


def measure_efficiency(s: Suite) -> None:
    """Flyscan and step scan of the same N, alternately in each repeat."""
    from panda_flyscan.app.bench.plans_bench import step

    period = s.options.period
    s.warm_up()
    ctx = s.ctx
    for n, repeats in s.budget.efficiency:
        ideal = n * period
        fly_fig = s.figure(
            f"efficiency.fly.{n}",
            "efficiency",
            f"flyscan (time_scan), N={_n(n)} at {_hz(period)}",
            "x",
            details={"n": n, "period": period, "wall_s": []},
        )
        step_fig = s.figure(
            f"efficiency.step.{n}",
            "efficiency",
            f"step scan (bp.count), N={_n(n)} at {_hz(period)}",
            "x",
            details={"n": n, "period": period, "wall_s": []},
        )
        ratio = s.figure(
            f"efficiency.ratio.{n}",
            "efficiency",
            f"flyscan / step-scan wall time, N={_n(n)}",
            ratio=True,
        )
        for r in range(repeats):
            # Reuse flyscans already run for N (e.g. by the latency figure)
            # only if they were paired; otherwise run both now, side by side.
            result = s.fly(n)
            with ctx.writing():
                step_wall = step(ctx.RE, ctx.beamline, ctx.client, n, period)
            fly_fig.add(result.wall / ideal)
            step_fig.add(step_wall / ideal)
            fly_fig.details["wall_s"].append(result.wall)
            step_fig.details["wall_s"].append(step_wall)
            s.log(
                f"N={_n(n)} repeat {r + 1}/{repeats}: flyscan {result.wall:.2f} s, "
                f"step scan {step_wall:.2f} s"
            )
        ratio.samples = pairwise_ratio(fly_fig.samples, step_fig.samples)
    n, repeats = s.budget.motor_scan
    if n and repeats:
        measure_motor_scan(s, n, repeats)


def measure_motor_scan(s: Suite, n: int, repeats: int) -> None:
    """A step scan that moves: bp.scan of the encoder over the motor, n points."""
    import bluesky.plans as bp

    from panda_flyscan.storage import read_events

    ctx = s.ctx
    period = s.options.period
    motor = ctx.beamline.motors.get("x")
    if motor is None:
        return
    fig = s.figure(
        f"efficiency.scan.{n}",
        "efficiency",
        f"step scan with motion (bp.scan of x), N={_n(n)}",
        "x",
        note="each point: move the motor 1 um, wait for it, read INENC1.VAL",
        details={"n": n, "period": period, "wall_s": []},
    )
    encoder = ctx.beamline.panda.inenc[1].val  # type: ignore[attr-defined]
    for r in range(repeats):
        with ctx.writing():
            started = time.perf_counter()
            plan = bp.scan([encoder], motor, 0.0, (n - 1) * 0.001, n)
            (uid,) = ctx.RE(plan)  # type: ignore[misc]
            wall = time.perf_counter() - started
        rows = len(read_events(ctx.client, uid))
        assert rows == n, f"{rows} events in Tiled for {n} points"
        fig.add(wall / (n * period))
        fig.details["wall_s"].append(wall)
        s.log(f"bp.scan N={_n(n)} repeat {r + 1}/{repeats}: {wall:.2f} s")


def measure_latency(s: Suite) -> None:
    """From the flyscans of figure 1 (run here if figure 1 was not)."""
    for n, repeats in s.budget.efficiency:
        fig = s.figure(
            f"latency.{n}",
            "latency",
            f"flyscan N={_n(n)}",
            "ms",
        )
        results = s.ensure_flyscans(n, repeats)
        for result in results:
            fig.add(result.latency * 1e3)
        fig.details["writer_wait_ms"] = [r.writer_wait * 1e3 for r in results]
        fig.details["read_ms"] = [r.read * 1e3 for r in results]


def measure_first_trigger(s: Suite) -> None:
    """From every flyscan of figure 1 (N=1e3 ones run here if none were)."""
    if not s.flyscans:
        n, repeats = s.budget.efficiency[0]
        s.ensure_flyscans(n, repeats)
    results = [r for runs in s.flyscans.values() for r in runs]
    fig = s.figure(
        "fixed.first-trigger",
        "fixed",
        "time_scan call -> first trigger",
        "ms",
    )
    for result in results:
        fig.add(result.first_trigger * 1e3)
    phases = results[0].phases.keys()
    fig.details["phases_median_ms"] = {
        name: statistics.median(r.phases[name] for r in results) * 1e3
        for name in phases
    }


def measure_readback(s: Suite) -> None:
    """A PandA dataset of ``readback_rows`` rows captured through the real IOC,
    read whole through Tiled and with h5py, alternately."""
    import numpy as np

    from panda_flyscan.app.bench.storage_bench import read_h5py, read_tiled
    from panda_flyscan.storage import external_assets

    b = s.budget
    rows = b.readback_rows
    s.warm_up()
    from panda_flyscan.app.bench.plans_bench import fly

    with s.ctx.writing():
        result = fly(s.ctx.RE, s.ctx.beamline, s.ctx.client, rows, b.readback_period)
    s.log(
        f"captured {_n(rows)} rows at {1 / b.readback_period:g} Hz through the IOC "
        f"for the read-back: {result.wall:.1f} s"
    )
    [asset] = external_assets(s.ctx.client, result.uid, "primary", "trigger_time")
    import h5py

    with h5py.File(asset.path, "r") as handle:
        names = [str(n) for n in handle if isinstance(handle[str(n)], h5py.Dataset)]
    reference = read_h5py(asset.path, names)
    nbytes = sum(a.nbytes for a in reference.values())
    via_tiled = read_tiled(s.ctx.client, result.uid, names)
    for name in names:
        assert np.array_equal(via_tiled[name], reference[name]), name
    label = f"{_n(rows)} PandA rows ({len(names)} fields, {nbytes / 1e6:.0f} MB)"
    tiled_fig = s.figure(
        "storage.read.tiled",
        "storage",
        f"read through Tiled, {label}",
        "MB/s",
        details={"rows": rows, "fields": names, "bytes": nbytes},
    )
    h5_fig = s.figure(
        "storage.read.h5py",
        "storage",
        "read with h5py, the same file",
        "MB/s",
    )
    ratio = s.figure(
        "storage.read.ratio",
        "storage",
        "Tiled / h5py throughput",
        ratio=True,
    )
    for _ in range(b.readback_repeats):
        t0 = time.perf_counter()
        read_tiled(s.ctx.client, result.uid, names)
        t1 = time.perf_counter()
        read_h5py(asset.path, names)
        t2 = time.perf_counter()
        tiled_fig.add(nbytes / 1e6 / (t1 - t0))
        h5_fig.add(nbytes / 1e6 / (t2 - t1))
    ratio.samples = pairwise_ratio(tiled_fig.samples, h5_fig.samples)
    s.log(
        f"read-back of {_n(rows)} rows: Tiled {tiled_fig.median:.0f} MB/s, "
        f"h5py {h5_fig.median:.0f} MB/s"
    )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: The lowest capture rate the search goes down to (Hz).
MIN_CAPTURE_RATE = 10_000


def _capture_problem(result: dict[str, Any], asked: float) -> str:
    """Why a capture result does not count as sustained though it may say so:
    the IOC's file must hold at least the frames asked for (it may hold more:
    the clock runs until the PandA is disarmed after the capture)."""
    in_file = result.get("frames_in_file")
    if in_file is not None and in_file < 0.98 * asked:
        return f"only {in_file} of {asked:.0f} frames asked for reached the file"
    return ""


class CaptureAPIMissing(RuntimeError):
    """benchmarks/sim_bench.py lacks a function the capture figure needs."""


def _sim_bench_api() -> tuple[Any, Any, Any]:
    from panda_flyscan.app.bench import sim_bench

    names = ("ioc_capture_rate", "highest_sustained", "FIELDS")
    found = [getattr(sim_bench, name, None) for name in names]
    missing = [n for n, f in zip(names, found, strict=True) if f is None]
    if missing:
        raise CaptureAPIMissing(
            f"benchmarks/sim_bench.py has no {', '.join(missing)} yet"
        )
    return found[0], found[1], found[2]


def measure_capture(s: Suite) -> None:
    """Highest sustained capture rate through the IOC into HDF5, by field count;
    the field counts alternate within each repeat (side by side)."""
    ioc_capture_rate, highest_sustained, fields = _sim_bench_api()
    b = s.budget
    env = s.ctx.sim.env
    s.ctx.beamline  # noqa: B018 - the loop's CA/PVA contexts point at the beamline
    data_dir = s.ctx.work_dir / "capture"
    figs: dict[int, tuple[Figure, Figure]] = {}
    for n_fields in b.capture_fields:
        if n_fields not in fields:
            raise CaptureAPIMissing(f"sim_bench.FIELDS has no {n_fields}-field set")
        figs[n_fields] = (
            s.figure(
                f"capture.{n_fields}.frames",
                "capture",
                f"{n_fields} captured fields",
                "frames/s",
                note="highest rate of the grid with real-time >= 0.98 and no "
                "overrun; frames counted in the IOC's HDF5 file",
                details={"rates_tried": list(b.capture_rates), "runs": []},
            ),
            s.figure(
                f"capture.{n_fields}.mb",
                "capture",
                f"{n_fields} captured fields",
                "MB/s",
            ),
        )

    pids = {p.name: p.pid for p in s.ctx.sim.processes if p.pid is not None}

    def measure(rate_hz: float, n_fields: int, where: Path) -> dict[str, Any]:
        before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        result = dict(
            s.ctx.in_loop(
                ioc_capture_rate(env, rate_hz, b.capture_seconds, n_fields, where),
                timeout=b.capture_seconds * 10 + 60,
            )
        )
        wall = time.perf_counter() - started
        # CPU of the simulator and the IOC while it ran, in cores.
        result["cpu"] = {
            name: round((_cpu_seconds(pid) - before[name]) / wall, 2)
            for name, pid in pids.items()
        }
        problem = _capture_problem(result, rate_hz * b.capture_seconds)
        if problem:
            # Not sustained, whatever the rate says: the file is the proof.
            result["realtime"] = 0.0
            result["problem"] = problem
        s.log(
            f"  {n_fields} fields at {rate_hz:g} Hz: {result['frames_per_s']:.0f} "
            f"frames/s, real-time {result['realtime']:.3f}, "
            f"overrun {result.get('overrun')}, "
            f"{result.get('frames_in_file')} frames in the file, CPU "
            + ", ".join(f"{k} {v:.0%}" for k, v in result["cpu"].items())
            + (f" ({problem})" if problem else "")
        )
        return result

    def search(n_fields: int, where: Path) -> dict[str, Any]:
        """The grid upward; if not even its lowest rate holds, downward."""
        rates = list(b.capture_rates)
        out = highest_sustained(
            lambda rate: measure(rate, n_fields, where), rates, threshold=0.98
        )
        lower = min(rates) / 4
        while out["best"] is None and lower >= MIN_CAPTURE_RATE:
            s.log(f"  {n_fields} fields: trying below the grid, {lower:g} Hz")
            more = highest_sustained(
                lambda rate: measure(rate, n_fields, where), [lower], threshold=0.98
            )
            out = {**more, "results": out["results"] + more["results"]}
            lower /= 4
        return out

    for r in range(b.capture_repeats):
        for n_fields, (rate_fig, mb_fig) in figs.items():
            # A directory per run: the IOC writes bench_<fields>_<rate>.h5.
            where = data_dir / f"{n_fields}-{r}"
            where.mkdir(parents=True)
            out = search(n_fields, where)
            best = out["best"]
            rate_fig.details["runs"].append(out["results"])
            if best is None:
                raise RuntimeError(
                    f"{n_fields} fields: no rate from {MIN_CAPTURE_RATE:g} to "
                    f"{max(b.capture_rates):g} Hz was sustained without overrun"
                )
            rate_fig.add(best["frames_per_s"])
            mb_fig.add(best["mb_per_s"])
            failed = [
                x["rate_hz"] for x in out["results"] if x["rate_hz"] > best["rate_hz"]
            ]
            s.log(
                f"{n_fields} fields: {best['frames_per_s']:.0f} frames/s, "
                f"{best['mb_per_s']:.2f} MB/s sustained (at {best['rate_hz']:g} Hz"
                + (
                    f"; {min(failed):g} Hz was not)"
                    if failed
                    else "; the highest tried)"
                )
            )
    if 4 in figs and 16 in figs:
        ratio = s.figure(
            "capture.ratio",
            "capture",
            "16 / 4 fields, frames/s sustained",
            ratio=True,
        )
        ratio.samples = pairwise_ratio(figs[16][0].samples, figs[4][0].samples)


def measure_writer(s: Suite) -> None:
    """TiledWriter and DurableTiledWriter overhead per Event and per StreamDatum."""
    import bluesky.plans as bp
    from bluesky_tiled_plugins import TiledWriter
    from ophyd.sim import hw

    from panda_flyscan.app.bench.storage_bench import (
        collect_plan,
        write_datum_file,
        writer_overhead,
    )
    from panda_flyscan.storage import DurableTiledWriter

    b = s.budget
    ctx = s.ctx
    client = ctx.client
    RE = ctx.RE
    journals = ctx.work_dir / "journals"

    def journal() -> Path:
        return journals / f"j-{time.monotonic_ns()}"

    writers: dict[str, Callable[[], Any]] = {
        "TiledWriter": lambda: TiledWriter(client),
        "DurableTiledWriter": lambda: DurableTiledWriter(client, journal_dir=journal()),
    }
    det = hw().det
    external = ctx.work_dir / "external"
    external.mkdir(exist_ok=True)
    device = write_datum_file(external / "datums.h5", b.datums)
    kinds: dict[str, tuple[str, int, Callable[[int], Any], str]] = {
        "event": (
            "Event",
            b.events,
            lambda n: bp.count([det], n),
            "bp.count([ophyd.sim det], N), no delay",
        ),
        "datum": (
            "StreamDatum",
            b.datums,
            lambda n: collect_plan(device, n),
            "a run of N collects, one StreamDatum (1 row of 4x4 u2) each",
        ),
    }
    # A small untimed run of each first: the writers' and Tiled's first-use costs.
    for _, _, plan_for, _ in kinds.values():
        writer_overhead(RE, lambda p=plan_for: p(20), 20, writers, 1)
    for kind, (doc, n, plan_for, how) in kinds.items():
        result = writer_overhead(
            RE, lambda p=plan_for, n=n: p(n), n, writers, b.writer_repeats
        )
        figs = {}
        for name in writers:
            figs[name] = s.figure(
                f"storage.{kind}.{name.lower()}",
                "storage",
                f"{name} overhead per {doc} ({_n(n)}/run)",
                "us",
                note=f"{how}; (time with the writer - time without) / N",
            )
            figs[name].samples = [x * 1e6 for x in result[name]]
            figs[name].details["bare_us_per_doc"] = [x * 1e6 for x in result["bare"]]
        ratio = s.figure(
            f"storage.{kind}.ratio",
            "storage",
            f"DurableTiledWriter / TiledWriter, per {doc}",
            ratio=True,
        )
        ratio.samples = pairwise_ratio(
            figs["DurableTiledWriter"].samples, figs["TiledWriter"].samples
        )
        s.log(
            f"writer overhead per {doc}: "
            + ", ".join(f"{k} {f.median:.0f} us" for k, f in figs.items())
        )


MEASUREMENTS: dict[str, Measurement] = {
    m.name: m
    for m in [
        Measurement(
            "startup",
            "fixed",
            "Simulated beamline start-up: from launching the simulator (PandA, "
            "motor, detector) and the real PandABlocks-ioc until the IOC's PVs "
            "answer over CA and PVA; repeated on fresh beamlines. Also the Tiled "
            "service's start-up (once).",
            measure_startup,
            ("fixed.startup",),
        ),
        Measurement(
            "connect",
            "fixed",
            "Device connect: connect_simulated_beamline (PandA through the IOC, "
            "motor, detector), the first of the process and then repeated.",
            measure_connect,
            ("fixed.connect.first",),
        ),
        Measurement(
            "efficiency",
            "efficiency",
            "Scan efficiency: wall time of RE(time_scan(panda, N, period)) / (N x "
            "period), writing into Tiled; and of a step scan bp.count([INENC1.VAL], "
            "N, delay=period) on the same scale; their ratio, pairwise per repeat. "
            "N = 1e3, 1e4, 1e5 at 1 kHz (--quick: 1e3).",
            measure_efficiency,
            ("efficiency.fly.1000",),
        ),
        Measurement(
            "latency",
            "latency",
            "Data-available latency: from the run's stop document (the plan "
            "closing the run) to the last frame readable through Tiled, for each "
            "flyscan of figure 1.",
            measure_latency,
            ("latency.1000",),
        ),
        Measurement(
            "first-trigger",
            "fixed",
            "Plan prepare to first trigger: from calling RE(time_scan(...)) to the "
            "sequencer's kickoff done (staged, settings written, SEQ table and "
            "PandA armed, file open); every flyscan of figure 1.",
            measure_first_trigger,
            ("fixed.first-trigger",),
        ),
        Measurement(
            "readback",
            "storage",
            "Read-back: a 1e6-row PandA dataset (--quick: 1e5) captured at 100 kHz "
            "through the real IOC, every field read whole through Tiled and with "
            "h5py on the file, alternately; MB/s and their ratio.",
            measure_readback,
            ("storage.read.tiled",),
        ),
        Measurement(
            "capture",
            "capture",
            "Capture throughput: the highest PandA capture rate (frames/s, MB/s) "
            "the simulator + IOC + HDF5 chain sustains without overrun, with 4 and "
            "16 captured fields (benchmarks/sim_bench.py).",
            measure_capture,
            ("capture.4.frames",),
        ),
        Measurement(
            "writer",
            "storage",
            "Writer overhead: extra seconds per Event (bp.count) and per "
            "StreamDatum document of bluesky-tiled-plugins' TiledWriter and the "
            "package's DurableTiledWriter, against the same run with no writer "
            "measured just before; their ratio.",
            measure_writer,
            ("storage.event.tiledwriter",),
        ),
    ]
}


def selected(only: Sequence[str]) -> list[Measurement]:
    """The measurements ``only`` names (all if empty), in the suite's order."""
    unknown = sorted(set(only) - set(MEASUREMENTS))
    if unknown:
        raise ValueError(
            f"unknown measurement(s) {', '.join(unknown)}; "
            f"choose from {', '.join(MEASUREMENTS)}"
        )
    return [m for name, m in MEASUREMENTS.items() if not only or name in only]


def _interrupted(err: BaseException) -> bool:
    """Whether ``err`` is Ctrl-C reaching us through the RunEngine (which turns
    a KeyboardInterrupt during a plan into a pause, RunEngineInterrupted)."""
    from bluesky.utils import RunEngineInterrupted

    return isinstance(err, RunEngineInterrupted)


@contextlib.contextmanager
def _work_dir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="panda-flyscan-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"Data, catalog and logs kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def run_suite(options: Options, log: Callable[[str], None] = print) -> list[Figure]:
    """Run the selected measurements; print the table; write the results.

    A measurement that fails is reported (its figures marked failed, the
    error under the table) and the others still run; Ctrl-C stops everything
    started and writes what was measured so far.
    """
    budget = budget_for(options)
    measurements = selected(options.only)
    output = options.output
    output.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "mode": "quick" if options.quick else "full",
        "options": {
            "quick": options.quick,
            "repeats": options.repeats,
            "only": list(options.only),
            "period": options.period,
        },
        "budget": {k: v for k, v in budget.__dict__.items() if not k.startswith("_")},
        "machine": machine_info(),
    }
    started = time.perf_counter()
    interrupted = False
    with _work_dir(options.keep_data) as work, BenchContext(work) as ctx:
        suite = Suite(ctx, budget, options, log)
        log(
            f"panda-flyscan bench ({meta['mode']}): "
            f"{', '.join(m.name for m in measurements)}"
        )
        try:
            for m in measurements:
                suite.log(f"-- {m.name}")
                try:
                    m.run(suite)
                except Exception as err:
                    if _interrupted(err):
                        raise KeyboardInterrupt from err
                    message = f"{type(err).__name__}: {err}"
                    suite.log(f"{m.name} FAILED: {message}")
                    with (output / "errors.log").open("a") as errors:
                        errors.write(f"== {m.name}\n{traceback.format_exc()}\n")
                    made = [f for f in suite.figures.values() if not f.samples]
                    for key in m.keys:
                        if key not in suite.figures:
                            made.append(suite.figure(key, m.group, m.name))
                    for fig in made:
                        fig.error = message
                    if not made:
                        suite.figure(f"{m.name}.error", m.group, m.name).error = message
        except KeyboardInterrupt:
            interrupted = True
            suite.log("interrupted: stopping what was started")
        figures = suite.ordered()
    wall = time.perf_counter() - started
    meta["wall_seconds"] = round(wall, 1)
    meta["interrupted"] = interrupted
    meta["machine"]["loadavg_end"] = machine_info().get("loadavg")
    _report(figures, meta, output, log)
    return figures


def _report(
    figures: Sequence[Figure],
    meta: dict[str, Any],
    output: Path,
    log: Callable[[str], None],
) -> None:
    from panda_flyscan.app.bench.plot import plot_efficiency

    machine = meta["machine"]
    table = format_table(figures)
    heading = (
        f"panda-flyscan bench, {meta['mode']} mode, {meta['wall_seconds']:.0f} s wall"
        f"{' (interrupted)' if meta['interrupted'] else ''}; "
        f"{machine.get('nproc')} CPUs ({machine.get('cpu_model', '?')}), "
        f"Python {machine['python']}, load {machine.get('loadavg')} at start, "
        f"{machine.get('loadavg_end')} at end"
    )
    log("")
    log(heading)
    log("")
    log(table)
    (output / "table.md").write_text(f"{heading}\n\n{table}\n")
    path = write_json(output / "results.json", figures, meta=meta)
    png = plot_efficiency(
        figures,
        output / "scan-efficiency.png",
        title=f"Scan efficiency, into Tiled ({machine.get('nproc')} CPUs, "
        f"{meta['mode']} run)",
    )
    log("")
    log(f"Wrote {path}, {output / 'table.md'}" + (f", {png}" if png else ""))
