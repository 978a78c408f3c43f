"""An unreachable bus is a clear error at start-up, naming the address, for
the RunEngine's publisher and for the writer service; `panda-flyscan bus
serve` starts a server the publisher can use."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from panda_flyscan.processes import ManagedProcess
from panda_flyscan.storage.bus import (
    BusOptions,
    BusPublisher,
    BusUnreachableError,
    NatsServer,
)
from panda_flyscan.storage.cluster import free_loopback_port
from panda_flyscan.storage.journal import pending_journals, read_journal


def test_publisher_names_the_unreachable_address() -> None:
    port = free_loopback_port()  # nothing listens there
    with pytest.raises(BusUnreachableError, match=f"nats://127.0.0.1:{port}"):
        BusPublisher(BusOptions(f"nats://127.0.0.1:{port}", connect_timeout=1), "bl")


def test_writer_service_names_the_unreachable_address() -> None:
    port = free_loopback_port()
    result = subprocess.run(
        [
            sys.executable,
            *("-m", "panda_flyscan", "tiled", "writer"),
            *("--bus", f"nats://127.0.0.1:{port}"),
            *("--tiled-uri", f"http://127.0.0.1:{free_loopback_port()}"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"no NATS server answers at nats://127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_bus_serve_prints_a_url_the_publisher_uses(tmp_path: Path) -> None:
    process = ManagedProcess(
        "bus-serve",
        [
            sys.executable,
            *("-m", "panda_flyscan", "bus", "serve"),
            *("--store-dir", str(tmp_path / "nats"), "--port", "0"),
        ],
        tmp_path / "bus-serve.log",
        dict(os.environ),
        ready=re.compile(r"nats://127\.0\.0\.1:\d+"),
    )
    process.start()
    try:
        url = process.wait_ready(30).strip()
        with BusPublisher(BusOptions(url), "bl", journal_dir=tmp_path / "j") as pub:
            pub("start", {"uid": "r1", "time": 1.0})
            assert pub.flush(10)  # the publisher idle: a lone stop must wake it
            pub("stop", {"uid": "s1", "run_start": "r1", "time": 2.0})
            assert pub.stats.runs_durable == 1
    finally:
        process.stop()


def test_bus_dying_mid_run_leaves_the_run_journaled(tmp_path: Path) -> None:
    """The server killed mid-run: the stop waits its bounded time, the run's
    journal stays pending (replayable), and once a server is back on the
    same port and store the next run is durable again."""
    store, journal = tmp_path / "nats", tmp_path / "journal"
    server = NatsServer(store).start()
    try:
        pub = BusPublisher(
            BusOptions(server.url), "bl", journal_dir=journal, stop_timeout=2
        )
        pub("start", {"uid": "r1", "time": 1.0})
        assert pub.flush(10)
        server.kill()
        pub("stop", {"uid": "s1", "run_start": "r1", "time": 2.0})
        assert pub.stats.runs_not_durable == 1
        (pending,) = pending_journals(journal)
        docs, truncated = read_journal(pending)
        assert [name for name, _ in docs] == ["start", "stop"] and not truncated
        server = NatsServer(store, port=server.port).start()
        pub("start", {"uid": "r2", "time": 3.0})
        pub("stop", {"uid": "s2", "run_start": "r2", "time": 4.0})
        assert pub.stats.runs_durable == 1
        pub.close()
    finally:
        server.stop()
