"""The writer service: documents from the bus into Tiled, as its own process.

:class:`WriterService` reads every ``bluesky.*.documents`` subject of the
stream in stream order (a JetStream ordered consumer starting at the
checkpoint) and feeds each subject's documents to its own
:class:`..writer.DurableTiledWriter`: the same Tiled writing, flushing and
journaling as the in-process writer, so a run written through the bus equals
one written in-process from the same documents.

Guarantees, and how they are kept:

* **Per-run order**: one subject per RunEngine; JetStream stores and the
  ordered consumer delivers a stream in sequence order (it recreates itself
  from the last sequence on a gap); a sequence already processed is dropped.
* **No loss**: the publisher's stop document waits for JetStream's
  acknowledgements; the stream is on the server's disk; the service's
  checkpoint (:mod:`.checkpoint`) never passes the start of a run Tiled does
  not hold complete.
* **A run interrupted by a crash is completed on restart, without duplicate
  rows**: the service resumes at the checkpoint; a run Tiled holds complete
  (it has its stop document) is skipped; a partial copy is deleted and the
  run rewritten from its start document, as :func:`..journal.replay` does.
* **Bad input**: a message that is not a well-formed document
  (:func:`.messages.parse_message`), or that belongs to no run the service
  knows, is republished to ``bluesky.quarantine`` with headers naming its
  subject, sequence and reason, logged, and skipped; later ones still flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from ..checks import REPLAY_SCOPES, check_can_write, connect
from ..writer import DurableTiledWriter
from .checkpoint import Checkpoint, CheckpointFile, RunTracker
from .messages import Malformed, Router, parse_message
from .nats_io import (
    DOCUMENTS_STREAM,
    DOCUMENTS_SUBJECTS,
    QUARANTINE_SUBJECT,
    BusOptions,
    connect_bus,
    ensure_streams,
)

__all__ = ["ServiceStats", "WriterService"]

logger = logging.getLogger(__name__)

#: Seconds between checkpoint saves (a late checkpoint only means more
#: re-reading after a crash, never a lost run).
CHECKPOINT_INTERVAL = 0.5


@dataclass
class ServiceStats:
    """Counters of a :class:`WriterService`."""

    messages: int = 0
    quarantined: int = 0
    runs_written: int = 0
    runs_skipped: int = 0
    runs_replaced: int = 0
    runs_pending: int = 0
    #: Start uid -> time.time() the run was confirmed in Tiled.
    written_at: dict[str, float] = field(default_factory=dict)


class _ServiceWriter(DurableTiledWriter):
    """A DurableTiledWriter whose stop document does not block the consumer;
    it reports each finished run instead."""

    def __init__(
        self, client: Any, on_finished: Callable[[str, str], None], **kwargs: Any
    ) -> None:
        self._on_finished = on_finished
        super().__init__(client, keep_written=False, **kwargs)

    def _wait_for_run(self, run: Any) -> None:
        for key in run.routes:
            self._routes.pop(key, None)
        self._runs.pop(run.uid, None)
        if self._last_run is run:
            self._last_run = None

    def _finish(self, run: Any) -> None:
        super()._finish(run)
        self._on_finished(run.uid, run.outcome)


class _Subject:
    def __init__(self, writer: _ServiceWriter) -> None:
        self.writer = writer
        self.router = Router()
        #: Runs not written this time: complete in Tiled, or held for a restart.
        self.skipping: set[str] = set()


class WriterService:
    """Consume the bus into Tiled until :meth:`stop`.

    Args:
        bus: The bus's address and credentials.
        tiled_uri, api_key: The Tiled server (the key needs the replay
            scopes: it deletes partial copies).
        state_dir: The checkpoint and the writers' journals (keep it on local
            disk, one per service).
        validate: Check each document against event-model's schema first
            (a bad one is quarantined alone instead of failing its run).
        writer_kwargs: For bluesky-tiled-plugins' ``TiledWriter``.

    Raises at construction, naming the address, if Tiled or the bus is
    unreachable (:class:`..errors.TiledUnreachableError`,
    :class:`.errors.BusUnreachableError`).
    """

    def __init__(
        self,
        bus: BusOptions,
        tiled_uri: str,
        api_key: str | None,
        *,
        state_dir: str | Path,
        validate: bool = True,
        flush_interval: float = 0.2,
        writer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.bus = bus
        self.state_dir = Path(state_dir)
        self.validate = validate
        self.flush_interval = flush_interval
        self.writer_kwargs = writer_kwargs
        self.stats = ServiceStats()
        self.checkpoints = CheckpointFile(self.state_dir / "checkpoint.json")
        self.tracker = RunTracker(self.checkpoints.load())
        self._subjects: dict[str, _Subject] = {}
        self._last_seq = 0
        self._stopping = threading.Event()
        self._tasks: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        # Connect now: an unreachable bus or Tiled is an error here, not in run().
        self._loop = asyncio.new_event_loop()
        try:
            self._nc, self._js = self._loop.run_until_complete(self._connect())
        except BaseException:
            self._loop.close()
            raise
        try:
            self.client = connect(tiled_uri, api_key=api_key)
            check_can_write(self.client, scopes=REPLAY_SCOPES)
        except BaseException:
            self._loop.run_until_complete(self._nc.close())
            self._loop.close()
            raise

    async def _connect(self) -> tuple[Client, JetStreamContext]:
        nc = await connect_bus(self.bus, name="panda-flyscan tiled writer")
        js = nc.jetstream()
        try:
            await ensure_streams(js)
        except BaseException:
            await nc.close()
            raise
        return nc, js

    # -- running ---------------------------------------------------------------
    def run(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Consume until :meth:`stop` (from another thread or a signal handler)."""
        assert self._loop is not None
        try:
            self._loop.run_until_complete(self._consume(on_ready))
        finally:
            self._shutdown()

    def stop(self) -> None:
        """Ask :meth:`run` to return (thread-safe); runs still open stay
        journaled and are re-read from the bus on the next start."""
        self._stopping.set()

    async def _consume(self, on_ready: Callable[[str], None] | None) -> None:
        assert self._js is not None
        start = self.tracker.checkpoint().resume_from
        sub = await self._js.subscribe(
            DOCUMENTS_SUBJECTS,
            stream=DOCUMENTS_STREAM,
            ordered_consumer=True,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start
            ),
        )
        message = (
            f"writer service: {DOCUMENTS_SUBJECTS} on {self.bus.address} from "
            f"sequence {start} into {self.client.uri}"
        )
        logger.info(message)
        if on_ready is not None:
            on_ready(message)
        last_save = time.monotonic()
        saved = self.tracker.checkpoint()
        try:
            while not self._stopping.is_set():
                try:
                    msg = await sub.next_msg(timeout=0.25)
                except NatsTimeoutError:
                    msg = None
                if msg is not None:
                    self._handle(msg)
                if time.monotonic() - last_save >= CHECKPOINT_INTERVAL:
                    saved = self._save(saved)
                    last_save = time.monotonic()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _save(self, saved: Checkpoint) -> Checkpoint:
        now = self.tracker.checkpoint()
        if now != saved:
            self.checkpoints.save(now)
        return now

    def _handle(self, msg: Msg) -> None:
        meta = msg.metadata
        seq = meta.sequence.stream
        if seq <= self._last_seq:
            return  # delivered twice in this session
        self._last_seq = seq
        self.stats.messages += 1
        try:
            self._process(msg.subject, seq, msg.data)
        except Malformed as err:
            self._quarantine(msg, seq, str(err))
        except Exception as err:  # never let one message stop the service
            logger.exception("Message %s #%d failed", msg.subject, seq)
            self._quarantine(msg, seq, f"{type(err).__name__}: {err}")
        self.tracker.processed(seq)

    def _process(self, subject: str, seq: int, data: bytes) -> None:
        name, doc = parse_message(data, validate=self.validate)
        state = self._subject(subject)
        run = state.router.route(name, doc)
        if run is None:
            if self.tracker.replaying(seq):
                return  # its run was finished before the checkpoint was taken
            raise Malformed(f"{name} document belongs to no open run")
        if name == "start":
            self.tracker.started(run, seq)
            # Asked of Tiled for every run, not only those at or below the
            # saved high-water mark: the crashed service may have written
            # beyond its last checkpoint.
            if self._complete_in_tiled(run):
                state.skipping.add(run)
                self.tracker.finished(run)
                self.stats.runs_skipped += 1
                logger.info("run %s: already complete in Tiled, skipped", run)
                return
            try:
                self._clear_partial(state, run)
            except Exception as err:
                # Tiled, not the document, failed: hold the run open (the
                # checkpoint stays at its start) for the next start.
                state.skipping.add(run)
                self.stats.runs_pending += 1
                logger.error(
                    "run %s: its partial copy in Tiled could not be replaced "
                    "(%s: %s); it is rewritten from the bus when the service "
                    "restarts",
                    run,
                    type(err).__name__,
                    err,
                )
                return
        elif run in state.skipping:
            if name == "stop":
                state.skipping.discard(run)
                state.router.close(run)
            return
        state.writer(name, doc)
        if name == "stop":
            state.router.close(run)

    def _subject(self, subject: str) -> _Subject:
        state = self._subjects.get(subject)
        if state is None:
            journal_dir = self.state_dir / "journal" / subject
            writer = _ServiceWriter(
                connect(self.client.uri, api_key=self.client.context.api_key),
                self._finished,
                journal_dir=journal_dir,
                flush_interval=self.flush_interval,
                writer_kwargs=self.writer_kwargs,
                _own_client=True,
            )
            state = self._subjects[subject] = _Subject(writer)
        return state

    def _complete_in_tiled(self, uid: str) -> bool:
        try:
            return uid in self.client and bool(self.client[uid].metadata.get("stop"))
        except Exception:
            return False

    def _clear_partial(self, state: _Subject, uid: str) -> None:
        """Delete what a crashed writer left of run ``uid`` (in Tiled and
        its journal) before writing it again from its start document."""
        stale = state.writer.journal_dir / f"{uid}.jsonl"
        stale.unlink(missing_ok=True)
        if uid in self.client:
            self.client.delete_contents(uid, recursive=True, external_only=False)
            self.stats.runs_replaced += 1
            logger.warning("run %s: partial copy in Tiled replaced", uid)

    def _finished(self, uid: str, outcome: str) -> None:
        if outcome == "written":
            self.tracker.finished(uid)
            self.stats.runs_written += 1
            self.stats.written_at[uid] = time.time()
            logger.info("run %s: written to Tiled", uid)
        else:
            # Held open: the checkpoint stays at its start, so the next
            # start of the service rewrites it from the bus.
            self.stats.runs_pending += 1
            logger.error(
                "run %s: not written to Tiled; it is rewritten from the bus when "
                "the service restarts (or replay its journal)",
                uid,
            )

    def _quarantine(self, msg: Msg, seq: int, reason: str) -> None:
        self.stats.quarantined += 1
        logger.error("QUARANTINED %s #%d: %s", msg.subject, seq, reason)
        if self._js is None:
            return
        headers = {
            "Bluesky-Subject": msg.subject,
            "Bluesky-Sequence": str(seq),
            "Bluesky-Reason": reason[:500],
        }

        async def publish() -> None:
            assert self._js is not None
            try:
                await self._js.publish(QUARANTINE_SUBJECT, msg.data, headers=headers)
            except Exception:
                logger.exception("Could not quarantine %s #%d", msg.subject, seq)

        # From the consumer's own coroutine: schedule, do not block on it.
        task = asyncio.ensure_future(publish())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _shutdown(self) -> None:
        for state in self._subjects.values():
            state.writer.close()
        with contextlib.suppress(Exception):
            self.checkpoints.save(self.tracker.checkpoint())
        if self._loop is not None and self._nc is not None:
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(self._nc.drain())
        if self._loop is not None:
            self._loop.close()
        self.client.context.close()
