"""Connecting to NATS JetStream and the streams the documents live in.

Subjects (one per RunEngine, so that a run's documents are in order):

* ``bluesky.<beamline>.documents``: every document of one RunEngine, in the
  order it emitted them, each message one journal line
  (:func:`..journal.encode`: ``{"name": ..., "doc": ...}``, numpy values as
  lists), in the stream :data:`DOCUMENTS_STREAM` (file storage).
* ``bluesky.quarantine``: messages the writer service could not use, with the
  original subject, sequence and reason in headers, in the stream
  :data:`QUARANTINE_STREAM`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from nats.aio.client import Client
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from .errors import BusUnreachableError

logger = logging.getLogger(__name__)

DEFAULT_BUS_URL = "nats://127.0.0.1:4222"
DOCUMENTS_STREAM = "BLUESKY_DOCUMENTS"
DOCUMENTS_SUBJECTS = "bluesky.*.documents"
QUARANTINE_STREAM = "BLUESKY_QUARANTINE"
QUARANTINE_SUBJECT = "bluesky.quarantine"
#: Environment variables of the bus credentials (CLI and services).
USER_ENV = "PANDA_FLYSCAN_BUS_USER"
PASSWORD_ENV = "PANDA_FLYSCAN_BUS_PASSWORD"
TOKEN_ENV = "PANDA_FLYSCAN_BUS_TOKEN"
#: Seconds to wait for the server at start-up before a clear error.
CONNECT_TIMEOUT = 3.0

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def documents_subject(beamline: str) -> str:
    """The subject of one RunEngine's documents, ``bluesky.<beamline>.documents``."""
    if not _TOKEN.fullmatch(beamline):
        raise ValueError(
            f"beamline name {beamline!r} is not one NATS subject token "
            "(letters, digits, '_' and '-' only)"
        )
    return f"bluesky.{beamline}.documents"


@dataclass(frozen=True)
class BusOptions:
    """Where the bus is and how to log in.

    ``user``/``password`` or ``token`` as the server requires (nats-server
    ``--user``/``--pass`` or ``--auth``); none for an open local server.
    """

    url: str = DEFAULT_BUS_URL
    user: str | None = None
    password: str | None = None
    token: str | None = None
    connect_timeout: float = CONNECT_TIMEOUT

    @property
    def address(self) -> str:
        """The URL without credentials, for messages."""
        parts = urlsplit(self.url)
        host = parts.hostname or "?"
        return f"{parts.scheme}://{host}:{parts.port or 4222}"


async def connect_bus(options: BusOptions, *, name: str) -> Client:
    """Connect within ``options.connect_timeout`` or raise BusUnreachableError.

    nats-py retries a dead server for minutes by default; at start-up that is
    a hang, so the first connection is bounded. Once connected, reconnects
    are nats-py's (a server restart during a run is ridden out).
    """
    client = Client()
    last_error: list[BaseException] = []

    async def on_error(err: Exception) -> None:
        last_error.append(err)
        logger.debug("NATS (%s): %s", options.address, err)

    kwargs: dict[str, Any] = {
        "servers": [options.url],
        "name": name,
        "connect_timeout": options.connect_timeout,
        "error_cb": on_error,
        "max_reconnect_attempts": -1,  # after start-up: ride out restarts
        "reconnect_time_wait": 0.5,
    }
    if options.user is not None:
        kwargs["user"] = options.user
        kwargs["password"] = options.password or ""
    if options.token is not None:
        kwargs["token"] = options.token
    try:
        await asyncio.wait_for(client.connect(**kwargs), options.connect_timeout)
    except Exception as err:  # timeout, refused, auth: all the same to a user
        await client.close()
        cause = last_error[-1] if last_error else err
        raise BusUnreachableError(
            f"no NATS server answers at {options.address} within "
            f"{options.connect_timeout:g} s ({type(cause).__name__}: {cause}). "
            "Start one (`panda-flyscan bus serve`) or check the address and "
            "credentials."
        ) from err
    return client


async def ensure_streams(js: JetStreamContext) -> None:
    """Create the documents and quarantine streams if missing (idempotent)."""
    for config in (
        StreamConfig(
            name=DOCUMENTS_STREAM,
            subjects=[DOCUMENTS_SUBJECTS],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            # A publisher's retry of the same document is stored once.
            duplicate_window=120.0,
        ),
        StreamConfig(
            name=QUARANTINE_STREAM,
            subjects=[QUARANTINE_SUBJECT],
            storage=StorageType.FILE,
        ),
    ):
        try:
            await js.stream_info(config.name or "")
        except NotFoundError:
            try:
                await js.add_stream(config)
            except BadRequestError:  # created meanwhile by another client
                await js.stream_info(config.name or "")
