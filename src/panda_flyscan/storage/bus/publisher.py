"""The RunEngine side of the bus: :class:`BusPublisher`.

bluesky-nats's ``NATSPublisher`` waits on the RunEngine's thread for every
document's JetStream acknowledgement (``Outbox.spawn_and_wait``), a round
trip per document, and encodes with msgpack on a subject per document name.
This publisher keeps the RunEngine's cost to encoding and a queue append:

* On the RunEngine's thread each document is encoded as a journal line
  (:func:`..journal.encode`, so numpy values survive exactly as the in-process
  writer stores them), appended to the run's local journal and queued.
* A background thread with its own event loop publishes the queue in order
  on one connection (``publish_async``: pipelined, order kept) and checks
  every acknowledgement.
* At the stop document the RunEngine waits (at most ``stop_timeout``) until
  JetStream has acknowledged every document of the run: when ``RE(...)``
  returns the run is on the server's disk. The local journal is then
  deleted; if the bus failed the run is not lost: the journal stays pending
  and ``panda-flyscan tiled replay`` writes it straight to Tiled.

Each message carries ``Nats-Msg-Id`` = ``<run uid>:<index>``, so a document
published twice within the stream's duplicate window is stored once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.js.client import JetStreamContext

from ..config import default_journal_dir
from ..journal import JournalFile, encode
from .messages import Router
from .nats_io import BusOptions, connect_bus, documents_subject, ensure_streams

__all__ = ["BusPublisher", "PublisherStats"]

logger = logging.getLogger(__name__)


@dataclass
class PublisherStats:
    """Counters of a :class:`BusPublisher` (read them, do not set them)."""

    documents: int = 0
    call_seconds: float = 0.0
    max_call_seconds: float = 0.0
    acked: int = 0
    failed: int = 0
    runs_durable: int = 0
    runs_not_durable: int = 0

    @property
    def mean_call_seconds(self) -> float:
        """Mean time the RunEngine spent in the publisher per document."""
        return self.call_seconds / self.documents if self.documents else 0.0


class _Run:
    def __init__(self, uid: str, journal: JournalFile | None) -> None:
        self.uid = uid
        self.journal = journal
        self.count = 0  # documents queued
        self.pending = 0  # queued or awaiting their ack
        self.stopped = False
        self.error: str | None = None
        self.acked = threading.Event()  # stopped and every document acked
        self.futures: set[asyncio.Future[Any]] = set()  # awaiting their ack


class BusPublisher:
    """A RunEngine callback publishing every document to JetStream.

    Connects at construction (a clear :class:`.errors.BusUnreachableError`
    naming the address within ``options.connect_timeout``, never a hang) and
    creates the streams if missing. Subscribe it: ``RE.subscribe(publisher)``;
    :meth:`close` when done.

    Args:
        options: The bus's address and credentials.
        beamline: The RunEngine's name in the subject
            ``bluesky.<beamline>.documents``.
        journal_dir: Where runs are journaled until the bus has them
            (default: ``<user data>/journal/bus``); None entries are not kept.
        stop_timeout: Seconds the RunEngine waits at a stop document for the
            run's acknowledgements.
        journal: Journal runs locally until acknowledged (the default).
        batch_interval: Seconds documents gather before they are published
            (a stop document is published at once); the in-process writer's
            flush interval, which costs the RunEngine as little.
    """

    def __init__(
        self,
        options: BusOptions,
        beamline: str,
        *,
        journal_dir: str | Path | None = None,
        stop_timeout: float = 10.0,
        journal: bool = True,
        batch_interval: float = 0.2,
    ) -> None:
        self.options = options
        self.subject = documents_subject(beamline)
        self.stop_timeout = stop_timeout
        self.batch_interval = batch_interval
        self.journal_dir = (
            Path(journal_dir) if journal_dir else default_journal_dir() / "bus"
        )
        self._journal = journal
        self.stats = PublisherStats()
        self.token: int | None = None  # RunEngine subscription, if the caller keeps it
        self._queue: collections.deque[tuple[_Run, bytes]] = collections.deque()
        self._lock = threading.Condition()
        self._unsettled = 0  # documents queued or awaiting their ack
        self._runs: dict[str, _Run] = {}
        self._router = Router()  # the run each document belongs to
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="bus-publisher", daemon=True
        )
        self._thread.start()
        self._wake = asyncio.Event()  # documents queued
        self._urgent = asyncio.Event()  # a stop document queued: publish now
        try:
            self._nc, self._js = self._call(
                self._connect(), options.connect_timeout + 5
            )
        except BaseException:
            self._stop_loop()
            raise
        self._drainer = asyncio.run_coroutine_threadsafe(self._drain(), self._loop)

    def _call(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _connect(self) -> tuple[Client, JetStreamContext]:
        nc = await connect_bus(self.options, name=f"panda-flyscan {self.subject}")
        js = nc.jetstream()
        try:
            await ensure_streams(js)
        except BaseException:
            await nc.close()
            raise
        return nc, js

    # -- RunEngine side ---------------------------------------------------------
    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """Encode, journal and queue one document; never raises into the RunEngine."""
        start = time.perf_counter()
        run: _Run | None = None
        try:
            run = self._route(name, doc)
            payload = encode(name, doc)
            if run is not None and run.journal is not None:
                try:
                    run.journal.append(payload)
                    if name == "stop":
                        run.journal.sync()
                except OSError:
                    logger.exception("Journal %s failed", run.journal.path)
            target = run or _ORPHAN
            with self._lock:
                target.pending += 1
                self._unsettled += 1
                if name == "stop":
                    target.stopped = True
                self._queue.append((target, payload.encode()))
                wake = len(self._queue) == 1 or name == "stop"
            if wake:  # the drainer sleeps only on an empty queue, or gathers
                self._loop.call_soon_threadsafe(self._wake_up, name == "stop")
        except Exception:
            logger.exception("BusPublisher could not take a %r document", name)
        elapsed = time.perf_counter() - start
        self.stats.documents += 1
        self.stats.call_seconds += elapsed
        self.stats.max_call_seconds = max(self.stats.max_call_seconds, elapsed)
        if name == "stop" and run is not None:
            self._wait_for_run(run)

    def _route(self, name: str, doc: dict[str, Any]) -> _Run | None:
        uid = self._router.route(name, doc)
        if name == "start" and uid is not None:
            journal: JournalFile | None = None
            if self._journal:
                try:
                    journal = JournalFile(self.journal_dir / f"{uid}.jsonl")
                except OSError:
                    logger.exception("Cannot journal run %s", uid)
            self._runs[uid] = _Run(uid, journal)
        return None if uid is None else self._runs.get(uid)

    def _wait_for_run(self, run: _Run) -> None:
        if not run.acked.wait(self.stop_timeout) or run.error is not None:
            self.stats.runs_not_durable += 1
            logger.error(
                "Run %s is not confirmed on the bus %s (%s). Its documents are "
                "journaled in %s: write it with `panda-flyscan tiled replay "
                "--journal-dir %s`.",
                run.uid,
                self.options.address,
                run.error or f"no acknowledgement within {self.stop_timeout:g} s",
                self.journal_dir,
                self.journal_dir,
            )
            if run.journal is not None:
                run.journal.close()  # pending: replayable
            # Acks that never came (the server died with them) would hold
            # publish_async's slots for ever: give them up (already reported).
            run.error = run.error or "given up"
            self._loop.call_soon_threadsafe(_cancel_all, run.futures)
        else:
            self.stats.runs_durable += 1
            if run.journal is not None:
                run.journal.close().unlink(missing_ok=True)
        self._runs.pop(run.uid, None)
        self._router.close(run.uid)

    # -- background side --------------------------------------------------------
    def _wake_up(self, urgent: bool) -> None:
        self._wake.set()
        if urgent:
            self._urgent.set()

    async def _drain(self) -> None:
        while True:
            with self._lock:
                batch = list(self._queue)
                self._queue.clear()
                if not batch:
                    self._wake.clear()
            if not batch:
                if self._closed:
                    return
                await self._wake.wait()
                # Gather documents for a while: one burst of publishing per
                # interval costs the RunEngine's thread far fewer GIL
                # hand-overs than a wake-up per document.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), self.batch_interval)
                self._urgent.clear()
                continue
            for run, payload in batch:
                run.count += 1
                headers = {"Nats-Msg-Id": f"{run.uid}:{run.count}"}
                try:
                    # Bounded: acks lost with a dead server hold their slots.
                    future = await self._js.publish_async(
                        self.subject,
                        payload,
                        headers=headers,
                        wait_stall=self.stop_timeout,
                    )
                except Exception as err:
                    self._settle(run, f"{type(err).__name__}: {err}")
                    continue
                run.futures.add(future)
                future.add_done_callback(run.futures.discard)
                future.add_done_callback(
                    lambda f, run=run: self._settle(run, _failure(f))
                )

    def _settle(self, run: _Run, error: str | None) -> None:
        if error is None:
            self.stats.acked += 1
        else:
            self.stats.failed += 1
            if run.error is None:
                logger.error("Publishing to %s failed: %s", self.subject, error)
                run.error = error
        with self._lock:
            run.pending -= 1
            self._unsettled -= 1
            if run.stopped and run.pending == 0:
                run.acked.set()
            if self._unsettled == 0:
                self._lock.notify_all()

    # -- control ----------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued is acknowledged (or failed); True if so."""
        with self._lock:
            return self._lock.wait_for(lambda: self._unsettled == 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Publish what is queued, then disconnect; idempotent."""
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._loop.call_soon_threadsafe(self._wake.set)
        self._loop.call_soon_threadsafe(self._urgent.set)
        try:
            self._call(self._nc.drain(), timeout)
        except Exception:
            logger.exception("Closing the bus connection failed")
        for run in list(self._runs.values()):
            if run.journal is not None:
                run.journal.close()
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> BusPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cancel_all(futures: set[asyncio.Future[Any]]) -> None:
    for future in list(futures):
        future.cancel()


def _failure(future: asyncio.Future[Any]) -> str | None:
    """Why a publish failed, or None if JetStream acknowledged it."""
    if future.cancelled():
        return "cancelled"
    err = future.exception()
    return None if err is None else f"{type(err).__name__}: {err}"


#: Where a document of no known run goes (published all the same; the writer
#: service decides what to do with it).
_ORPHAN = _Run("orphan", None)
