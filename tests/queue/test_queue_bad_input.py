"""Bad input to the queue server's launcher and clients: an unreachable RE
Manager, Redis or Tiled is a clear error naming the address, within a second
or two, never a hang; a malformed spec is refused naming what is wrong. No
server is started here (only a socket that accepts and never answers)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from scanspec.specs import Fly, Line

from panda_flyscan.app.cli import main
from panda_flyscan.app.queue.plans import deserialize_spec
from panda_flyscan.app.queue.server import (
    QueueServer,
    QueueServerError,
    QueueStack,
    connect_queue_server,
)
from panda_flyscan.app.queue.settings import ProfileError, ProfileSettings
from panda_flyscan.plans import PlanArgumentError
from panda_flyscan.storage.cluster import free_loopback_port


def _nothing_listening() -> str:
    return f"tcp://127.0.0.1:{free_loopback_port()}"


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def test_a_client_of_nothing_fails_at_once_naming_the_address() -> None:
    address = _nothing_listening()
    start = time.monotonic()
    with pytest.raises(QueueServerError, match=f"no queue server .* at {address}"):
        connect_queue_server(address)
    assert time.monotonic() - start < 1.0


def test_a_client_of_something_else_fails_after_its_timeout(silent_server: str) -> None:
    start = time.monotonic()
    with pytest.raises(
        QueueServerError, match=f"no queue server answers at {silent_server}"
    ):
        connect_queue_server(silent_server, timeout=1.0)
    assert time.monotonic() - start < 3.0


def test_queue_status_names_the_address() -> None:
    address = _nothing_listening()
    result = CliRunner().invoke(
        main, ["queue", "status", "--zmq-control-addr", address]
    )
    assert result.exit_code == 1
    assert address in result.output and "nothing accepts connections" in result.output


def _settings(tmp_path: Path) -> ProfileSettings:
    return ProfileSettings(
        tiled_uri="http://127.0.0.1:1/api/v1",
        tiled_api_key=None,
        data_dir=tmp_path / "data",
        panda_prefix="NONE:PANDA:",
        motor_pvs={"x": "NONE:M1"},
        detector_prefixes={"DETECTOR_PREFIX": "NONE:DET:"},
    )


def test_an_unreachable_redis_is_refused_before_anything_starts(tmp_path: Path) -> None:
    redis = f"127.0.0.1:{free_loopback_port()}"
    server = QueueServer(tmp_path, _settings(tmp_path), redis_addr=redis)
    start = time.monotonic()
    # start-re-manager itself would retry an unreachable Redis for ever.
    with pytest.raises(QueueServerError, match=f"no Redis at {redis}"):
        server.start()
    assert time.monotonic() - start < 2.0
    assert server.processes == []


def test_serve_refuses_unreachable_servers_given(tmp_path: Path) -> None:
    redis = f"127.0.0.1:{free_loopback_port()}"
    tiled = f"http://127.0.0.1:{free_loopback_port()}/api/v1"
    stacks = {
        redis: QueueStack(tmp_path, control_port=0, info_port=0, redis_addr=redis),
        tiled: QueueStack(tmp_path, control_port=0, info_port=0, tiled_uri=tiled),
    }
    for address, stack in stacks.items():
        with pytest.raises(QueueServerError, match=f"at {address}"):
            stack.start()
        assert stack.beamline is None and stack.server is None
    result = CliRunner().invoke(
        main, ["queue", "serve", "--work-dir", str(tmp_path), "--redis-addr", redis]
    )
    assert result.exit_code == 1 and f"no Redis at {redis}" in result.output


def test_a_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = QueueServer(tmp_path, _settings(tmp_path), control_port=port)
        with pytest.raises(QueueServerError, match=f"127.0.0.1:{port}"):
            server.start()
        assert server.processes == []


MOTORS = {"x": "motor x", "y": "motor y"}


def test_a_serialised_spec_comes_back_over_the_motors() -> None:
    spec = Fly(0.01 @ (Line("y", 0, 1, 3) * ~Line("x", 0, 2, 5)))
    back = deserialize_spec(spec.serialize(), MOTORS)
    assert back.axes() == ["motor y", "motor x"]
    import json

    assert deserialize_spec(json.dumps(spec.serialize()), MOTORS) == back


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("{not json", "spec is not JSON"),
        ([1, 2], "must be a serialised scanspec Spec"),
        ({"type": "Nothing"}, "spec is not a scanspec Spec"),
        (Line("q", 0, 1, 3).serialize(), r"spec axes \['q'\] are not motors"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_problem(spec: object, problem: str) -> None:
    with pytest.raises(PlanArgumentError, match=problem):
        deserialize_spec(spec, MOTORS)  # type: ignore[arg-type]


def test_a_missing_profile_variable_is_named() -> None:
    with pytest.raises(ProfileError, match=r"needs TILED_URI, .*PANDA_PREFIX"):
        ProfileSettings.from_env({"PANDA_FLYSCAN_BEAMLINE": "real"})


def test_the_pandas_address_reaches_the_worker() -> None:
    """PANDA_HOST (the PandA's control port: streamed, pausable spec_scans)
    read from the environment and written back for the worker; unset, none."""
    env = {
        "PANDA_FLYSCAN_BEAMLINE": "real",
        "TILED_URI": "http://127.0.0.1:8000",
        "PANDA_FLYSCAN_DATA_DIR": "/data",
        "PANDA_PREFIX": "BL01:PANDA:",
        "MOTOR_PV": "BL01:M1",
    }
    assert ProfileSettings.from_env(env).panda_host is None
    settings = ProfileSettings.from_env({**env, "PANDA_HOST": "panda-01"})
    assert settings.panda_host == "panda-01"
    assert settings.to_env()["PANDA_HOST"] == "panda-01"
    assert ProfileSettings.from_env(settings.to_env()) == settings
