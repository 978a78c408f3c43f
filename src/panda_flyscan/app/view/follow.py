"""Following a run through Tiled: poll the growing arrays, read only new rows.

Works from any machine that reaches the Tiled server: it needs nothing of the
RunEngine's process. Why polling and not ``subscribe()``: with Tiled 0.2.20 a
websocket subscription to a PandA dataset registered as an external array
(the bundled server has a streaming cache) received no update at all during a
3000-row run while the array's shape grew from 561 to 3000 rows, and the
PostgreSQL configuration has no streaming cache unless one is set up. One
poll is one listing of each stream (every array's current shape) plus one
slice read per array that grew.

Reading while rows are appended can collide with a flush (Tiled answers 500,
see :mod:`panda_flyscan.storage.readback`): a read fails fast and is retried
once from a fresh lookup; if that fails too, the next poll tries again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from ...storage.fail_fast import RequestAborted, failing_fast
from ...storage.readback import fetch_array
from .core import LiveRun, Picture, is_frame_shape

__all__ = ["DEFAULT_INTERVAL", "Follower", "Update", "latest_uid"]

#: Seconds between polls: with the writer's 0.2 s flushes, rows are drawn
#: ~0.65 s (median) after the RunEngine emits them; polling at 0.1 s measured
#: no better on 2 cores (the poll's requests compete with the writer's).
DEFAULT_INTERVAL = 0.25

#: The stream whose rows are plotted (one row per frame of the PandA).
PRIMARY = "primary"

_READ_ERRORS = (httpx.HTTPError, RequestAborted, KeyError, OSError)


@dataclass(frozen=True)
class Update:
    """One poll that brought new data: when it finished (``time.time()``),
    when the picture was drawn (None if nothing drew it), and the rows every
    plotted field then had."""

    received: float
    drawn: float | None
    rows: int


def latest_uid(client: Any) -> str:
    """The uid of the newest run in ``client`` (raises LookupError if none)."""
    keys = client.keys()
    if len(keys) == 0:
        raise LookupError("no runs in this Tiled server yet")
    return str(keys[-1])


def own_connection(client: Any) -> Any:
    """A new client of the same server and node, with the same API key."""
    from tiled.client import from_uri

    context = client.context
    return from_uri(str(client.uri), api_key=context.api_key)


class Follower:
    """Follows run ``uid`` (default: the newest) in ``client`` as it is written.

    :meth:`poll` reads what is new once; :meth:`follow` polls every
    ``interval`` seconds until the run's stop document is in Tiled, calling
    ``on_update(picture)`` after each poll that brought something (returning
    False if it did not draw it). ``updates`` records when rows came and were
    drawn (see :func:`.lag.live_lag`).
    """

    def __init__(
        self,
        client: Any,
        uid: str | None = None,
        *,
        interval: float = DEFAULT_INTERVAL,
        map_field: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = client
        self._client: Any = None
        self.uid = uid if uid is not None else latest_uid(self.client)
        self.interval = interval
        self.map_field = map_field
        self.clock = clock
        self.run: LiveRun | None = None
        self.updates: list[Update] = []
        self._stopped = threading.Event()

    @property
    def client(self) -> Any:
        """The follower's own connection, opened on first use (in the
        follower's thread: a RunEngine callback does not wait for it).
        Its own because fail-fast reads swap the transport of the client they
        use, which must not affect the caller's other threads."""
        if self._client is None:
            self._client = own_connection(self._source)
        return self._client

    @property
    def done(self) -> bool:
        """The stop document was seen, and the data read after it."""
        return self.run is not None and self.run.stop is not None

    def stop(self) -> None:
        """Make :meth:`follow` return after the current poll (any thread)."""
        self._stopped.set()

    def picture(self) -> Picture | None:
        """What the run received so far looks like (None before the run exists)."""
        return None if self.run is None else self.run.picture()

    def poll(self) -> bool:
        """Read what is new; False if nothing was (or the run is not in Tiled yet)."""
        try:
            node = self.client[self.uid]
        except KeyError:
            return False  # the writer creates the run at its first flush
        # Metadata first: if the stop document is there, every row read
        # afterwards is final (the writer stores the stop document last).
        metadata = node.metadata
        if self.run is None:
            self.run = LiveRun(dict(metadata["start"]), map_field=self.map_field)
        stop = metadata.get("stop")
        changed = False
        try:
            streams = dict(node.base.items())  # one request for every stream
        except _READ_ERRORS:
            streams = {}
        for stream, container in streams.items():
            changed |= self._poll_stream(container, stream)
        if stop and self.run.stop is None:
            self.run.stop = dict(stop)
            changed = True
        if changed:
            self.updates.append(Update(self.clock(), None, self.run.picture().rows))
        return changed

    def _poll_stream(self, container: Any, stream: str) -> bool:
        assert self.run is not None
        try:
            # Every array's current shape (`.base`: the stream's own
            # listing is several times slower, it reads the event table).
            children = dict(container.base.items())
        except _READ_ERRORS:
            return False
        changed = False
        for name, child in children.items():
            shape = getattr(child, "shape", None)
            if shape is None:
                if name == "internal" and stream == PRIMARY:
                    changed |= self._poll_table(child)
                continue
            n = int(shape[0]) if len(shape) else 0
            if is_frame_shape(shape):
                latest = self.run.frame_index(name)
                if n and (latest is None or latest < n - 1):
                    image = self._read(child, stream, name, n - 1)
                    if image is not None:
                        self.run.set_frame(name, n - 1, image)
                        changed = True
            elif stream == PRIMARY and len(shape) == 1:
                have = self.run.count(name)
                if n > have:
                    rows = self._read(child, stream, name, slice(have, n))
                    if rows is not None:
                        self.run.add_rows(name, have, rows)
                        changed = True
        return changed

    def _poll_table(self, table: Any) -> bool:
        """The event table (runs with Event documents): scalar columns."""
        assert self.run is not None
        try:
            with failing_fast(self.client):
                frame = table.read()
        except _READ_ERRORS:
            return False
        changed = False
        for column in frame.columns:
            if column in ("seq_num", "time") or str(column).startswith("ts_"):
                continue
            values = frame[column].to_numpy()
            have = self.run.count(column)
            if values.ndim == 1 and len(values) > have and values.dtype.kind in "fiub":
                self.run.add_rows(column, have, values[have:])
                changed = True
        return changed

    def _read(self, child: Any, stream: str, name: str, index: int | slice) -> Any:
        """``child[index]``, failing fast; retried once from a fresh lookup.

        Through :func:`~panda_flyscan.storage.fetch_array`: from the files
        themselves where this process can read them (no data request per
        poll), over HTTP otherwise.
        """
        rows = slice(index, index + 1) if isinstance(index, int) else index

        def read(node: Any) -> Any:
            data = fetch_array(node, (rows,))
            return data[0] if isinstance(index, int) else data

        try:
            with failing_fast(self.client):
                return read(child)
        except _READ_ERRORS:
            pass
        try:
            with failing_fast(self.client):
                return read(self.client[self.uid][stream].base[name])
        except _READ_ERRORS:
            return None  # the next poll tries again

    def follow(
        self,
        on_update: Callable[[Picture], bool | None] | None = None,
        *,
        once: bool = False,
        timeout: float | None = None,
    ) -> Picture | None:
        """Poll until the run is done (or :meth:`stop`, or ``timeout`` s);
        ``once``: a single poll. Returns the last picture."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            began = time.monotonic()
            if self.poll() and on_update is not None:
                picture = self.picture()
                assert picture is not None
                if on_update(picture) is not False:  # False: it did not draw
                    last = self.updates[-1]
                    self.updates[-1] = Update(last.received, self.clock(), last.rows)
            if once or self.done or self._stopped.is_set():
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            # Nothing announces new rows (see the module docstring): poll,
            # every `interval` from the last poll's start, reading and
            # drawing included.
            spent = time.monotonic() - began
            self._stopped.wait(max(0.0, self.interval - spent))
        return self.picture()
