"""Errors of the document bus; each says what went wrong and what to do."""

from __future__ import annotations

from ..errors import StorageError


class BusError(StorageError):
    """Base class of the bus's errors."""


class BusUnreachableError(BusError):
    """No NATS server answers at the given address (raised at start-up)."""


class BusServerError(BusError):
    """The local nats-server could not be started."""
