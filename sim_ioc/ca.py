"""Channel Access plumbing shared by the simulated motor and detector.

The servers are caproto's asyncio CA server, run in the simulated PandA's own
event loop (see :mod:`sim_ioc.__main__`). caproto serves any ``name ->
ChannelData`` mapping; this module adds the two things record support gives a
real IOC and plain caproto channels lack:

* **put handlers** (``on_put``): code that runs when a client writes (or the
  server calls :meth:`Hooked.write`), may refuse the value (raise
  :class:`PutRefused`: the client's put fails with ``ECA_PUTFAIL``) or replace
  it, and may hold the put callback open until an operation finishes (return
  :class:`Deferred`), as a motor record's VAL or an areaDetector ``Acquire``
  busy record does;
* **read-only** channels (``_RBV``, ``DMOV``...): writes are refused with no
  write access, as for a record whose fields are read-only.

Server-side updates go through :meth:`Hooked.post`, which skips the handlers
and, like a record with ``MDEL=0``, posts a monitor only when the value
changes.

:class:`Server` is caproto's asyncio server with ``TCP_NODELAY`` on each client
circuit, as EPICS base's RSRV sets it: without it, a client with several
requests in flight (ophyd-async gathers a motor's limit reads) waits for
Nagle's algorithm and the client's delayed ACK, about 40 ms per exchange,
where a real IOC answers in under a millisecond.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from caproto import (
    AccessRights,
    ChannelChar,
    ChannelData,
    ChannelDouble,
    ChannelEnum,
    ChannelInteger,
    ChannelString,
    ChannelType,
)
from caproto.asyncio.server import Context

__all__ = [
    "Deferred",
    "Hooked",
    "PutHandler",
    "PutRefused",
    "Server",
    "boolean",
    "double",
    "enum",
    "integer",
    "long_string",
    "string",
]


class Server(Context):
    """caproto's asyncio CA server, each circuit with ``TCP_NODELAY``.

    asyncio sets it itself only on sockets whose protocol is IPPROTO_TCP;
    caproto's listening socket is made with protocol 0, so its accepted
    sockets are left with Nagle's algorithm on.
    """

    async def tcp_handler(self, client: Any, addr: Any) -> None:
        sock = client.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await super().tcp_handler(client, addr)


class PutRefused(ValueError):
    """Raised by a put handler to refuse a client's write (``ECA_PUTFAIL``)."""


@dataclass
class Deferred:
    """What a put handler returns to complete the put callback only once
    ``done`` finishes: ``value`` is stored and posted at once."""

    value: Any
    done: Awaitable[object]


#: ``async def handler(value) -> value to store | None (keep) | Deferred``.
PutHandler = Callable[[Any], Awaitable[Any]]


class Hooked(ChannelData):
    """Mixin for caproto channel classes: put handlers, read-only, post()."""

    on_put: PutHandler | None = None
    read_only: bool = False

    def _deferred_store(self) -> dict[int, Awaitable[object]]:
        store: dict[int, Awaitable[object]] | None = self.__dict__.get("_deferred")
        if store is None:
            store = self.__dict__["_deferred"] = {}
        return store

    def check_access(self, hostname: str, username: str) -> AccessRights:
        if self.read_only:
            return AccessRights.READ
        return super().check_access(hostname, username)

    async def verify_value(self, data: Any) -> Any:
        value = await super().verify_value(data)
        if self.on_put is None:
            return value
        result = await self.on_put(value)
        if isinstance(result, Deferred):
            # Keyed by task: each client write runs in a task of its own.
            self._deferred_store()[id(asyncio.current_task())] = result.done
            return result.value
        return value if result is None else result

    async def write(self, value: Any, **kwargs: Any) -> None:
        """Store and post ``value`` (through the handler unless
        ``verify_value=False``); a deferred put returns once it is done."""
        key = id(asyncio.current_task())
        try:
            await super().write(value, **kwargs)
        except BaseException:
            self._deferred_store().pop(key, None)
            raise
        done = self._deferred_store().pop(key, None)
        if done is not None:
            await done

    async def post(self, value: Any, *, force: bool = False, **metadata: Any) -> None:
        """Set the value from the server side (no handler); monitors see it
        only if it changed, unless ``force``."""
        if not force and not metadata and self.value == value:
            return
        await self.write(value, verify_value=False, **metadata)


class HookedDouble(Hooked, ChannelDouble):
    """A DOUBLE channel (ai/ao)."""


class HookedInteger(Hooked, ChannelInteger):
    """A LONG channel (longin/longout)."""


class HookedEnum(Hooked, ChannelEnum):
    """An ENUM channel (mbbi/mbbo, bi/bo)."""


class HookedString(Hooked, ChannelString):
    """A 40-character STRING channel (stringin/stringout)."""


class HookedChar(Hooked, ChannelChar):
    """A CHAR waveform holding a long string, as areaDetector's file paths."""

    async def write_from_dbr(
        self, data: Any, data_type: ChannelType, metadata: Any, **kwargs: Any
    ) -> Any:
        if data_type == ChannelType.CHAR and not bytes(data).rstrip(b"\0"):
            # caproto 1.3 fails to convert an empty string from the wire
            # (ophyd-async writes "" as one NUL): it is "", so store that.
            return await self.write("")
        return await super().write_from_dbr(data, data_type, metadata, **kwargs)


def _hook(channel: Hooked, read_only: bool, on_put: PutHandler | None) -> Any:
    channel.read_only = read_only
    channel.on_put = on_put
    return channel


def double(
    value: float = 0.0,
    *,
    precision: int = 3,
    units: str = "",
    read_only: bool = False,
    on_put: PutHandler | None = None,
) -> HookedDouble:
    """A DOUBLE channel."""
    return _hook(
        HookedDouble(value=float(value), precision=precision, units=units),
        read_only,
        on_put,
    )


def integer(
    value: int = 0,
    *,
    units: str = "",
    read_only: bool = False,
    on_put: PutHandler | None = None,
) -> HookedInteger:
    """A LONG channel."""
    return _hook(HookedInteger(value=int(value), units=units), read_only, on_put)


def enum(
    choices: Sequence[str],
    value: str | None = None,
    *,
    read_only: bool = False,
    on_put: PutHandler | None = None,
) -> HookedEnum:
    """An ENUM channel with ``choices`` (at most 16, 25 characters each)."""
    return _hook(
        HookedEnum(enum_strings=tuple(choices), value=value or choices[0]),
        read_only,
        on_put,
    )


def boolean(
    value: bool = False,
    labels: tuple[str, str] = ("No", "Yes"),
    *,
    read_only: bool = False,
    on_put: PutHandler | None = None,
) -> HookedEnum:
    """A two-state ENUM (a bo/bi record), which ophyd-async reads as bool."""
    return enum(labels, labels[int(value)], read_only=read_only, on_put=on_put)


def string(
    value: str = "",
    *,
    read_only: bool = False,
    on_put: PutHandler | None = None,
) -> HookedString:
    """A STRING channel (at most 40 characters)."""
    return _hook(HookedString(value=value), read_only, on_put)


def long_string(
    value: str = "",
    *,
    max_length: int = 256,
    read_only: bool = False,
    on_put: PutHandler | None = None,
) -> HookedChar:
    """A CHAR waveform read and written as a string (ophyd-async's ``str``
    signals accept it; areaDetector serves paths and file names this way)."""
    return _hook(HookedChar(value=value, max_length=max_length), read_only, on_put)
