"""Running the bus writer service as a process (``panda-flyscan tiled writer``):
logging, signals, the ready line; the logic is
:class:`panda_flyscan.storage.bus.WriterService`."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

#: The ready line's start on stdout (tests and scripts wait for it).
READY_PREFIX = "writer service:"


def run_writer_service(
    *,
    bus_url: str,
    user: str | None,
    password: str | None,
    token: str | None,
    tiled_uri: str,
    api_key: str | None,
    state_dir: Path,
    validate: bool = True,
) -> None:
    """Connect (a clear error if the bus or Tiled is unreachable), then
    consume until SIGTERM or Ctrl-C, ending cleanly."""
    from ..storage.bus import BusOptions, WriterService

    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request
    service = WriterService(
        BusOptions(bus_url, user=user, password=password, token=token),
        tiled_uri,
        api_key,
        state_dir=state_dir,
        validate=validate,
    )

    def on_signal(signum: int, frame: object) -> None:
        service.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def on_ready(message: str) -> None:
        print(message, flush=True)

    service.run(on_ready)
