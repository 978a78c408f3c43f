"""Writing runs into Tiled without losing any, and without slowing the scan.

:func:`subscribe_tiled_writer` is the one call: connect, check the server can
store a run, subscribe a :class:`DurableTiledWriter` to a RunEngine.

:class:`DurableTiledWriter` wraps bluesky-tiled-plugins' ``TiledWriter``:

* On the RunEngine's thread, each document is appended to the run's journal
  on local disk (:mod:`.journal`) and queued: microseconds, never HTTP.
* A background thread feeds queued documents to the TiledWriter and flushes
  its buffers every ``flush_interval`` (0.2 s, so a live view can follow
  within a second): events are readable in Tiled well under a second after
  the RunEngine emits them, at about the batched cost.
* At the stop document the RunEngine waits (at most ``stop_timeout``) until
  the run is in Tiled, so ``client[uid]`` works as soon as ``RE(...)``
  returns.
* If Tiled fails during a run, the writer gives up on Tiled for that run at
  once (no minutes of retries), the run completes, its journal stays pending
  and :func:`.journal.replay` (``panda-flyscan tiled replay``) writes it later,
  replacing the partial copy. The next run tries Tiled again.

Documents reach the TiledWriter through the same JSON encoding as the
journal, so a replayed run is written from exactly what a live one was.

This module is over 400 lines for one class: the RunEngine side and the
background side share each run's state and one condition variable, and split
apart each half would have to reach into the other's.
"""

from __future__ import annotations

import atexit
import collections
import logging
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._flushing import FlushingTiledWriter
from .checks import check_can_write, check_readable, connect
from .config import default_journal_dir
from .fail_fast import install_fail_fast
from .journal import WRITTEN_SUBDIR, JournalFile, ReplayResult, decode, encode, replay

logger = logging.getLogger(__name__)

#: Note bluesky-tiled-plugins records when it forces a retry that may
#: duplicate rows; such a run is left pending so replay rewrites it exactly.
_DUPLICATE_RISK_NOTE = "forcing a retry"


@dataclass
class WriterStats:
    """Counters of a :class:`DurableTiledWriter` (read them, do not set them)."""

    documents: int = 0
    call_seconds: float = 0.0
    max_call_seconds: float = 0.0
    flushes: int = 0
    runs_written: int = 0
    runs_pending: int = 0

    @property
    def mean_call_seconds(self) -> float:
        """Mean time the RunEngine spent in the writer per document."""
        return self.call_seconds / self.documents if self.documents else 0.0


class _Run:
    """State of one run inside the writer."""

    def __init__(self, uid: str, journal: JournalFile | None) -> None:
        self.uid = uid
        self.journal = journal
        self.routes: list[str] = []
        self.writer: FlushingTiledWriter | None = None
        self.failure: str | None = None
        self.stopped = False  # stop document received from the RunEngine
        self.done = threading.Event()  # worker finished with the run
        self.outcome: str = "writing"

    def fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
            self.writer = None  # drop the partial writer and its buffers


class DurableTiledWriter:
    """A RunEngine callback writing runs into Tiled, journaled on local disk.

    Parameters
    ----------
    client:
        Tiled client of the container runs go into. The writer opens its own
        connection to the same node with the same API key (so that its
        fail-fast policy does not affect the caller's client).
    journal_dir:
        Where documents are journaled (default: the user data directory,
        :func:`.config.default_journal_dir`).
    flush_interval:
        Seconds between writes to Tiled during a run (a request per table or
        external array that grew).
    stop_timeout:
        Seconds the RunEngine waits at a stop document for the run to be in
        Tiled. If it is not by then (a slow or dead server), the RunEngine
        goes on; the run is still written, or left pending for replay.
    keep_written:
        Keep journals of runs confirmed in Tiled (under ``written/``) instead
        of deleting them.
    writer_kwargs:
        Keyword arguments for bluesky-tiled-plugins' ``TiledWriter``
        (``patches``, ``spec_to_mimetype``, ``max_array_size``, ...).
    """

    def __init__(
        self,
        client: Any,
        *,
        journal_dir: str | Path | None = None,
        flush_interval: float = 0.2,
        stop_timeout: float = 10.0,
        keep_written: bool = True,
        writer_kwargs: dict[str, Any] | None = None,
        _own_client: bool = False,
    ) -> None:
        if not _own_client:
            client = connect(client.uri, api_key=client.context.api_key)
        self._transport = install_fail_fast(client)
        # Fetch data-source information once, not per run.
        self.client = client.include_data_sources()
        self.journal_dir = Path(journal_dir) if journal_dir else default_journal_dir()
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        self.flush_interval = flush_interval
        self.stop_timeout = stop_timeout
        self.keep_written = keep_written
        self.writer_kwargs = dict(writer_kwargs or {})
        self.stats = WriterStats()
        self.token: int | None = None  # RunEngine subscription, if any

        self._runs: dict[str, _Run] = {}
        self._routes: dict[str, _Run] = {}
        self._last_run: _Run | None = None
        self._queue: collections.deque[tuple[_Run, str, str]] = collections.deque()
        self._cond = threading.Condition()
        self._urgent = False
        self._closing = False
        self._busy = False
        self._thread = threading.Thread(
            target=self._worker, name="tiled-durable-writer", daemon=True
        )
        self._thread.start()
        # Drain on interpreter exit; weakly, so the writer can be collected.
        ref = weakref.ref(self)
        self._atexit = lambda: (w := ref()) is not None and w.close()
        atexit.register(self._atexit)

    @classmethod
    def from_uri(
        cls, uri: str, api_key: str | None = None, **kwargs: Any
    ) -> DurableTiledWriter:
        """Connect to ``uri`` (see :func:`.checks.connect`) and make a writer."""
        return cls(connect(uri, api_key=api_key), _own_client=True, **kwargs)

    # -- RunEngine side --------------------------------------------------------
    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """Journal and queue one document; never raises into the RunEngine."""
        start = time.perf_counter()
        run: _Run | None = None
        try:
            run = self._route(name, doc)
            if run is not None:
                line = encode(name, doc)
                if run.journal is not None:
                    try:
                        run.journal.append(line)
                        if name == "stop":
                            run.journal.sync()
                    except OSError:
                        logger.exception(
                            "Journal %s failed: run %s is not durable",
                            run.journal.path,
                            run.uid,
                        )
                with self._cond:
                    self._queue.append((run, name, line))
                    if name == "stop":
                        run.stopped = True
                        self._urgent = True
                        self._cond.notify_all()
                    elif len(self._queue) == 1:
                        self._cond.notify_all()  # worker may be idle: start the clock
        except Exception:
            logger.exception("DurableTiledWriter could not take a %r document", name)
        elapsed = time.perf_counter() - start
        self.stats.documents += 1
        self.stats.call_seconds += elapsed
        self.stats.max_call_seconds = max(self.stats.max_call_seconds, elapsed)
        if name == "stop" and run is not None:
            self._wait_for_run(run)

    def _route(self, name: str, doc: dict[str, Any]) -> _Run | None:
        """The run a document belongs to (the RunRouter's rules, minus filling)."""
        if name == "start":
            uid = doc["uid"]
            path = self.journal_dir / f"{uid}.jsonl"
            try:
                journal: JournalFile | None = JournalFile(path)
            except OSError:
                logger.exception("Cannot journal run %s in %s", uid, path)
                journal = None
            run = self._runs[uid] = _Run(uid, journal)
            self._last_run = run
            return run
        if name in ("stop", "descriptor"):
            run = self._runs.get(doc["run_start"])
        elif name in ("event", "event_page"):
            run = self._routes.get(doc["descriptor"])
        elif name in ("datum", "datum_page"):
            run = self._routes.get(doc["resource"])
        elif name == "stream_datum":
            run = self._routes.get(doc["stream_resource"])
        elif name in ("resource", "stream_resource"):
            run = self._runs.get(doc.get("run_start", "")) or self._last_run
        else:
            run = self._last_run
        if run is None:
            logger.warning(
                "DurableTiledWriter: %r document of no open run ignored", name
            )
            return None
        if name in ("descriptor", "resource", "stream_resource"):
            self._routes[doc["uid"]] = run
            run.routes.append(doc["uid"])
        return run

    def _wait_for_run(self, run: _Run) -> None:
        if not run.done.wait(self.stop_timeout):
            logger.warning(
                "Run %s is not confirmed in Tiled after %.0f s; the scan goes on. "
                "It is journaled in %s: if writing fails it stays pending for "
                "`panda-flyscan tiled replay`.",
                run.uid,
                self.stop_timeout,
                self.journal_dir,
            )
        for key in run.routes:
            self._routes.pop(key, None)
        self._runs.pop(run.uid, None)
        if self._last_run is run:
            self._last_run = None

    # -- background side -----------------------------------------------------
    def _worker(self) -> None:
        last_flush = time.monotonic()
        while True:
            with self._cond:
                while not (self._closing or self._urgent):
                    if self._queue:
                        remaining = self.flush_interval - (
                            time.monotonic() - last_flush
                        )
                        if remaining <= 0:
                            break
                        self._cond.wait(remaining)
                    else:
                        self._cond.wait()
                batch = list(self._queue)
                self._queue.clear()
                self._urgent = False
                closing = self._closing
                self._busy = True
            try:
                self._process(batch)
            except Exception:  # keep the thread alive whatever happens
                logger.exception("DurableTiledWriter worker error")
            last_flush = time.monotonic()
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                if closing and not self._queue:
                    return

    def _process(self, batch: list[tuple[_Run, str, str]]) -> None:
        touched: dict[str, _Run] = {}
        for run, name, line in batch:
            if name == "start":
                self._begin(run)
            writer = run.writer
            if writer is not None:
                try:
                    name_, doc = decode(line)
                    writer(name_, doc)
                    touched[run.uid] = run
                except Exception as err:
                    self._fail(run, err)
            if name == "stop":
                touched.pop(run.uid, None)
                self._finish(run)
        for run in touched.values():
            writer = run.writer
            if writer is None or run.done.is_set():
                continue
            try:
                writer.flush()
                self.stats.flushes += 1
            except Exception as err:
                self._fail(run, err)

    def _begin(self, run: _Run) -> None:
        self._transport.reset()  # a new run tries Tiled again
        try:
            run.writer = FlushingTiledWriter(self.client, **self.writer_kwargs)
        except Exception as err:
            self._fail(run, err)

    def _fail(self, run: _Run, err: BaseException) -> None:
        reason = f"{type(err).__name__}: {err}"
        if self._transport.failure:
            reason += f" [{self._transport.failure}]"
        if run.failure is None:
            logger.error(
                "Writing run %s to Tiled failed (%s). The run goes on; its documents "
                "are journaled in %s. Replay it when Tiled is back: "
                "`panda-flyscan tiled replay --journal-dir %s`.",
                run.uid,
                reason,
                self.journal_dir,
                self.journal_dir,
            )
        run.fail(reason)

    def _finish(self, run: _Run) -> None:
        writer = run.writer
        if (
            run.failure is None
            and writer is not None
            and any(_DUPLICATE_RISK_NOTE in note for note in writer.notes())
        ):
            run.fail("a forced retry may have duplicated rows")
        ok = run.failure is None
        if run.journal is not None:
            target: Path | None = None
            if ok:
                target = self.journal_dir / WRITTEN_SUBDIR / run.journal.path.name
            try:
                final = run.journal.close(move_to=target)
                if ok and not self.keep_written:
                    final.unlink()
            except OSError:
                logger.exception("Could not file the journal of run %s", run.uid)
        if ok:
            run.outcome = "written"
            self.stats.runs_written += 1
        else:
            run.outcome = "pending"
            self.stats.runs_pending += 1
        run.writer = None
        run.done.set()

    # -- control -----------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Write everything queued now; True once the worker is idle."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._urgent = True
            self._cond.notify_all()
            while self._queue or self._busy or self._urgent:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        """Write what is queued, stop the worker and release open journals."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        for run in list(self._runs.values()):
            if run.journal is not None and not run.done.is_set():
                run.journal.close()  # still pending: replayable from now on
        atexit.unregister(self._atexit)
        if not self._thread.is_alive():
            self.client.context.close()  # the writer's own connection

    def pending(self) -> list[Path]:
        """Journals of runs not (yet) confirmed in Tiled."""
        from .journal import pending_journals

        return pending_journals(self.journal_dir)

    def replay_pending(self) -> list[ReplayResult]:
        """Replay this writer's pending journals (runs still open are skipped)."""
        return replay(self.client, self.journal_dir, writer_kwargs=self.writer_kwargs)

    def __enter__(self) -> DurableTiledWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def subscribe_tiled_writer(
    RE: Any,
    uri: str,
    api_key: str | None = None,
    *,
    external_dirs: Iterable[str | Path] = (),
    journal_dir: str | Path | None = None,
    check: bool = True,
    **writer_options: Any,
) -> DurableTiledWriter:
    """Connect to Tiled, check it can store runs, subscribe a writer to ``RE``.

    ``uri``/``api_key`` as for :func:`.checks.connect`. With ``check`` (the
    default) this raises now, naming the fix, if the server is unreachable,
    rejects the key, may not be written with it, lacks a table store, or
    cannot read the files in any of ``external_dirs`` (the directories where
    detectors and the PandA write HDF5). Further keyword arguments go to
    :class:`DurableTiledWriter`. Returns the writer; its ``token`` unsubscribes
    it (``RE.unsubscribe(writer.token)``).
    """
    client = connect(uri, api_key=api_key)
    try:
        if check:
            check_can_write(client)
            for directory in external_dirs:
                check_readable(client, directory)
        writer = DurableTiledWriter(
            client, journal_dir=journal_dir, _own_client=True, **writer_options
        )
    except BaseException:
        client.context.close()
        raise
    writer.token = RE.subscribe(writer)
    return writer
