"""The bus's server binds to loopback only, and the writer service talks to
nothing beyond it."""

from __future__ import annotations

from pathlib import Path

from sockets import bound_sockets  # pyright: ignore[reportMissingImports] (tests/security)

from panda_flyscan.storage.bus import BusOptions, BusPublisher, NatsServer


def test_nats_server_binds_to_loopback_only(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats")
    # A client connected, so the server's connection sockets are seen too.
    with (
        server,
        BusPublisher(BusOptions(server.url), "bl", journal_dir=tmp_path / "j"),
    ):
        assert server.pid is not None
        sockets = bound_sockets(server.pid)
        assert any(b.listening and b.port == server.port for b in sockets)
        beyond = [str(b) for b in sockets if not b.loopback]
        assert not beyond, f"nats-server serves beyond loopback: {beyond}"
