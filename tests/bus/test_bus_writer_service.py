"""RunEngine -> NATS JetStream -> the writer service (its own process) ->
Tiled, on the simulated beamline: a flyscan lands equal to the PandA's file;
the service SIGKILLed mid-run and restarted completes the run exactly as the
in-process writer writes the same documents; malformed messages are
quarantined with a log line naming them and later runs still land."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import xarray as xr
from conftest import BEAMLINE, BusEnv
from nats.aio.client import Client

from panda_flyscan.plans import time_scan
from panda_flyscan.polling import poll_until
from panda_flyscan.storage import DurableTiledWriter, read_field, read_stream
from panda_flyscan.storage.bus import (
    QUARANTINE_STREAM,
    QUARANTINE_SUBJECT,
    documents_subject,
)
from panda_flyscan.storage.journal import encode


def test_flyscan_through_the_bus_lands_in_tiled(bus_env: BusEnv) -> None:
    writer = bus_env.start_writer()
    (uid,) = bus_env.RE(time_scan(bus_env.devices.panda, 1000, 1e-3))
    # The stop document waited for JetStream's acknowledgements.
    assert bus_env.publisher.stats.runs_not_durable == 0
    bus_env.wait_complete(uid)
    bus_env.check_against_file(uid, 1000)
    assert bus_env.client()[uid].metadata["stop"]["exit_status"] == "success"
    writer.stop()
    assert writer.exit_code() == 0


def test_writer_killed_mid_run_completes_it_on_restart(bus_env: BusEnv) -> None:
    frames = 6000
    writer = bus_env.start_writer()
    rows_flowing = threading.Event()
    uids: list[str] = []

    def watch(name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            uids.append(doc["uid"])
        elif name == "stream_datum":
            rows_flowing.set()

    killed = threading.Event()

    def kill_once_rows_in_tiled() -> None:
        assert rows_flowing.wait(60)
        uid = uids[-1]

        def rows_in_tiled() -> bool:
            try:
                rows = read_field(bus_env.client(), uid, "primary", "trigger_time")
            except Exception:  # the run or its stream not created yet
                return False
            return len(rows) > 0

        poll_until(rows_in_tiled, timeout=30, interval=0.05)
        writer.kill()  # SIGKILL, as a crash
        killed.set()

    token = bus_env.RE.subscribe(watch)
    fault = threading.Thread(target=kill_once_rows_in_tiled, daemon=True)
    fault.start()
    try:
        (uid,) = bus_env.RE(time_scan(bus_env.devices.panda, frames, 1e-3))
    finally:
        bus_env.RE.unsubscribe(token)
    fault.join(60)
    assert killed.is_set(), "the writer was not killed mid-run"
    client = bus_env.client()
    partial = len(read_field(client, uid, "primary", "trigger_time"))
    assert partial < frames and not client[uid].metadata.get("stop")

    restarted = bus_env.start_writer()
    bus_env.wait_complete(uid)
    bus_env.check_against_file(uid, frames)

    # The same documents through the in-process writer, into a container
    # of its own in the same Tiled: the two runs are equal.
    client = bus_env.client()
    if "reference" not in client:
        client.create_container("reference")
    reference = DurableTiledWriter(
        client["reference"], journal_dir=bus_env.base / "reference-journal"
    )
    with reference:
        for name, doc in bus_env.run_docs(uid):
            reference(name, doc)
    ref_client = bus_env.client()["reference"]
    assert reference.stats.runs_written == 1
    via_bus = read_stream(client, uid, "primary")
    in_process = read_stream(ref_client, uid, "primary")
    assert set(via_bus.data_vars) == set(in_process.data_vars)
    xr.testing.assert_equal(via_bus, in_process)
    assert client[uid].metadata["stop"] == ref_client[uid].metadata["stop"]
    assert sorted(client[uid]) == sorted(ref_client[uid])
    restarted.stop()


def test_malformed_messages_are_quarantined_and_later_runs_land(
    bus_env: BusEnv,
) -> None:
    writer = bus_env.start_writer()
    subject = documents_subject(BEAMLINE)
    bad = [
        b"{not json",
        encode("gossip", {"uid": "x"}).encode(),
        # An event page the TiledWriter would reject (uid must be a list).
        encode(
            "event_page",
            {"descriptor": "d", "uid": "u", "time": [1.0], "seq_num": [1]},
        ).encode(),
        # Well formed, but of no run the service knows.
        encode(
            "stop",
            {"uid": "s", "run_start": "nope", "time": 1.0, "exit_status": "success"},
        ).encode(),
    ]
    sequences = asyncio.run(_publish_raw(bus_env.bus.url, subject, bad))
    (uid,) = bus_env.RE(time_scan(bus_env.devices.panda, 500, 1e-3))
    bus_env.wait_complete(uid)
    bus_env.check_against_file(uid, 500)

    log = writer.log_path

    def all_logged() -> bool:
        text = log.read_text()
        return all(f"QUARANTINED {subject} #{seq}:" in text for seq in sequences)

    poll_until(all_logged, timeout=30, interval=0.1)
    text = log.read_text()
    for reason in ("not JSON", "unknown document name 'gossip'", "invalid event_page"):
        assert reason in text
    assert "belongs to no open run" in text
    quarantined = asyncio.run(_read_quarantine(bus_env.bus.url, len(bad)))
    assert [int(h["Bluesky-Sequence"]) for h, _ in quarantined] == sequences
    assert [data for _, data in quarantined] == bad
    assert all(h["Bluesky-Subject"] == subject for h, _ in quarantined)
    writer.stop()


async def _publish_raw(url: str, subject: str, payloads: list[bytes]) -> list[int]:
    nc = Client()
    await nc.connect(url, connect_timeout=5)
    try:
        js = nc.jetstream()
        return [(await js.publish(subject, p)).seq for p in payloads]
    finally:
        await nc.close()


async def _read_quarantine(url: str, count: int) -> list[tuple[dict[str, str], bytes]]:
    nc = Client()
    await nc.connect(url, connect_timeout=5)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(QUARANTINE_SUBJECT, stream=QUARANTINE_STREAM)
        out = []
        for _ in range(count):
            msg = await sub.next_msg(timeout=10)
            out.append((dict(msg.headers or {}), msg.data))
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


def test_the_whole_stream_delivered_again_changes_nothing(bus_env: BusEnv) -> None:
    """The checkpoint lost: the service reads the stream from its first
    message again; every run Tiled holds complete is skipped (no row
    written twice) and a new run still lands."""
    earlier = [doc["uid"] for name, doc in bus_env.docs if name == "start"]
    assert earlier, "runs from the tests above"
    client = bus_env.client()
    rows = {
        uid: len(read_field(client, uid, "primary", "trigger_time")) for uid in earlier
    }
    (bus_env.base / "writer-state" / "checkpoint.json").unlink()
    writer = bus_env.start_writer()
    (uid,) = bus_env.RE(time_scan(bus_env.devices.panda, 200, 1e-3))
    bus_env.wait_complete(uid)
    bus_env.check_against_file(uid, 200)
    client = bus_env.client()
    for run, count in rows.items():
        assert len(read_field(client, run, "primary", "trigger_time")) == count
    writer.stop()
    log = writer.log_path.read_text()
    for run in earlier:
        assert f"run {run}: already complete in Tiled, skipped" in log
