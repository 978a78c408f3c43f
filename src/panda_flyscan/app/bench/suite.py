"""The benchmark suite: every measurement of ``panda-flyscan bench``.

One simulated beamline (simulator + real PandABlocks-ioc), one Tiled service
and one RunEngine writing into it (:class:`~.context.BenchContext`) serve
every measurement; each measurement is a function of the :class:`Suite`
adding samples to :class:`~.stats.Figure` objects, registered in
:data:`MEASUREMENTS` (the names ``--only`` takes). :func:`run_suite` runs
them, prints one table (median, min, max and the number of runs of each
figure, ratios measured side by side), and writes ``results.json``,
``table.md`` and ``scan-efficiency.png`` to the output directory.

The measurements, by what they measure: :mod:`~.measure_scans` (efficiency,
latency, first trigger), :mod:`~.measure_map` (the 2-D map),
:mod:`~.measure_capture`, :mod:`~.measure_storage` (writers, read-back),
:mod:`~.measure_view` (the live view's lag), :mod:`~.measure_soak` (many
scans: what grows),
:mod:`~.measure_startup` (start-up, connect).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from panda_flyscan.app.bench import (
    measure_bus,
    measure_capture,
    measure_map,
    measure_scans,
    measure_soak,
    measure_startup,
    measure_storage,
    measure_stream,
    measure_view,
)
from panda_flyscan.app.bench.budget import FULL, QUICK, Budget, Options, budget_for
from panda_flyscan.app.bench.context import BenchContext
from panda_flyscan.app.bench.stats import (
    Figure,
    format_count,
    format_table,
    machine_info,
    write_json,
)

if TYPE_CHECKING:
    from panda_flyscan.app.bench.plans_bench import FlyResult

__all__ = [
    "FULL",
    "GROUPS",
    "MEASUREMENTS",
    "QUICK",
    "Budget",
    "Measurement",
    "Options",
    "Suite",
    "budget_for",
    "run_suite",
    "selected",
]

#: Step (mm) between the points of the 1-D comparison (10 mm/s flown at 1 kHz).
LINE_STEP = 0.01

#: Table sections, in the order printed.
GROUPS = {
    "efficiency": "1. Scan efficiency: wall time / (N x period), writing into Tiled",
    "latency": "2. Data-available latency: stop document -> last frame in Tiled",
    "capture": "3. Capture throughput without overrun: simulator + IOC + HDF5",
    "storage": "4. Storage",
    "fixed": "5. Fixed costs",
    "map": "6. 2-D snake map: spec_scan (one run) vs bp.grid_scan, into Tiled",
    "soak": "7. Soak: many flyscans in one session, and what grows",
    "bus": "8. Document bus: RunEngine -> NATS JetStream -> writer service -> Tiled",
    "stream": "9. Flyscans of any length (streamed SEQ tables) and pauses",
}


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
        self._warm = False
        self.figures: dict[str, Figure] = {}
        #: Flyscans measured, by N (figures 1, 2 and 5 share them).
        self.flyscans: dict[int, list[FlyResult]] = {}

    def log(self, text: str) -> None:
        """Log ``text``, prefixed with the seconds since the suite started."""
        self._log(f"[{time.perf_counter() - self.started:7.1f} s] {text}")

    def figure(
        self, key: str, group: str, label: str, unit: str = "", **kwargs: Any
    ) -> Figure:
        """The figure ``key`` (in the :data:`GROUPS` section ``group``), made
        on first use."""
        if key not in self.figures:
            self.figures[key] = Figure(
                key=key, group=GROUPS[group], label=label, unit=unit, **kwargs
            )
        return self.figures[key]

    def ordered(self) -> list[Figure]:
        """The figures by table section, in the order each was made."""
        order = list(GROUPS.values())
        return sorted(self.figures.values(), key=lambda f: order.index(f.group))

    # -- scans into Tiled ----------------------------------------------------------

    def flyscan(self, n: int, period: float) -> FlyResult:
        """A flyscan of ``n`` frames at ``period``, into Tiled (not kept)."""
        from panda_flyscan.app.bench.plans_bench import fly

        ctx = self.ctx
        with ctx.writing():
            return fly(ctx.RE, ctx.beamline, ctx.client, n, period)

    def line_step(self, n: int) -> float:
        """Wall time of the 1-D step scan, ``bp.scan([det], x, ...)`` of ``n``
        points at the period's exposure, into Tiled."""
        from panda_flyscan.app.bench.plans_bench import line_step

        ctx = self.ctx
        with ctx.writing():
            return line_step(
                ctx.RE, ctx.beamline, ctx.client, n, self.options.period, LINE_STEP
            )

    def line_fly(self, n: int) -> float:
        """Wall time of spec_scan flying the same ``n`` points as
        :meth:`line_step` at the period, with det, into Tiled."""
        from panda_flyscan.app.bench.plans_bench import line_fly

        ctx = self.ctx
        with ctx.writing():
            return line_fly(
                ctx.RE, ctx.beamline, ctx.client, n, self.options.period, LINE_STEP
            )

    def fly(self, n: int) -> FlyResult:
        """One more flyscan of ``n`` frames at the period, kept in :attr:`flyscans`."""
        result = self.flyscan(n, self.options.period)
        self.flyscans.setdefault(n, []).append(result)
        return result

    def ensure_flyscans(self, n: int, repeats: int) -> list[FlyResult]:
        """At least ``repeats`` flyscans of ``n`` frames (run if missing)."""
        self.warm_up()
        while len(self.flyscans.get(n, [])) < repeats:
            result = self.fly(n)
            self.log(f"flyscan N={format_count(n)}: {result.wall:.2f} s")
        return self.flyscans[n][:repeats]

    def warm_up(self) -> None:
        """A small time_scan, spec_scan line and step scan first (connections,
        the detector's first file, the Tiled catalog's first run): not counted."""
        if self._warm:
            return
        self.flyscan(100, self.options.period)
        self.line_fly(20)
        self.line_step(3)
        self._warm = True
        self.log("warm-up time_scan, spec_scan and bp.scan done (not counted)")


@dataclass(frozen=True)
class Measurement:
    """One entry of :data:`MEASUREMENTS`: a name ``--only`` takes, and how."""

    name: str
    group: str
    #: One paragraph for ``--help``.
    help: str
    run: Callable[[Suite], None]
    #: Figure keys it makes (for a placeholder if it fails before making them).
    keys: tuple[str, ...] = field(default=())


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
            measure_startup.startup,
            ("fixed.startup",),
        ),
        Measurement(
            "connect",
            "fixed",
            "Device connect: connect_simulated_beamline (PandA through the IOC, "
            "motor, detector), the first of the process and then repeated.",
            measure_startup.connect,
            ("fixed.connect.first",),
        ),
        Measurement(
            "efficiency",
            "efficiency",
            "Scan efficiency: wall time of RE(time_scan(panda, N, period)) / (N x "
            "period), writing into Tiled, N = 1e3, 1e4, 1e5 at 1 kHz (--quick: "
            "1e3); then a line of N = 100 points (--quick: 20) as bp.scan([det], "
            "x, ...) and as spec_scan(panda, Fly(period @ Line(x, ...)), "
            "detectors=[det]) on the same scale, and their ratio pairwise.",
            measure_scans.efficiency,
            ("efficiency.fly.1000",),
        ),
        Measurement(
            "latency",
            "latency",
            "Data-available latency: from the run's stop document (the plan "
            "closing the run) to the last frame readable through Tiled, for each "
            "flyscan of figure 1.",
            measure_scans.latency,
            ("latency.1000",),
        ),
        Measurement(
            "first-trigger",
            "fixed",
            "Plan prepare to first trigger: from calling RE(time_scan(...)) to the "
            "sequencer's kickoff done (staged, settings written, SEQ table and "
            "PandA armed, file open); every flyscan of figure 1.",
            measure_scans.first_trigger,
            ("fixed.first-trigger",),
        ),
        Measurement(
            "readback",
            "storage",
            "Read-back: a 1e6-row PandA dataset (--quick: 1e5) captured at 100 kHz "
            "through the real IOC, every field read whole through Tiled and with "
            "h5py on the file, alternately; MB/s and their ratio.",
            measure_storage.readback,
            ("storage.read.tiled",),
        ),
        Measurement(
            "liveview",
            "storage",
            "Live-view lag: time_scan(panda, 1e4, 1 ms) (--quick: 3e3) into Tiled "
            "with a headless live view following it through Tiled; per row, from "
            "the IOC's capture (DATA:NUM_CAPTURED) and from the StreamDatum's "
            "emission to the view drawing it: median, 95th percentile, last row.",
            measure_view.live_view,
            ("view.captured.median",),
        ),
        Measurement(
            "capture",
            "capture",
            "Capture throughput: the highest PandA capture rate (frames/s, MB/s) "
            "the simulator + IOC + HDF5 chain sustains without overrun, with 4 and "
            "16 captured fields (ioc_capture.py).",
            measure_capture.capture,
            ("capture.4.frames",),
        ),
        Measurement(
            "writer",
            "storage",
            "Writer overhead: extra seconds per Event (bp.count) and per "
            "StreamDatum document of bluesky-tiled-plugins' TiledWriter and the "
            "package's DurableTiledWriter, against the same run with no writer "
            "measured just before; their ratio.",
            measure_storage.writer,
            ("storage.event.tiledwriter",),
        ),
        Measurement(
            "map",
            "map",
            "2-D snake map: spec_scan(panda, Fly(1 ms @ (Line(y, 0, 1, 20) * "
            "~Line(x, 0, 5, 500))), detectors=[det]) into Tiled (--quick: 4 x 50, "
            "the same steps): wall / ideal (frames + the motors' turnaround from "
            "their VELO and ACCL), the added time per line (x kickoff to kickoff "
            "- ideal), the fixed costs; then bp.grid_scan([det], y, x, "
            "snake_axes=True) against spec_scan on a 4 x 50 grid (--quick: 2 x 20) "
            "and their ratio.",
            measure_map.map_scan,
            ("map.fly.efficiency",),
        ),
        Measurement(
            "soak",
            "soak",
            "Soak: 200 flyscans back to back (--quick: 20), four kinds in turn "
            "(time_scan 1,000 x 1 ms, position_scan of x, a 4 x 51 snake "
            "spec_scan, time_scan with det); resident memory, threads and open "
            "file descriptors of the PandA's IOC, the simulator, this process and "
            "the Tiled server after each; growth from scan 20 to the last (%), "
            "the IOC's sawtooth (step, peak, drops), and the scans' wall time, "
            "last tenth / first.",
            measure_soak.soak,
            ("soak.ioc.rss.growth",),
        ),
        Measurement(
            "bus",
            "bus",
            "Document bus: bp.count([det], N) events through BusPublisher -> "
            "nats-server (JetStream) -> `panda-flyscan tiled writer --bus` (its "
            "own process) -> Tiled, alternating with the in-process "
            "DurableTiledWriter: documents/s to the run complete in Tiled and "
            "their ratio; the RunEngine's time per document in each; stop "
            "document -> run complete in Tiled (measure_bus.py).",
            measure_bus.bus,
            ("bus.rate.ratio",),
        ),
        Measurement(
            "stream",
            "stream",
            "Flyscans of any length and pauses: time_scan 1e6 frames at 100 kHz "
            "(--quick: 1e5) and a streamed-table spec_scan 10 x 10,000 map at "
            "1 kHz (--quick: 4 x 2,500), efficiency = frames x frame / wall; the "
            "cost of one pause/resume (a 4 x 2,500 map paused 1 s, against it "
            "unpaused) and request -> paused; table generation's peak RSS for "
            "1e6 frames / 1e4 (fresh processes) (measure_stream.py).",
            measure_stream.stream,
            ("stream.map.efficiency",),
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


def _record_failure(
    suite: Suite, m: Measurement, err: Exception, errors_log: Path
) -> None:
    """Log ``err``, append its traceback to ``errors_log``, and mark failed
    the figures left without samples (placeholders for ``m.keys`` not made)."""
    message = f"{type(err).__name__}: {err}"
    suite.log(f"{m.name} FAILED: {message}")
    with errors_log.open("a") as errors:
        errors.write(f"== {m.name}\n{traceback.format_exc()}\n")
    made = [f for f in suite.figures.values() if not f.samples]
    for key in m.keys:
        if key not in suite.figures:
            made.append(suite.figure(key, m.group, m.name))
    for fig in made:
        fig.error = message
    if not made:
        suite.figure(f"{m.name}.error", m.group, m.name).error = message


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
    meta = _meta(options, budget)
    started = time.perf_counter()
    with _work_dir(options.keep_data) as work, BenchContext(work) as ctx:
        suite = Suite(ctx, budget, options, log)
        log(
            f"panda-flyscan bench ({meta['mode']}): "
            f"{', '.join(m.name for m in measurements)}"
        )
        interrupted = _run_all(suite, measurements, output / "errors.log")
        figures = suite.ordered()
    wall = time.perf_counter() - started
    meta["wall_seconds"] = round(wall, 1)
    meta["interrupted"] = interrupted
    meta["machine"]["loadavg_end"] = machine_info().get("loadavg")
    _report(figures, meta, output, log)
    return figures


def _meta(options: Options, budget: Budget) -> dict[str, Any]:
    """The JSON record's metadata known before the run."""
    return {
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


def _run_all(
    suite: Suite, measurements: Sequence[Measurement], errors_log: Path
) -> bool:
    """Run each measurement, a failure recorded and the next one run;
    whether Ctrl-C stopped them."""
    try:
        for m in measurements:
            suite.log(f"-- {m.name}")
            try:
                m.run(suite)
            except Exception as err:
                if _interrupted(err):
                    raise KeyboardInterrupt from err
                _record_failure(suite, m, err, errors_log)
    except KeyboardInterrupt:
        suite.log("interrupted: stopping what was started")
        return True
    return False


def _report(
    figures: Sequence[Figure],
    meta: dict[str, Any],
    output: Path,
    log: Callable[[str], None],
) -> None:
    """Log the heading and table; write table.md, results.json and the plot."""
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
