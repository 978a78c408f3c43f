"""Tiled as a cluster: two server processes on one PostgreSQL catalog and
storage database and one Redis streaming cache. A flyscan on the simulated
beamline is written through the first; the second sees the run appear live
(a websocket subscription, carried by Redis) and serves it, equal to the
PandA's file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import pytest
from bluesky import RunEngine
from storage_pg import tiled_cluster_config

from panda_flyscan.app.simulated import SimulatedBeamline, simulated_beamline_devices
from panda_flyscan.plans import time_scan
from panda_flyscan.storage import (
    TiledCluster,
    read_field,
    subscribe_tiled_writer,
)
from panda_flyscan.storage.config import SERVER_API_KEY_ENV
from panda_flyscan.storage.hdf5 import read_datasets

API_KEY = "clustertest"


@pytest.fixture
def cluster_config(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A configuration on a fresh PostgreSQL and Redis, and the PandA's
    directory."""
    with tiled_cluster_config(tmp_path, API_KEY) as made:
        yield made


@pytest.fixture
def cluster(
    cluster_config: tuple[Path, Path], tmp_path: Path
) -> Iterator[tuple[TiledCluster, Path]]:
    config, panda_data = cluster_config
    with TiledCluster(
        config, servers=2, api_key=API_KEY, log_dir=tmp_path / "logs"
    ) as tiled:
        yield tiled, panda_data


def test_write_through_one_server_read_and_follow_through_the_other(
    beamline: SimulatedBeamline, cluster: tuple[TiledCluster, Path], tmp_path: Path
) -> None:
    tiled, panda_data = cluster
    writer_side, reader_side = tiled.services
    assert writer_side.uri != reader_side.uri
    reader = reader_side.client()
    appeared: list[str] = []
    seen = threading.Event()

    def on_child(update: Any) -> None:
        appeared.append(update.key)
        seen.set()

    subscription = reader.subscribe()
    subscription.child_created.add_callback(on_child)
    subscription.start_in_thread()
    RE = RunEngine({})
    writer = subscribe_tiled_writer(
        RE,
        writer_side.uri,
        API_KEY,
        external_dirs=[panda_data],
        journal_dir=tmp_path / "journal",
    )
    try:
        devices = simulated_beamline_devices(
            panda_data,
            panda_prefix=beamline.panda_prefix,
            motor_pv=beamline.motor_pv,
            detector_prefix=beamline.detector_prefix,
        )
        (uid,) = RE(time_scan(devices.panda, 500, 1e-3))  # pyright: ignore[reportGeneralTypeIssues]
        assert seen.wait(30), "no live update through the other server"
        assert uid in appeared
        rows = read_field(reader, uid, "primary", "trigger_time")
        info = devices.path_provider.last["panda"]
        path = Path(info.directory_path) / f"{info.filename}.h5"
        (in_file,) = read_datasets(path, "trigger_time")
        assert len(rows) == 500
        np.testing.assert_array_equal(rows, in_file)
        assert reader[uid].metadata["stop"]["exit_status"] == "success"
    finally:
        subscription.disconnect()
        if writer.token is not None:
            RE.unsubscribe(writer.token)
        writer.close()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_cancel(), RE.loop).result(10)
        RE.loop.call_soon_threadsafe(RE.loop.stop)


async def _cancel() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _read_lines(stream: IO[str], count: int, timeout: float) -> list[str]:
    """``count`` lines of ``stream`` (a pipe), or fewer after ``timeout``."""
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        for line in stream:
            lines.append(line.strip())
            if len(lines) == count:
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    done.wait(timeout)
    return lines


def test_tiled_serve_runs_several_servers_on_one_configuration(
    cluster_config: tuple[Path, Path],
) -> None:
    """``panda-flyscan tiled serve --config F --servers 2`` prints two API URIs
    that both serve the same catalog, and SIGTERM stops both."""
    config, _ = cluster_config
    env = {**os.environ, SERVER_API_KEY_ENV: API_KEY}
    command = [sys.executable, "-m", "panda_flyscan", "tiled", "serve"]
    command += ["--config", str(config), "--servers", "2", "--port", "0"]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as server:
        try:
            assert server.stdout is not None
            uris = _read_lines(server.stdout, 2, timeout=120)
            assert len(uris) == 2, f"printed {uris}"
            assert len({httpx.URL(uri).port for uri in uris}) == 2
            headers = {"Authorization": f"Apikey {API_KEY}"}
            created = httpx.post(
                f"{uris[0]}/metadata/",
                json={
                    "data_sources": [],
                    "metadata": {"made": "through the first"},
                    "specs": [],
                    "structure_family": "container",
                    "id": "shared",
                },
                headers=headers,
            )
            assert created.status_code == 200, created.text
            seen = httpx.get(f"{uris[1]}/metadata/shared", headers=headers)
            assert seen.status_code == 200, seen.text
            assert seen.json()["data"]["attributes"]["metadata"] == {
                "made": "through the first"
            }
            server.send_signal(signal.SIGTERM)
            assert server.wait(30) == 0
            for uri in uris:
                with pytest.raises(httpx.ConnectError):
                    httpx.get(uri, timeout=2)
        finally:
            if server.poll() is None:
                server.kill()


def test_several_servers_need_a_shared_catalog() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "panda_flyscan", "tiled", "serve", "--servers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--servers needs --config" in result.stderr
    assert "Traceback" not in result.stderr
