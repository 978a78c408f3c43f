"""The local service: started and stopped from Python and from the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import bluesky.plans as bp
import httpx
import pytest
from ophyd.sim import det  # pyright: ignore[reportAttributeAccessIssue]
from storage_helpers import API_KEY

from panda_flyscan.storage import (
    TiledService,
    TiledServiceError,
    read_events,
    subscribe_tiled_writer,
)
from panda_flyscan.storage.config import SERVER_API_KEY_ENV

CONSOLE_SCRIPT = Path(sys.executable).parent / "panda-flyscan"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_service_persists_across_restart(RE, tmp_path: Path):
    service = TiledService(tmp_path / "data", api_key=API_KEY)
    try:
        with service:
            pid, uri = service.pid, service.uri
            assert httpx.URL(uri).host == "127.0.0.1"
            assert (
                httpx.get(f"{uri.removesuffix('/api/v1')}/healthz").status_code == 200
            )
            writer = subscribe_tiled_writer(
                RE, uri, API_KEY, journal_dir=tmp_path / "j"
            )
            (uid,) = RE(bp.count([det], 5))
            assert writer.token is not None
            RE.unsubscribe(writer.token)
            writer.close()
        assert not _pid_alive(pid)
        assert not service.running
        with service:  # same data directory: the run is still there
            assert service.uri == uri  # and the same port
            events = read_events(service.client(), uid)
            assert list(events["seq_num"]) == [1, 2, 3, 4, 5]
            assert service.client()[uid].metadata["stop"]["exit_status"] == "success"
    finally:
        service.stop()


def test_two_services_cannot_share_a_data_dir(tmp_path: Path):
    with TiledService(tmp_path / "data", api_key=API_KEY) as first:
        second = TiledService(tmp_path / "data", api_key=API_KEY)
        with pytest.raises(TiledServiceError, match="Another Tiled service"):
            second.start()
        assert first.running


def _serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start `panda-flyscan tiled serve` and read the URI it prints."""
    env = {**os.environ, SERVER_API_KEY_ENV: API_KEY}
    process = subprocess.Popen(
        [
            str(CONSOLE_SCRIPT),
            "tiled",
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--port",
            "0",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(90)
    if not lines or not lines[0].strip():
        process.kill()
        process.wait()
        pytest.fail(
            f"serve printed no URI: {process.stderr.read() if process.stderr else ''}"
        )
    return process, lines[0].strip()


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"]
)
def test_cli_serve_prints_uri_and_stops_cleanly(tmp_path: Path, sig: signal.Signals):
    readable = tmp_path / "detector-data"
    readable.mkdir()
    process, uri = _serve(tmp_path, "--readable", str(readable))
    try:
        assert uri.startswith("http://127.0.0.1:") and uri.endswith("/api/v1")
        # It answers, and only with the key.
        assert (
            httpx.get(
                f"{uri}/", headers={"Authorization": f"Apikey {API_KEY}"}
            ).status_code
            == 200
        )
        assert (
            httpx.get(
                f"{uri}/metadata/", headers={"Authorization": "Apikey nope"}
            ).status_code
            == 401
        )
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        assert "Tiled stopped." in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_serve_reports_a_busy_port(tmp_path: Path):
    with TiledService(tmp_path / "other", api_key=API_KEY) as other:
        port = str(httpx.URL(other.uri).port)
        result = subprocess.run(
            [
                str(CONSOLE_SCRIPT),
                "tiled",
                "serve",
                "--data-dir",
                str(tmp_path / "d"),
                "--port",
                port,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode != 0
    assert "Cannot listen on 127.0.0.1" in result.stderr
    assert "--port" in result.stderr


def test_cli_help_explains_itself():
    for args in (
        ["tiled", "--help"],
        ["tiled", "serve", "--help"],
        ["tiled", "replay", "--help"],
    ):
        result = subprocess.run(
            [str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0
        assert "Usage:" in result.stdout
    serve_help = subprocess.run(
        [str(CONSOLE_SCRIPT), "tiled", "serve", "--help"],
        capture_output=True,
        text=True,
    ).stdout
    for option in ("--data-dir", "--port", "--api-key", "--readable", "--config"):
        assert option in serve_help
