"""What the benchmarks share: one simulated beamline, one Tiled service, one
RunEngine writing into it, the connected devices; each started on first use
and all stopped (by PID, newest first) on leaving the block, Ctrl-C included.

>>> with BenchContext(work_dir) as ctx:
...     ctx.RE(time_scan(ctx.beamline.panda, 1000, 1e-3))

CA and PVA clients read their settings once per process, at first use, so a
process talks to the first simulated beamline it connects to: the shared one.
Other beamlines (the start-up figure) are started and stopped without a
client of ours ever connecting to them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bluesky import RunEngine

    from panda_flyscan.app.simulated.launcher import SimulatedBeamline
    from panda_flyscan.devices import Beamline
    from panda_flyscan.storage import DurableTiledWriter, TiledService

__all__ = ["API_KEY", "DETECTOR_READOUT", "BenchContext", "quiet_epics_logs"]

API_KEY = "bench"
#: Dead time of the bench's detector ``det`` after each exposure (s). The
#: simulator's default, 1 ms, leaves no exposure at 1 kHz (exposure + dead
#: time must fit in the frame), and the map figure flies det at 1 kHz.
DETECTOR_READOUT = 0.2e-3


def quiet_epics_logs() -> None:
    """Silence the pvAccess client's per-put warnings (the IOC's SEQ table
    records have no put order, which it says at every table write); must run
    before p4p is first imported. An explicit ``PVXS_LOG`` wins."""
    os.environ.setdefault("PVXS_LOG", "pvxs.remote.log=ERR")


class BenchContext:
    """The shared simulated beamline, Tiled service, RunEngine and devices.

    Everything starts lazily (a ``--only storage`` run never starts the
    beamline); the time each start took is kept in :attr:`startup_seconds`.
    """

    def __init__(self, work_dir: Path, *, prefix: str = "BENCH") -> None:
        self.work_dir = Path(work_dir)
        self.prefix = prefix
        self.data_dir = (self.work_dir / "panda").resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = self.work_dir / "logs"
        #: Seconds each thing took to start: ``beamline``, ``tiled``, ``connect``.
        self.startup_seconds: dict[str, float] = {}
        self._stack = contextlib.ExitStack()
        self._sim: SimulatedBeamline | None = None
        self._tiled: TiledService | None = None
        self._RE: RunEngine | None = None
        self._writer: DurableTiledWriter | None = None
        self._beamline: Beamline | None = None
        self._client: Any = None

    # -- life cycle -----------------------------------------------------------

    def __enter__(self) -> BenchContext:
        quiet_epics_logs()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop everything started, newest first (idempotent)."""
        RE, self._RE = self._RE, None
        if RE is not None and RE.state != "idle":
            # Interrupted (Ctrl-C) mid-plan: stop it before its devices go.
            with contextlib.suppress(Exception):
                RE.halt()
        self._stack.close()

    # -- the pieces -------------------------------------------------------------

    @property
    def sim(self) -> SimulatedBeamline:
        """The simulated beamline (simulator + real IOC), started on first use;
        this process's CA/PVA environment points at it from then on."""
        if self._sim is None:
            from panda_flyscan.app.simulated.launcher import SimulatedBeamline
            from sim_ioc.config import SimulatorConfig

            sim = SimulatedBeamline(
                self.prefix,
                log_dir=self.log_dir / self.prefix,
                simulator=SimulatorConfig(readout_time=DETECTOR_READOUT),
            )
            started = time.perf_counter()
            self._stack.enter_context(sim)
            self.startup_seconds["beamline"] = time.perf_counter() - started
            os.environ.update(sim.env)  # before the first CA/PVA use
            self._sim = sim
        return self._sim

    @property
    def tiled(self) -> TiledService:
        """The bundled Tiled service (SQLite + DuckDB), able to read the data dir."""
        if self._tiled is None:
            from panda_flyscan.storage import TiledService

            service = TiledService(
                self.work_dir / "tiled",
                api_key=API_KEY,
                readable=[self.data_dir, self.work_dir / "external"],
                log_path=self.log_dir / "tiled.log",
            )
            (self.work_dir / "external").mkdir(exist_ok=True)
            started = time.perf_counter()
            self._stack.enter_context(service)
            self.startup_seconds["tiled"] = time.perf_counter() - started
            self._tiled = service
        return self._tiled

    @property
    def client(self) -> Any:
        """A Tiled client of the service's root."""
        if self._client is None:
            self._client = self.tiled.client()
            self._stack.callback(self._client.context.close)
        return self._client

    @property
    def RE(self) -> RunEngine:
        """The RunEngine, no writer subscribed (see :meth:`writing`).

        Without bluesky's SIGINT handler: Ctrl-C raises KeyboardInterrupt
        here at once, and :meth:`close` halts the plan and stops everything.
        """
        if self._RE is None:
            from bluesky import RunEngine

            self._RE = RunEngine({}, context_managers=[])
        return self._RE

    @property
    def writer(self) -> DurableTiledWriter:
        """The package's DurableTiledWriter into the shared Tiled (created on
        first use, not subscribed: see :meth:`writing`)."""
        if self._writer is None:
            from panda_flyscan.storage import subscribe_tiled_writer

            writer = subscribe_tiled_writer(
                self.RE,
                self.tiled.uri,
                API_KEY,
                external_dirs=[self.data_dir],
                journal_dir=self.work_dir / "journal",
            )
            self.RE.unsubscribe(writer.token)
            writer.token = None
            self._stack.callback(writer.close)
            self._writer = writer
        return self._writer

    @contextlib.contextmanager
    def writing(self) -> Iterator[DurableTiledWriter]:
        """The writer subscribed to the RunEngine for the block: runs go into Tiled."""
        writer = self.writer
        token = self.RE.subscribe(writer)
        try:
            yield writer
        finally:
            self.RE.unsubscribe(token)

    @property
    def beamline(self) -> Beamline:
        """The simulated beamline's devices, connected in the RunEngine's loop
        (the first connect of the process: CA/PVA contexts are made here)."""
        if self._beamline is None:
            self.sim  # noqa: B018 - started (and the environment set) first
            self.RE  # noqa: B018 - its loop is where the devices live
            started = time.perf_counter()
            self._beamline = self.connect()
            self.startup_seconds["connect"] = time.perf_counter() - started
        return self._beamline

    def connect(self, timeout: float = 30.0) -> Beamline:
        """Build and connect a new set of the simulated beamline's devices."""
        from bluesky.run_engine import call_in_bluesky_event_loop

        from panda_flyscan.app.simulated import connect_simulated_beamline

        self.sim  # noqa: B018
        self.RE  # noqa: B018
        return call_in_bluesky_event_loop(
            connect_simulated_beamline(self.data_dir), timeout=timeout
        )

    def in_loop(self, coro: Any, timeout: float) -> Any:
        """Run a coroutine in the RunEngine's event loop (where the devices'
        CA/PVA subscriptions live) and return its result."""
        from bluesky.run_engine import call_in_bluesky_event_loop

        self.RE  # noqa: B018
        return call_in_bluesky_event_loop(coro, timeout=timeout)
