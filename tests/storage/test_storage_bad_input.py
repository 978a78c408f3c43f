"""Bad input is reported at set-up time, with an error naming the fix."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
import yaml
from storage_helpers import API_KEY

from panda_flyscan.storage import (
    ExternalDataUnreadableError,
    TiledAuthenticationError,
    TiledPermissionError,
    TiledServerConfigError,
    TiledService,
    TiledServiceError,
    TiledUnreachableError,
    local_tiled_config,
    subscribe_tiled_writer,
)
from panda_flyscan.storage.config import load_config


def _probe_nodes(client) -> list[str]:
    return [key for key in client if key.startswith("panda-flyscan-check-")]


def test_wrong_api_key(backend, RE, tmp_path: Path):
    with pytest.raises(TiledAuthenticationError, match="rejected the API key") as info:
        subscribe_tiled_writer(RE, backend.uri, "wrongkey", journal_dir=tmp_path / "j")
    assert "--api-key" in str(info.value)
    assert not (tmp_path / "j").exists()  # nothing subscribed, nothing journaled


def test_unreachable_uri_fails_fast(RE, tmp_path: Path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(TiledUnreachableError, match="panda-flyscan tiled serve"):
        subscribe_tiled_writer(RE, f"http://127.0.0.1:{port}", API_KEY)
    # Not Tiled's ~45 s of retries.
    assert time.monotonic() - started < 15


def test_not_an_http_uri(RE):
    with pytest.raises(TiledUnreachableError, match="not an http"):
        subscribe_tiled_writer(RE, "localhost:8000", API_KEY)


def test_unreadable_external_directory(backend, RE, tmp_path: Path):
    elsewhere = tmp_path / "not-readable-by-tiled"
    elsewhere.mkdir()
    with pytest.raises(ExternalDataUnreadableError) as info:
        subscribe_tiled_writer(RE, backend.uri, API_KEY, external_dirs=[elsewhere])
    message = str(info.value)
    assert "cannot read files in" in message
    assert f"--readable {elsewhere}" in message
    # The probe cleaned up after itself, on the server and on disk.
    assert _probe_nodes(backend.client()) == []
    assert list(elsewhere.iterdir()) == []


def test_missing_external_directory(backend, RE, tmp_path: Path):
    with pytest.raises(ExternalDataUnreadableError, match="does not exist"):
        subscribe_tiled_writer(
            RE, backend.uri, API_KEY, external_dirs=[tmp_path / "missing"]
        )


def test_readable_external_directory_passes(backend, RE, tmp_path: Path):
    writer = subscribe_tiled_writer(
        RE,
        backend.uri,
        API_KEY,
        external_dirs=[backend.external_dir],
        journal_dir=tmp_path / "j",
    )
    try:
        assert _probe_nodes(backend.client()) == []
        assert not any(
            p.name.startswith(".panda-flyscan") for p in backend.external_dir.iterdir()
        )
    finally:
        assert writer.token is not None
        RE.unsubscribe(writer.token)
        writer.close()


@pytest.fixture(scope="module")
def multi_user_service(tmp_path_factory: pytest.TempPathFactory):
    """A server with per-user API keys (a toy password provider)."""
    base = tmp_path_factory.mktemp("multi-user")
    config = local_tiled_config(base / "data")
    config["authentication"] = {
        "providers": [
            {
                "provider": "toy",
                "authenticator": "tiled.authenticators:DictionaryAuthenticator",
                "args": {"users_to_passwords": {"alice": "alicepw"}},
            }
        ],
        "secret_keys": ["storagetestsecret"],
    }
    config["database"] = {
        "uri": f"sqlite:///{base / 'authn.db'}",
        "init_if_not_exists": True,
    }
    (base / "data" / "external").mkdir(parents=True)
    path = base / "config.yml"
    path.write_text(yaml.safe_dump(config))
    with TiledService(config_file=path, log_path=base / "server.log") as service:
        yield service


def _api_key(service: TiledService, scopes: list[str]) -> str:
    with httpx.Client() as http:
        token = (
            http.post(
                f"{service.uri}/auth/provider/toy/token",
                data={"username": "alice", "password": "alicepw"},
            )
            .raise_for_status()
            .json()["access_token"]
        )
        response = http.post(
            f"{service.uri}/auth/apikey",
            json={"scopes": scopes, "expires_in": 3600},
            headers={"Authorization": f"Bearer {token}"},
        )
        return response.raise_for_status().json()["secret"]


def test_read_only_key(multi_user_service, RE):
    key = _api_key(multi_user_service, ["read:metadata", "read:data"])
    with pytest.raises(TiledPermissionError, match="lacks the scopes") as info:
        subscribe_tiled_writer(RE, multi_user_service.uri, key)
    assert "create:node" in str(info.value)
    assert "tiled api_key create" in str(info.value)


def test_user_key_without_register_scope(multi_user_service, RE):
    # Tiled's default 'user' role cannot register external files: the run
    # would fail at its first StreamResource. Caught at subscribe time.
    key = _api_key(multi_user_service, ["inherit"])
    with pytest.raises(TiledPermissionError, match="register"):
        subscribe_tiled_writer(RE, multi_user_service.uri, key)


def test_server_without_table_storage(RE, tmp_path: Path):
    config = local_tiled_config(tmp_path / "data", api_key=API_KEY)
    config["catalog"]["writable_storage"] = [str(tmp_path / "data" / "data")]
    (tmp_path / "data" / "data").mkdir(parents=True)
    (tmp_path / "data" / "external").mkdir(parents=True)
    path = tmp_path / "file-only.yml"
    path.write_text(yaml.safe_dump(config))
    with TiledService(
        config_file=path, api_key=API_KEY, log_path=tmp_path / "log"
    ) as svc:
        started = time.monotonic()
        with pytest.raises(TiledServerConfigError, match="SQL table store"):
            subscribe_tiled_writer(RE, svc.uri, API_KEY)
        assert time.monotonic() - started < 15  # no minutes of retries on the 500
        assert _probe_nodes(svc.client()) == []


def test_server_refuses_missing_readable_directory(tmp_path: Path):
    with pytest.raises(TiledServiceError, match="does not exist"):
        load_config(local_tiled_config(tmp_path / "d", readable=[tmp_path / "nope"]))
    service = TiledService(
        tmp_path / "d", readable=[tmp_path / "nope"], api_key=API_KEY
    )
    with pytest.raises(TiledServiceError, match="does not exist"):
        service.start()
    assert not service.running


def test_api_key_must_be_alphanumeric(tmp_path: Path):
    with pytest.raises(TiledServiceError, match="alphanumeric"):
        TiledService(tmp_path, api_key="not-alnum!")
