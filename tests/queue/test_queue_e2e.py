"""Plans through bluesky-queueserver, end to end on loopback: Redis, the RE
Manager with the shipped profile (its worker connected to the session's
simulated beamline) and a real Tiled server, all started and stopped here.

Plans are submitted through bluesky_queueserver_api over 0MQ, with devices
by name and spec_scan's spec serialised; the runs are read back from Tiled
and compared with what was planned.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from bluesky_queueserver_api import BPlan
from bluesky_queueserver_api.comm_base import RequestFailedError
from scanspec.core import Path as ScanPath
from scanspec.specs import Fly, Line

from panda_flyscan.app.queue.server import QueueServer, QueueServerError
from panda_flyscan.app.queue.session import open_session
from panda_flyscan.app.queue.settings import (
    DATA_DIR_ENV,
    TILED_API_KEY_ENV,
    TILED_URI_ENV,
    ProfileSettings,
)
from panda_flyscan.app.simulated import SimulatedBeamline
from panda_flyscan.devices import FlyscanPanda
from panda_flyscan.processes import ManagedProcess
from panda_flyscan.storage import TiledService, read_field, read_stream
from panda_flyscan.storage.cluster import free_loopback_port

API_KEY = "queuetests"
COUNT = 0.001  # mm: one encoder count on every simulated axis
#: Seconds a small plan gets to run through the queue (submission to idle).
PLAN_TIMEOUT = 90


@dataclass
class QueueEnv:
    api: Any
    server: QueueServer
    tiled: TiledService
    data_dir: Path
    #: Seconds from nothing to the environment open (devices connected).
    startup_s: float

    def run(self, plan: BPlan) -> dict[str, Any]:
        """Submit ``plan``, run the queue, wait; the history item it left."""
        added: Any = self.api.item_add(plan)
        uid = added["item"]["item_uid"]
        self.api.queue_start()
        self.api.wait_for_idle(timeout=PLAN_TIMEOUT)
        # A failed item goes back to the front of the queue (the queue
        # server's rule, so it can be retried): take it out.
        self.api.queue_clear()
        history: Any = self.api.history_get()
        (item,) = [i for i in history["items"] if i["item_uid"] == uid][-1:]
        return item


@pytest.fixture(scope="module")
def queue(
    beamline: SimulatedBeamline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[QueueEnv]:
    base = tmp_path_factory.mktemp("queue")
    data_dir = base / "data"
    data_dir.mkdir()
    started = time.monotonic()
    with TiledService(base / "tiled", api_key=API_KEY, readable=[data_dir]) as tiled:
        settings = ProfileSettings.from_env(
            {
                **beamline.env,
                TILED_URI_ENV: tiled.uri,
                TILED_API_KEY_ENV: API_KEY,
                DATA_DIR_ENV: str(data_dir),
            }
        )
        # The worker inherits this process's EPICS client environment, which
        # conftest pointed at the session's beamline.
        with QueueServer(base / "qs", settings, env=os.environ) as server:
            api = server.client(timeout=10)
            try:
                yield QueueEnv(api, server, tiled, data_dir, time.monotonic() - started)
            finally:
                api.close()


def _completed(item: dict[str, Any]) -> str:
    result = item["result"]
    assert result["exit_status"] == "completed", result.get("msg")
    (uid,) = result["run_uids"]
    return uid


def test_the_profile_offers_our_plans_and_devices_by_name(queue: QueueEnv) -> None:
    plans: Any = queue.api.plans_allowed()
    devices: Any = queue.api.devices_allowed()
    assert {"spec_scan", "time_scan", "position_scan", "async_scan"} <= set(
        plans["plans_allowed"]
    )
    assert {"panda", "x", "y", "z", "det", "det2"} <= set(devices["devices_allowed"])
    # Generated at environment open, not shipped: it names this beamline.
    listed = yaml.safe_load(queue.server.existing_plans_file.read_text())
    spec_params = {
        p["name"]: p.get("annotation", {}).get("type")
        for p in listed["existing_plans"]["spec_scan"]["parameters"]
    }
    assert spec_params["panda"] == "PandA"  # an enum of this beamline's PandA
    assert listed["existing_devices"]["x"]["is_movable"]
    print(
        "queue server up (Tiled, Redis, RE Manager, env open) in "
        f"{queue.startup_s:.1f} s"
    )


def test_spec_scan_snake_through_the_queue_lands_in_tiled(queue: QueueEnv) -> None:
    # Axes by motor name; the spec travels as JSON (Spec.serialize()).
    spec = Fly(0.01 @ (Line("y", 0.0, 0.2, 3) * ~Line("x", 0.0, 0.5, 6)))
    start = time.monotonic()
    item = queue.run(BPlan("spec_scan", "panda", spec.serialize(), detectors=["det"]))
    uid = _completed(item)
    took = time.monotonic() - start
    client = queue.tiled.client()
    frames = ScanPath(spec.calculate()).consume()
    mid = {axis: np.asarray(frames.midpoints[axis]) for axis in frames.axes()}
    x = read_field(client, uid, "primary", "x")
    y = read_field(client, uid, "primary", "y")
    assert len(x) == len(y) == 18
    np.testing.assert_allclose(x, mid["x"], rtol=0, atol=COUNT + 1e-9)
    np.testing.assert_allclose(y, mid["y"], rtol=0, atol=COUNT + 1e-9)
    # Snake: the middle line runs backwards.
    assert np.all(np.diff(x[:6]) > 0) and np.all(np.diff(x[6:12]) < 0)
    images = np.asarray(read_stream(client, uid, "primary")["det"])
    assert images.shape[0] == 18
    start_doc = client[uid].metadata["start"]
    assert start_doc["plan_name"] == "spec_scan"
    assert list(start_doc["shape"]) == [3, 6]
    print(f"spec_scan (18 frames) through the queue: submitted to idle in {took:.1f} s")


def test_time_scan_through_the_queue_lands_in_tiled(queue: QueueEnv) -> None:
    frames, period = 200, 2e-3
    start = time.monotonic()
    item = queue.run(BPlan("time_scan", "panda", frames, period))
    uid = _completed(item)
    took = time.monotonic() - start
    t = read_field(queue.tiled.client(), uid, "primary", "trigger_time")
    assert len(t) == frames
    np.testing.assert_allclose(np.diff(t), period, rtol=0, atol=1e-7)
    print(
        f"time_scan ({frames} frames) through the queue: submitted to idle "
        f"in {took:.1f} s"
    )


def test_bluesky_step_plans_move_and_read_motors_by_name(queue: QueueEnv) -> None:
    moved = queue.run(BPlan("mv", "x", 0.25, "y", -0.1))
    assert moved["result"]["exit_status"] == "completed", moved["result"]["msg"]
    uid = _completed(queue.run(BPlan("count", ["x", "y"], num=2)))
    client = queue.tiled.client()
    x = read_field(client, uid, "primary", "x")
    y = read_field(client, uid, "primary", "y")
    np.testing.assert_allclose(x, [0.25, 0.25], atol=COUNT)
    np.testing.assert_allclose(y, [-0.1, -0.1], atol=COUNT)
    # A sub-device by name: the motor's velocity signal.
    uid = _completed(queue.run(BPlan("count", ["x.velocity"])))
    assert len(read_field(client, uid, "primary", "x-velocity")) == 1
    # Where the session's other tests expect them.
    queue.run(BPlan("mv", "x", 0.0, "y", 0.0))


def test_a_bad_spec_fails_its_item_and_the_queue_carries_on(queue: QueueEnv) -> None:
    spec = Fly(0.01 @ Line("q", 0.0, 1.0, 5))  # no motor q
    item = queue.run(BPlan("spec_scan", "panda", spec.serialize()))
    assert item["result"]["exit_status"] == "failed"
    assert "not motors of this beamline" in item["result"]["msg"]
    assert "['q']" in item["result"]["msg"]
    # A device name the queue server does not know is refused at submission.
    with pytest.raises(RequestFailedError, match="nopanda"):
        queue.api.item_add(BPlan("time_scan", "nopanda", 10, 1e-3))
    # And the next plan runs.
    _completed(queue.run(BPlan("time_scan", "panda", 10, 1e-3)))


def test_a_profile_that_cannot_reach_tiled_fails_start_naming_it(
    tmp_path: Path,
) -> None:
    """The worker's start-up fails (no Tiled): start() raises with the
    manager's log, and Redis and the RE Manager are stopped."""
    tiled = f"http://127.0.0.1:{free_loopback_port()}/api/v1"
    settings = ProfileSettings(
        tiled_uri=tiled,
        tiled_api_key=API_KEY,
        data_dir=tmp_path / "data",
        panda_prefix="NONE:PANDA:",
        motor_pvs={"x": "NONE:M1"},
        detector_prefixes={"DETECTOR_PREFIX": "NONE:DET:"},
    )
    server = QueueServer(tmp_path / "qs", settings, environment_timeout=60)
    started: list[ManagedProcess] = []
    real_start = ManagedProcess.start

    def recording(process: ManagedProcess) -> None:
        started.append(process)
        real_start(process)

    begin = time.monotonic()
    with (
        pytest.MonkeyPatch.context() as patch,
        pytest.raises(QueueServerError, match="environment did not open") as err,
    ):
        patch.setattr(ManagedProcess, "start", recording)
        server.start()
    took = time.monotonic() - begin
    # The worker's traceback, in the log tail the error carries, names Tiled.
    assert tiled.removesuffix("/api/v1").removeprefix("http://") in str(err.value)
    assert [p.name for p in started] == ["redis", "re-manager"]
    assert all(p.exited() for p in started)
    print(f"failed start-up reported and cleaned up in {took:.1f} s")


def test_the_session_of_a_real_beamline_from_prefixes_and_wiring(
    queue: QueueEnv, beamline: SimulatedBeamline
) -> None:
    """What the worker builds for PANDA_FLYSCAN_BEAMLINE=real, built in this
    process against the session's simulated IOCs (and this module's Tiled)."""
    settings = ProfileSettings.from_env(
        {
            "PANDA_FLYSCAN_BEAMLINE": "real",
            "PANDA_PREFIX": beamline.panda_prefix,
            "MOTOR_PV": beamline.motor_pvs[0],
            "MOTOR_PV_Y": beamline.motor_pvs[1],
            "PANDA_FLYSCAN_ENCODERS": "x=1,y=2",
            TILED_URI_ENV: queue.tiled.uri,
            TILED_API_KEY_ENV: API_KEY,
            DATA_DIR_ENV: str(queue.data_dir),
        }
    )
    session = open_session(settings)
    try:
        names = session.namespace()
        assert isinstance(names["panda"], FlyscanPanda)
        assert sorted(session.beamline.motors) == ["x", "y"]
        assert session.beamline.detectors == {}
        assert session.beamline.wiring.encoder_for("y") == 2
        assert {"spec_scan", "time_scan", "position_scan", "count"} <= set(names)
        assert names["RE"] is session.RE
    finally:
        if session.writer.token is not None:
            session.RE.unsubscribe(session.writer.token)
        session.writer.close()
