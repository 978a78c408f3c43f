"""Running a Tiled server in this process: what ``panda-flyscan tiled serve`` does.

* :func:`run_server` serves any Tiled configuration with uvicorn until
  SIGINT/SIGTERM, and calls back with the API URI once ``/healthz`` answers.
* :func:`serve_local` does that for the embedded local layout
  (:func:`.config.local_tiled_config`), holding a lock on its data directory.

The server binds its socket before it starts (port 0 picks a free port), so
the URI is known without races. To run a server from Python without blocking
(and off the RunEngine's GIL), use :class:`.service.TiledService`.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from ..polling import poll_until
from .config import (
    DEFAULT_API_KEY,
    DEFAULT_HOST,
    LocalLayout,
    check_api_key,
    default_data_dir,
    load_config,
    local_tiled_config,
)
from .errors import TiledServiceError

__all__ = ["STARTUP_TIMEOUT", "run_server", "serve_local"]

#: How long a new server may take to answer (here, and in :class:`.TiledService`).
STARTUP_TIMEOUT = 90.0


def _log_config() -> dict[str, Any]:
    """Tiled's logging configuration with every handler on stderr.

    stdout is kept for the one line scripts read: the URI.
    """
    from tiled.server.logging_config import LOGGING_CONFIG

    log_config = copy.deepcopy(LOGGING_CONFIG)
    colour = sys.stderr.isatty()
    for handler in log_config["handlers"].values():
        if handler.get("class") == "logging.StreamHandler":
            handler["stream"] = "ext://sys.stderr"
    for formatter in log_config["formatters"].values():
        if "use_colors" in formatter:
            formatter["use_colors"] = colour
    return log_config


def _wait_until_answers(
    base_url: str, is_alive: Callable[[], bool], timeout: float
) -> None:
    """Poll ``/healthz`` until 200, the deadline, or the server dying."""
    with httpx.Client(trust_env=False) as http:

        def answers() -> bool:
            if not is_alive():
                raise TiledServiceError("the Tiled server stopped while starting")
            return http.get(f"{base_url}/healthz", timeout=1.0).status_code == 200

        poll_until(
            answers,
            timeout=timeout,
            retry_on=(httpx.HTTPError,),
            on_timeout=lambda: TiledServiceError(
                f"the Tiled server did not answer within {timeout:.0f} s"
            ),
        )


@contextlib.contextmanager
def _data_dir_lock(layout: LocalLayout) -> Iterator[None]:
    """Hold an exclusive lock on the data directory for the server's lifetime.

    SQLite and DuckDB files must not be served by two processes at once.
    """
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    with open(layout.lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise TiledServiceError(
                f"Another Tiled service (pid {owner}) is using {layout.data_dir}. "
                "Stop it, or give this one its own --data-dir."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, or an error naming the fix."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise TiledServiceError(
            f"Cannot listen on {host}:{port}: {err.strerror}. Pick another "
            "--port (0 picks a free one) or stop what uses it."
        ) from err
    return sock


def run_server(
    config: Mapping[str, Any] | str | Path,
    *,
    host: str | None = None,
    port: int | None = None,
    api_key: str | None = None,
    on_ready: Callable[[str], None] | None = None,
    data_dir_lock: Path | None = None,
) -> None:
    """Serve a Tiled configuration in this process until SIGINT or SIGTERM.

    ``host``/``port`` override the configuration's ``uvicorn`` section (port 0
    picks a free port), ``api_key`` its single-user API key. ``on_ready`` is
    called with the API URI once the server answers. ``data_dir_lock``: a local
    data directory to lock for the server's lifetime. Returns normally after a
    clean shutdown on a signal.
    """
    import uvicorn
    from tiled.server.app import build_app_from_config

    from .._compat.tiled import serialize_duckdb_access

    serialize_duckdb_access()
    parsed = load_config(config)
    if api_key is not None:
        parsed.authentication.single_user_api_key = check_api_key(api_key)
    host = host or str(parsed.uvicorn.get("host", DEFAULT_HOST))
    port = port if port is not None else int(parsed.uvicorn.get("port", 8000))

    lock = (
        _data_dir_lock(LocalLayout(data_dir_lock))
        if data_dir_lock is not None
        else contextlib.nullcontext()
    )
    with lock:
        app = build_app_from_config(parsed)
        sock = _bind(host, port)
        url_host = f"[{host}]" if sock.family == socket.AF_INET6 else host
        base_url = f"http://{url_host}:{sock.getsockname()[1]}"
        server = uvicorn.Server(
            uvicorn.Config(app, log_config=_log_config(), lifespan="on")
        )

        def announce() -> None:
            try:
                _wait_until_answers(
                    base_url, lambda: not server.should_exit, STARTUP_TIMEOUT
                )
            except TiledServiceError:
                return  # the main thread reports the failure
            if on_ready is not None:
                on_ready(f"{base_url}/api/v1")

        threading.Thread(target=announce, name="tiled-ready", daemon=True).start()

        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the
        # signal to the handler in place before it started: make that a no-op
        # so a requested stop is a normal return (exit status 0).
        previous = {
            sig: signal.signal(sig, lambda *_: None)
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            server.run(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            sock.close()
        if not server.started:
            raise TiledServiceError("the Tiled server failed to start (see log above)")


def serve_local(
    data_dir: str | Path | None = None,
    *,
    api_key: str = DEFAULT_API_KEY,
    host: str = DEFAULT_HOST,
    port: int = 8000,
    readable: Iterable[str | Path] = (),
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the embedded local service in the foreground (see :func:`run_server`)."""
    layout = LocalLayout(Path(data_dir).resolve() if data_dir else default_data_dir())
    layout.create()
    config = local_tiled_config(
        layout.data_dir,
        api_key=check_api_key(api_key),
        readable=readable,
        host=host,
        port=port,
    )
    run_server(
        config, host=host, port=port, on_ready=on_ready, data_dir_lock=layout.data_dir
    )
