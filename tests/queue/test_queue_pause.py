"""A streamed spec_scan paused and resumed through the queue server, end to
end on loopback: Redis, the RE Manager with the shipped profile (its worker on
the session's simulated beamline, whose PandA it reaches on the control
port: $PANDA_HOST) and a real Tiled server, all started and stopped here.

The scan is paused once it is flying (the PandA has captured some of the
run's rows), the manager is seen paused with the run open, it is resumed,
and the run read back from Tiled has every planned frame once, at its place;
or it is stopped or aborted while paused, and the run keeps the frames taken.
Also: a streamed path short enough to be one table buffer completes, the
plan list shows ``streamed``, and ``streamed=True`` without a control
connection is a clear error (no server for that one).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from bluesky_queueserver_api import BPlan
from ophyd_async.epics.motor import Motor
from p4p.client.thread import Context
from scanspec.core import Path as ScanPath
from scanspec.specs import Fly, Line

from panda_flyscan.app.queue.plans import queue_plans
from panda_flyscan.app.queue.server import QueueServer
from panda_flyscan.app.queue.settings import (
    DATA_DIR_ENV,
    TILED_API_KEY_ENV,
    TILED_URI_ENV,
    ProfileSettings,
)
from panda_flyscan.app.simulated import SimulatedBeamline
from panda_flyscan.devices import Beamline, FlyscanPanda
from panda_flyscan.devices.paths import RunFilePathProvider
from panda_flyscan.plans import PlanArgumentError
from panda_flyscan.storage import TiledService, read_field

API_KEY = "queuepausetests"
COUNT = 0.001  # mm: one encoder count on every simulated axis
#: Bounds (s) of each wait on the queue server or the PandA.
PLAN_TIMEOUT = 90
STATE_TIMEOUT = 30
#: 3 lines of 200 frames, 5 ms each (about 1 s a line): paused within the
#: first line, once this many of the run's rows are captured.
SPEC = Fly(0.005 @ (Line("y", 0.0, 0.5, 3) * ~Line("x", 0.0, 2.0, 200)))
FRAMES = 600
PAUSE_AFTER_ROWS = 50


@dataclass
class PauseEnv:
    api: Any
    server: QueueServer
    tiled: TiledService
    #: The PandA IOC's prefix (``TEST:PANDA:``).
    panda_prefix: str

    @property
    def rows_pv(self) -> str:
        """The PandA's captured rows (the IOC's DATA:NUM_CAPTURED)."""
        return f"{self.panda_prefix}DATA:NUM_CAPTURED"


@pytest.fixture(scope="module")
def queue_stack(
    beamline: SimulatedBeamline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PauseEnv]:
    """Tiled, Redis and the RE Manager for this module (as test_queue_e2e's
    own fixture starts them), the worker on the session's beamline."""
    base = tmp_path_factory.mktemp("queue-pause")
    data_dir = base / "data"
    data_dir.mkdir()
    with TiledService(base / "tiled", api_key=API_KEY, readable=[data_dir]) as tiled:
        settings = ProfileSettings.from_env(
            {
                **beamline.env,
                TILED_URI_ENV: tiled.uri,
                TILED_API_KEY_ENV: API_KEY,
                DATA_DIR_ENV: str(data_dir),
            }
        )
        # os.environ carries the session's EPICS client settings and
        # PANDA_HOST (conftest): the worker's beamline gets its control port.
        with QueueServer(base / "qs", settings, env=os.environ) as server:
            api = server.client(timeout=10)
            try:
                yield PauseEnv(api, server, tiled, beamline.panda_prefix)
                # Where the session's other tests expect the motors.
                api.item_add(BPlan("mv", "x", 0.0, "y", 0.0))
                api.queue_start()
                api.wait_for_idle(timeout=PLAN_TIMEOUT)
            finally:
                api.close()


@pytest.fixture
def queue(queue_stack: PauseEnv) -> Iterator[PauseEnv]:
    """The module's queue server, left idle after each test: a scan a failed
    test left running is paused, a paused one aborted, the queue cleared."""
    yield queue_stack
    api = queue_stack.api
    if _state(api)["manager_state"] == "executing_queue":
        api.re_pause("immediate")
        api.wait_for_idle_or_paused(timeout=STATE_TIMEOUT)
    if _state(api)["manager_state"] == "paused":
        api.re_abort()
        api.wait_for_idle(timeout=STATE_TIMEOUT)
    api.queue_clear()


class RowsWatch:
    """Set once the PandA has captured ``rows`` rows of a new acquisition.

    A pvAccess monitor of DATA:NUM_CAPTURED: the count a previous run left
    stands until the next acquisition starts from 0, so only a rise to
    ``rows`` after a value below it counts.
    """

    def __init__(self, pv: str, rows: int) -> None:
        self.rows = rows
        self.reached = threading.Event()
        self._low = False
        self._ctx = Context("pva")
        self._sub = self._ctx.monitor(pv, self._update)

    def _update(self, value: Any) -> None:
        if isinstance(value, Exception):
            return
        if int(value) < self.rows:
            self._low = True
        elif self._low:
            self.reached.set()

    def close(self) -> None:
        self._sub.close()
        self._ctx.close()


def _midpoints() -> dict[str, np.ndarray]:
    """SPEC's frames' midpoints, by axis name."""
    frames = ScanPath(SPEC.calculate()).consume()
    return {axis: np.asarray(frames.midpoints[axis]) for axis in frames.axes()}


def _state(api: Any) -> dict[str, Any]:
    return api.status(reload=True)


def _rows(pv: str) -> int:
    """The PandA's captured rows now (one pvAccess get)."""
    ctx = Context("pva")
    try:
        value: Any = ctx.get(pv, timeout=5)
        return int(value)
    finally:
        ctx.close()


@contextlib.contextmanager
def _with_manager_log(server: QueueServer, lines: int = 80) -> Iterator[None]:
    """A failure here carries the tail of the RE Manager's log (its worker's
    RunEngine and plan log there)."""
    try:
        yield
    except Exception as exc:
        log = server.work_dir / "re-manager.log"
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        raise AssertionError(
            f"{type(exc).__name__}: {exc}\n--- {log} (last {lines} lines) ---\n"
            + "\n".join(tail)
        ) from exc


@dataclass
class Paused:
    """A streamed scan the manager reports paused."""

    #: The open run's uid.
    uid: str
    #: Rows the PandA had captured when paused.
    rows: int
    #: Seconds from re_pause to the manager's "paused".
    to_paused: float


def _submit_and_pause(queue: PauseEnv, option: str) -> Paused:
    """Submit a streamed spec_scan of SPEC, pause it (``re_pause(option)``)
    once it is capturing; check the manager paused and no frame taken."""
    api = queue.api
    watch = RowsWatch(queue.rows_pv, PAUSE_AFTER_ROWS)
    try:
        api.item_add(BPlan("spec_scan", "panda", SPEC.serialize(), streamed=True))
        api.queue_start()
        # Flying: the run's first rows are in (a pause while it is still
        # being armed could not be resumed).
        assert watch.reached.wait(STATE_TIMEOUT), "the scan never captured"
        api.re_pause(option)
        paused_at = time.monotonic()
        api.wait_for_condition(
            lambda s: s["manager_state"] == "paused", timeout=STATE_TIMEOUT
        )
        to_paused = time.monotonic() - paused_at
    finally:
        watch.close()
    status = _state(api)
    assert status["manager_state"] == "paused", status
    assert status["re_state"] == "paused", status
    # The run stays open while paused, with some of its frames taken.
    runs: Any = api.re_runs("open")
    (open_run,) = runs["run_list"]
    rows_at_pause = _rows(queue.rows_pv)
    time.sleep(0.5)  # 100 frames' time: none is taken while paused
    assert _rows(queue.rows_pv) == rows_at_pause
    assert PAUSE_AFTER_ROWS <= rows_at_pause < FRAMES
    return Paused(open_run["uid"], rows_at_pause, to_paused)


@pytest.mark.parametrize("option", ["immediate", "deferred"])
def test_streamed_spec_scan_paused_and_resumed_through_the_queue(
    queue: PauseEnv, option: str
) -> None:
    api = queue.api
    with _with_manager_log(queue.server):
        begin = time.monotonic()
        paused = _submit_and_pause(queue, option)
        rows_at_pause, to_paused = paused.rows, paused.to_paused
        api.re_resume()
        api.wait_for_idle(timeout=PLAN_TIMEOUT)
        took = time.monotonic() - begin
        history: Any = api.history_get()
        item = history["items"][-1]
        assert item["name"] == "spec_scan"
        result = item["result"]
        assert result["exit_status"] == "completed", result.get("msg")
        (uid,) = result["run_uids"]
        assert uid == paused.uid

    client = queue.tiled.client()
    mid = _midpoints()
    x = read_field(client, uid, "primary", "x")
    y = read_field(client, uid, "primary", "y")
    t = read_field(client, uid, "primary", "trigger_time")
    assert len(x) == len(y) == len(t) == FRAMES == len(mid["x"])
    np.testing.assert_allclose(x, mid["x"], rtol=0, atol=COUNT + 1e-9)
    np.testing.assert_allclose(y, mid["y"], rtol=0, atol=COUNT + 1e-9)
    assert len(np.unique(t)) == FRAMES
    metadata = client[uid].metadata
    stop = metadata["stop"]
    assert stop["exit_status"] == "success", stop
    assert stop["reason"].startswith("paused 1 times"), stop["reason"]
    assert stop["reason"].endswith("; 3 segments"), stop["reason"]
    assert stop["num_events"] == {"primary": FRAMES}
    assert metadata["start"]["panda_flyscan"]["seq_table"] == "streamed"
    print(
        f"spec_scan ({FRAMES} frames, streamed) paused ({option}) at row "
        f"{rows_at_pause}, manager paused {to_paused:.2f} s after re_pause, "
        f"resumed; submitted to idle in {took:.1f} s; {stop['reason']}"
    )


@pytest.mark.parametrize(
    ("request_name", "exit_status"), [("re_stop", "success"), ("re_abort", "abort")]
)
def test_stop_or_abort_while_paused_closes_the_run(
    queue: PauseEnv, request_name: str, exit_status: str
) -> None:
    api = queue.api
    with _with_manager_log(queue.server):
        paused = _submit_and_pause(queue, "immediate")
        getattr(api, request_name)()
        api.wait_for_idle(timeout=PLAN_TIMEOUT)
        assert not _state(api)["running_item_uid"]
    client = queue.tiled.client()
    stop = client[paused.uid].metadata["stop"]
    assert stop["exit_status"] == exit_status, stop
    # The frames taken before the pause, once each, and no more.
    x = read_field(client, paused.uid, "primary", "x")
    t = read_field(client, paused.uid, "primary", "trigger_time")
    assert len(x) == paused.rows == stop["num_events"]["primary"]
    np.testing.assert_allclose(
        x, _midpoints()["x"][: len(x)], rtol=0, atol=COUNT + 1e-9
    )
    assert len(np.unique(t)) == len(t)


def test_a_short_streamed_path_completes_whatever_seq_repeats_was(
    queue: PauseEnv,
) -> None:
    """18 frames: the whole streamed table is one buffer, which the PandA
    loads as a fixed table, REPEATS applying (0: for ever). The streamed SEQ
    flyer sets it to 1 when it prepares, so the scan ends."""
    api = queue.api
    ctx = Context("pva")
    try:
        ctx.put(f"{queue.panda_prefix}SEQ1:REPEATS", 0, timeout=5)
    finally:
        ctx.close()
    spec = Fly(0.01 @ (Line("y", 0.0, 0.2, 3) * ~Line("x", 0.0, 0.5, 6)))
    with _with_manager_log(queue.server):
        api.item_add(BPlan("spec_scan", "panda", spec.serialize()))
        api.queue_start()
        api.wait_for_idle(timeout=STATE_TIMEOUT)
        history: Any = api.history_get()
        result = history["items"][-1]["result"]
        assert result["exit_status"] == "completed", result.get("msg")
    (uid,) = result["run_uids"]
    client = queue.tiled.client()
    assert len(read_field(client, uid, "primary", "x")) == 18
    assert client[uid].metadata["start"]["panda_flyscan"]["seq_table"] == "streamed"


def test_the_queue_lists_spec_scans_streamed_parameter(queue: PauseEnv) -> None:
    """The generated plan list clients read: streamed beside the devices'
    annotations (still this beamline's names), the docstring on pausing."""
    listed = yaml.safe_load(queue.server.existing_plans_file.read_text())
    plan = listed["existing_plans"]["spec_scan"]
    params = {p["name"]: p for p in plan["parameters"]}
    assert params["streamed"]["default"] == "None"
    assert params["panda"]["annotation"]["type"] == "PandA"
    assert params["detectors"]["annotation"]["type"] == "typing.List[Detector]"
    assert "re_resume" in plan["description"]
    assert "re_pause" in params["streamed"]["description"]
    assert "re_resume" in params["streamed"]["description"]
    assert "re_abort" in params["streamed"]["description"]
    assert params["spec"]["description"].startswith("A serialised scanspec Spec")


def _beamline_without_control(tmp_path: Path) -> Beamline:
    """A beamline's devices, never connected, and no control port."""
    provider = RunFilePathProvider(tmp_path)
    return Beamline(
        panda=FlyscanPanda("NONE:PANDA:", provider, name="panda"),
        path_provider=provider,
        motors={"x": Motor("NONE:M1", name="x")},
    )


def test_streamed_without_a_control_connection_is_a_clear_error(
    tmp_path: Path,
) -> None:
    bl = _beamline_without_control(tmp_path)
    spec_scan = queue_plans(bl)["spec_scan"]
    serialised = Fly(0.01 @ Line("x", 0.0, 1.0, 5)).serialize()
    plan = spec_scan(bl.panda, serialised, streamed=True)
    # The plan's first step, before it sends the RunEngine anything.
    with pytest.raises(PlanArgumentError) as err:
        next(plan)
    message = str(err.value)
    assert "streamed=True needs a control connection to the PandA" in message
    assert "PandaControl(host)" in message and "streamed=False" in message
    with pytest.raises(PlanArgumentError, match="streamed must be"):
        next(spec_scan(bl.panda, serialised, streamed="yes"))
