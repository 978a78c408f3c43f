"""Nothing lost: the Tiled server dies in the middle of a run.

The server under test runs in its own subprocess and is killed (SIGKILL, by
PID) while a run with event data and PandA-like HDF5 data is going. The same
documents also go, live, to a second server through bluesky-tiled-plugins'
TiledWriter: the reference. After a restart and a replay, the run in the
first server must equal the reference: no document lost, none duplicated.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import h5py
import numpy as np
from bluesky_tiled_plugins import TiledWriter
from ophyd.sim import det, motor  # pyright: ignore[reportAttributeAccessIssue]
from ophyd_async.core import TriggerInfo, init_devices
from storage_devices import SimPandaHDF
from storage_helpers import API_KEY, DocCollector, assert_runs_equal

from panda_flyscan.storage import (
    ReplayStatus,
    TiledService,
    pending_journals,
    replay,
    subscribe_tiled_writer,
)

STEPS = 300
PANDA_ROWS = 200


def outage_plan(panda: SimPandaHDF):
    """(det, motor) steps at ~100 Hz while the PandA captures, collected as it goes."""
    yield from bps.stage_all(panda)
    uid = yield from bps.open_run(md={"purpose": "outage test"})
    info = TriggerInfo(number_of_events=PANDA_ROWS, livetime=0.005, deadtime=0.005)
    yield from bps.prepare(panda, info, wait=True)
    yield from bps.declare_stream(panda, name="panda", collect=True)
    yield from bps.kickoff(panda, wait=True)
    for step in range(STEPS):
        yield from bps.mv(motor, step * 0.01)
        yield from bps.trigger_and_read([det, motor])
        yield from bps.sleep(0.01)
        if step % 25 == 24:
            yield from bps.collect(panda, name="panda")
    yield from bps.complete(panda, wait=True)
    yield from bps.collect(panda, name="panda")
    yield from bps.close_run()
    yield from bps.unstage_all(panda)
    return uid


def test_server_killed_mid_run_then_replayed(sqlite_backend, RE, tmp_path: Path):
    external = sqlite_backend.external_dir
    journal = tmp_path / "journal"
    service = TiledService(tmp_path / "victim", api_key=API_KEY, readable=[external])
    try:
        service.start()
        writer = subscribe_tiled_writer(
            RE,
            service.uri,
            API_KEY,
            journal_dir=journal,
            external_dirs=[external],
            stop_timeout=5.0,
        )
        reference_client = sqlite_backend.client()
        RE.subscribe(TiledWriter(reference_client))
        collector = DocCollector()
        RE.subscribe(collector)
        with init_devices():
            panda = SimPandaHDF(external, filename="panda-outage", name="panda")

        def kill_when_a_third_is_done() -> None:
            deadline = time.monotonic() + 60
            while (
                len(collector.of("event")) < STEPS // 3 and time.monotonic() < deadline
            ):
                time.sleep(0.01)
            service.kill()

        killer = threading.Thread(target=kill_when_a_third_is_done)
        killer.start()
        started = time.monotonic()
        (uid,) = RE(outage_plan(panda))
        elapsed = time.monotonic() - started
        killer.join()

        # The run completed, without waiting out Tiled's retries.
        assert collector.of("stop")[0]["exit_status"] == "success"
        assert len(collector.of("event")) == STEPS
        assert elapsed < 60
        assert writer.stats.runs_pending == 1
        assert [p.stem for p in pending_journals(journal)] == [uid]

        service.start()  # same data directory, same port
        client = service.client()
        partial = client[uid]
        assert "stop" not in partial.metadata  # an outage leaves a partial copy

        (result,) = replay(client, journal)
        assert result.status is ReplayStatus.REPLAYED, result.message
        assert result.replaced_partial and result.complete
        assert result.documents == len(collector.docs)
        assert pending_journals(journal) == []

        replayed = client[uid]
        assert_runs_equal(replayed, reference_client[uid])
        # No event lost or duplicated; PandA rows all there.
        seq = np.asarray(replayed["primary"]["seq_num"].read())
        np.testing.assert_array_equal(np.sort(seq), np.arange(1, STEPS + 1))
        with h5py.File(panda.file_path, "r", swmr=True) as handle:
            counts = np.asarray(handle["/counter1"])
        assert counts.shape == (PANDA_ROWS,)
        np.testing.assert_array_equal(
            replayed["panda"].read()["counter1"].values, counts
        )

        # The writer goes on writing live once the server is back.
        (next_uid,) = RE(bp.count([det], 3))
        assert len(client[next_uid]["primary"].read()["det"]) == 3
        assert writer.stats.runs_written == 1
    finally:
        service.stop()
