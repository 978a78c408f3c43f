"""The facility layout end to end: a plan submitted to the queue server, its
worker publishing the documents to NATS JetStream (``queue serve --bus``),
the writer service (its own process) writing them into Tiled. The worker
never talks to Tiled; the run lands there equal to the PandA's file."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bluesky_queueserver_api import BPlan

from panda_flyscan.app.queue.server import QueueServer
from panda_flyscan.app.queue.settings import (
    BUS_NAME_ENV,
    BUS_URL_ENV,
    DATA_DIR_ENV,
    TILED_URI_ENV,
    ProfileSettings,
)
from panda_flyscan.app.simulated import SimulatedBeamline
from panda_flyscan.polling import poll_until
from panda_flyscan.processes import ManagedProcess
from panda_flyscan.storage import TiledService, read_field
from panda_flyscan.storage.bus import NatsServer
from panda_flyscan.storage.hdf5 import read_datasets

API_KEY = "queuebustests"
WRITER_READY = re.compile(r"writer service: .*")
FRAMES = 300


@pytest.fixture(scope="module")
def facility(
    beamline: SimulatedBeamline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, TiledService, Path]]:
    base = tmp_path_factory.mktemp("queue-bus")
    data_dir = base / "data"
    data_dir.mkdir()
    with (
        NatsServer(base / "nats") as bus,
        TiledService(base / "tiled", api_key=API_KEY, readable=[data_dir]) as tiled,
    ):
        writer = ManagedProcess(
            "writer",
            [
                sys.executable,
                *("-m", "panda_flyscan", "tiled", "writer"),
                *("--bus", bus.url, "--tiled-uri", tiled.uri, "--api-key", API_KEY),
                *("--state-dir", str(base / "writer-state")),
            ],
            base / "writer.log",
            dict(os.environ),
            ready=WRITER_READY,
        )
        writer.start()
        try:
            writer.wait_ready(60)
            # No Tiled key for the worker: it must not need Tiled at all.
            settings = ProfileSettings.from_env(
                {
                    **beamline.env,
                    TILED_URI_ENV: "http://127.0.0.1:9/unused",
                    DATA_DIR_ENV: str(data_dir),
                    BUS_URL_ENV: bus.url,
                    BUS_NAME_ENV: "queuebl",
                }
            )
            with QueueServer(base / "qs", settings, env=os.environ) as server:
                api = server.client(timeout=10)
                try:
                    yield api, tiled, data_dir
                finally:
                    api.close()
        finally:
            writer.stop()


def test_a_plan_from_the_queue_reaches_tiled_through_the_bus(
    facility: tuple[Any, TiledService, Path],
) -> None:
    api, tiled, data_dir = facility
    api.item_add(BPlan("time_scan", "panda", FRAMES, 2e-3))
    api.queue_start()
    api.wait_for_idle(timeout=120)
    history: Any = api.history_get()
    result = history["items"][-1]["result"]
    assert result["exit_status"] == "completed", result.get("msg")
    (uid,) = result["run_uids"]

    def complete() -> bool:
        # The writer service writes asynchronously: nothing to wait on here.
        fresh = tiled.client()
        return uid in fresh and bool(fresh[uid].metadata.get("stop"))

    poll_until(complete, timeout=60, interval=0.2)
    client = tiled.client()
    run = client[uid]
    assert run.metadata["stop"]["exit_status"] == "success"
    assert run.metadata["stop"]["num_events"] == {"primary": FRAMES}
    rows = read_field(client, uid, "primary", "trigger_time")
    [path] = list(data_dir.rglob("*.h5"))  # the module's one run
    (in_file,) = read_datasets(path, "trigger_time")
    assert len(rows) == FRAMES == len(in_file)
    np.testing.assert_array_equal(rows, in_file)
    np.testing.assert_allclose(np.diff(rows), 2e-3, atol=1e-6)
