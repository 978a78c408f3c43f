"""Documents over a durable bus (NATS JetStream) to a writer service.

The RunEngine publishes with :class:`BusPublisher`; ``panda-flyscan tiled
writer --bus URL`` (:class:`WriterService`) writes the stream into Tiled with
the in-process writer's guarantees; :class:`NatsServer` runs a local
nats-server with JetStream. See docs/bus.md.

>>> with NatsServer("/tmp/nats") as bus:
...     publisher = BusPublisher(BusOptions(bus.url), "bl01")
...     RE.subscribe(publisher)

Needs the ``[facility]`` extra (nats-py).
"""

from __future__ import annotations

from .checkpoint import Checkpoint, CheckpointFile, RunTracker
from .errors import BusError, BusServerError, BusUnreachableError
from .messages import Malformed, Router, parse_message
from .nats_io import (
    DEFAULT_BUS_URL,
    DOCUMENTS_STREAM,
    DOCUMENTS_SUBJECTS,
    QUARANTINE_STREAM,
    QUARANTINE_SUBJECT,
    BusOptions,
    documents_subject,
)
from .publisher import BusPublisher, PublisherStats
from .server import NatsServer
from .service import ServiceStats, WriterService

__all__ = [
    "DEFAULT_BUS_URL",
    "DOCUMENTS_STREAM",
    "DOCUMENTS_SUBJECTS",
    "QUARANTINE_STREAM",
    "QUARANTINE_SUBJECT",
    "BusError",
    "BusOptions",
    "BusPublisher",
    "BusServerError",
    "BusUnreachableError",
    "Checkpoint",
    "CheckpointFile",
    "Malformed",
    "NatsServer",
    "PublisherStats",
    "Router",
    "RunTracker",
    "ServiceStats",
    "WriterService",
    "documents_subject",
    "parse_message",
]
