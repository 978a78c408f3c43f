"""Figure 8, the document bus: documents/s through RunEngine -> NATS
JetStream -> the writer service (its own process) -> Tiled against the
in-process DurableTiledWriter, side by side in one run; the RunEngine's cost
per document with the bus publisher against the in-process writer; the
latency from the stop document to the run complete in Tiled."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from panda_flyscan.app.bench.stats import format_count, pairwise_ratio

if TYPE_CHECKING:
    from panda_flyscan.app.bench.suite import Suite
    from panda_flyscan.processes import ManagedProcess
    from panda_flyscan.storage import TiledService

__all__ = ["bus"]


def bus(s: Suite) -> None:
    """Events of ``bp.count([det], N)`` through the bus and in-process,
    alternately; the publisher's and the in-process writer's cost per
    document; stop document -> run complete in Tiled."""
    import bluesky.plans as bp
    from ophyd.sim import hw

    from panda_flyscan.app.bench.storage_bench import writer_overhead
    from panda_flyscan.storage import DurableTiledWriter
    from panda_flyscan.storage.bus import BusOptions, BusPublisher, NatsServer

    b = s.budget
    n = b.events
    docs = n + 3  # start, descriptor, N events, stop
    ctx = s.ctx
    RE, client = ctx.RE, ctx.client
    det = hw().det
    base = ctx.work_dir / "bus"
    counter = iter(range(10**9))

    def journal() -> Path:
        return base / "journals" / f"j-{next(counter)}"

    with (
        NatsServer(base / "nats") as server,
        _writer_service(server.url, ctx.tiled, base),
    ):
        options = BusOptions(server.url)

        def publisher() -> BusPublisher:
            return BusPublisher(options, "bench", journal_dir=journal())

        def durable() -> DurableTiledWriter:
            return DurableTiledWriter(client, journal_dir=journal())

        # First uses (connections, the service's first run) not counted.
        _through_bus(RE, client, publisher(), bp.count([det], 20))
        _in_process(RE, durable(), bp.count([det], 20))
        rates: dict[str, list[float]] = {"bus": [], "in-process": []}
        costs: dict[str, list[float]] = {"bus": [], "in-process": []}
        latency: dict[str, list[float]] = {"bus": [], "in-process": []}
        for _ in range(b.writer_repeats):
            wall, lat, cost = _in_process(RE, durable(), bp.count([det], n))
            rates["in-process"].append(docs / wall)
            latency["in-process"].append(lat)
            costs["in-process"].append(cost)
            wall, lat, cost = _through_bus(RE, client, publisher(), bp.count([det], n))
            rates["bus"].append(docs / wall)
            latency["bus"].append(lat)
            costs["bus"].append(cost)
        overhead = writer_overhead(
            RE,
            lambda: bp.count([det], n),
            n,
            {"DurableTiledWriter": durable, "BusPublisher": publisher},
            b.writer_repeats,
        )

    how = f"bp.count([ophyd.sim det], {format_count(n)}), {docs:,} documents"
    for name, label in (
        ("in-process", "in-process DurableTiledWriter"),
        ("bus", "bus"),
    ):
        fig = s.figure(
            f"bus.rate.{name}",
            "bus",
            f"documents/s, RunEngine start -> run complete in Tiled, {label}",
            "docs/s",
            note=how,
        )
        fig.samples = rates[name]
    ratio = s.figure(
        "bus.rate.ratio", "bus", "documents/s, bus / in-process", ratio=True
    )
    ratio.samples = pairwise_ratio(rates["bus"], rates["in-process"])
    for name, label in (
        ("in-process", "DurableTiledWriter"),
        ("bus", "BusPublisher"),
    ):
        fig = s.figure(
            f"bus.call.{name}",
            "bus",
            f"RunEngine's time in the {label} per document (mean call)",
            "us",
            note=f"{how}; the writer's own timer around each call",
        )
        fig.samples = [x * 1e6 for x in costs[name]]
    for name in ("DurableTiledWriter", "BusPublisher"):
        fig = s.figure(
            f"bus.overhead.{name.lower()}",
            "bus",
            f"{name} overhead per Event ({format_count(n)}/run)",
            "us",
            note=f"{how}; (time with it - time without) / N",
        )
        fig.samples = [x * 1e6 for x in overhead[name]]
    cost_ratio = s.figure(
        "bus.overhead.ratio",
        "bus",
        "overhead per Event, BusPublisher / DurableTiledWriter",
        ratio=True,
    )
    cost_ratio.samples = pairwise_ratio(
        overhead["BusPublisher"], overhead["DurableTiledWriter"]
    )
    for name, label in (
        ("bus", "through the bus (polled every 5 ms)"),
        ("in-process", "in-process (the RunEngine waits at stop)"),
    ):
        fig = s.figure(
            f"bus.latency.{name}",
            "bus",
            f"stop document -> run complete in Tiled, {label}",
            "ms",
            note=how,
        )
        fig.samples = [x * 1e3 for x in latency[name]]
    s.log(
        "bus: "
        + ", ".join(
            f"{k} {sorted(v)[len(v) // 2]:.0f} docs/s" for k, v in rates.items()
        )
        + f"; publisher {sorted(costs['bus'])[len(costs['bus']) // 2] * 1e6:.0f} us/doc"
    )


class _StopClock:
    """A RunEngine subscriber noting when the stop document was emitted."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "stop":
            self.at = time.perf_counter()


def _in_process(RE: Any, writer: Any, plan: Any) -> tuple[float, float, float]:
    """(wall, stop -> in Tiled, mean call seconds) of one run in-process."""
    clock = _StopClock()
    tokens = [RE.subscribe(clock), RE.subscribe(writer)]
    try:
        start = time.perf_counter()
        RE(plan)
        done = time.perf_counter()  # the writer held the stop until in Tiled
    finally:
        for token in tokens:
            RE.unsubscribe(token)
        writer.close()
    assert clock.at is not None
    return done - start, done - clock.at, writer.stats.mean_call_seconds


def _through_bus(
    RE: Any, client: Any, publisher: Any, plan: Any
) -> tuple[float, float, float]:
    """(wall to complete in Tiled, stop -> complete, mean call seconds) of
    one run through the bus and the writer service."""
    from panda_flyscan.polling import poll_until

    clock = _StopClock()
    tokens = [RE.subscribe(clock), RE.subscribe(publisher)]
    try:
        start = time.perf_counter()
        (uid,) = RE(plan)
    finally:
        for token in tokens:
            RE.unsubscribe(token)
        publisher.close()

    def complete() -> bool:
        # The service is another process: Tiled is the only place to look.
        try:
            return bool(client[uid].metadata.get("stop"))
        except Exception:  # not there yet
            return False

    poll_until(complete, timeout=120, interval=0.005)
    done = time.perf_counter()
    assert clock.at is not None
    return done - start, done - clock.at, publisher.stats.mean_call_seconds


@contextlib.contextmanager
def _writer_service(
    bus_url: str, tiled: TiledService, base: Path
) -> Iterator[ManagedProcess]:
    """``panda-flyscan tiled writer --bus ...`` as a process, stopped by PID."""
    from panda_flyscan.processes import ManagedProcess

    process = ManagedProcess(
        "writer-service",
        [
            sys.executable,
            *("-m", "panda_flyscan", "tiled", "writer", "--bus", bus_url),
            *("--tiled-uri", tiled.uri, "--api-key", tiled.api_key),
            *("--state-dir", str(base / "writer-state")),
        ],
        base / "writer-service.log",
        dict(os.environ),
        ready=re.compile(r"writer service: .*"),
    )
    process.start()
    try:
        process.wait_ready(60)
        yield process
    finally:
        process.stop()
