"""The on-disk journal of documents, and replaying it into Tiled.

A journal is one JSON Lines file per run, ``<start uid>.jsonl``, one
``{"name": ..., "doc": ...}`` object per line: the format of
bluesky-tiled-plugins' backup (``TiledWriter(backup_directory=...)``), so
:func:`replay` also accepts those files.

Layout of a journal directory::

    <dir>/<uid>.jsonl           pending: being written, or not (fully) in Tiled
    <dir>/written/<uid>.jsonl   confirmed in Tiled (kept for audit; deletable)

A writer holds an exclusive ``flock`` on a pending journal while its run is
open, so :func:`replay` (in any process) skips runs still being written.
"""

from __future__ import annotations

import enum
import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import ReplayError, TiledPermissionError

logger = logging.getLogger(__name__)

WRITTEN_SUBDIR = "written"
SUFFIX = ".jsonl"


def json_default(obj: Any) -> Any:
    """Encode what bluesky documents hold beyond JSON (numpy values mostly)."""
    import numpy as np

    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    # Anything else is stored by its text rather than losing the document.
    logger.warning("Journal: storing %r as a string", type(obj).__name__)
    return str(obj)


def encode(name: str, doc: Any) -> str:
    """One journal line (without the newline) for a document."""
    return json.dumps({"name": name, "doc": doc}, default=json_default)


def decode(line: str) -> tuple[str, dict[str, Any]]:
    """The (name, document) pair of a journal line."""
    item = json.loads(line)
    return item["name"], item["doc"]


class JournalFile:
    """A pending journal opened for appending, under an exclusive lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Held open for the run's lifetime; closed by close().
        self._handle: IO[str] | None = open(path, "a", encoding="utf-8")  # noqa: SIM115
        fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def append(self, line: str) -> None:
        """Append one line and hand it to the OS (survives a process crash)."""
        assert self._handle is not None
        self._handle.write(line)
        self._handle.write("\n")
        self._handle.flush()

    def sync(self) -> None:
        """Force the journal to disk (survives a machine crash)."""
        if self._handle is not None:
            os.fsync(self._handle.fileno())

    def close(self, move_to: Path | None = None) -> Path:
        """Release the lock, first moving the file to ``move_to`` if given."""
        final = self.path
        if self._handle is None:
            return final
        try:
            if move_to is not None:
                move_to.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.path, move_to)
                final = move_to
        finally:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
        return final


def pending_journals(journal_dir: str | Path) -> list[Path]:
    """Journals in ``journal_dir`` not confirmed in Tiled, oldest first."""
    directory = Path(journal_dir)
    if not directory.is_dir():
        return []
    return sorted(directory.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime)


def read_journal(path: str | Path) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
    """Documents of a journal, and whether its last line was cut short.

    A crash mid-write can leave a truncated last line: it is dropped (its
    document never reached the RunEngine's other consumers either).
    """
    docs: list[tuple[str, dict[str, Any]]] = []
    truncated = False
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            docs.append(decode(line))
        except (json.JSONDecodeError, KeyError) as err:
            if number >= len(lines) - 2:
                truncated = True
                logger.warning("%s: dropping a truncated last line", path)
            else:
                raise ReplayError(
                    f"{path}, line {number + 1}: not a journal line: {err}"
                ) from err
    return docs, truncated


class ReplayStatus(enum.StrEnum):
    """Outcome of replaying one journal."""

    REPLAYED = "replayed"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass
class ReplayResult:
    """What :func:`replay` did with one journal."""

    path: Path
    status: ReplayStatus
    uid: str | None = None
    documents: int = 0
    replaced_partial: bool = False
    complete: bool = True
    message: str = ""
    moved_to: Path | None = field(default=None, repr=False)


def _run_has_stop(node: Any) -> bool:
    try:
        return bool(node.metadata.get("stop"))
    except Exception:
        return False


def _iter_paths(sources: Iterable[str | Path]) -> Iterator[Path]:
    for source in sources:
        path = Path(source)
        if path.is_dir():
            yield from pending_journals(path)
        else:
            yield path


def replay(
    client: Any,
    sources: str | Path | Iterable[str | Path],
    *,
    move_written: bool = True,
    writer_kwargs: dict[str, Any] | None = None,
) -> list[ReplayResult]:
    """Write journaled runs into Tiled, replacing partial copies; one call.

    ``sources``: journal files and/or journal directories (their pending
    journals). Each run is written with bluesky-tiled-plugins' ``TiledWriter``
    from its journal alone. If Tiled already holds a run with that uid (the
    part written before an outage), it is deleted first: Tiled would answer
    409 otherwise, and writing into it would duplicate rows. A run that
    Tiled holds complete is not replaced by an incomplete journal. Journals
    locked by a running writer are skipped. Replayed journals move to
    ``written/`` beside them unless ``move_written`` is false.

    Needs the delete scopes where a partial run must be removed. Raises
    :class:`ReplayError` only for unusable arguments; per-journal failures are
    reported in the results (status ``failed``).
    """
    from ._flushing import FlushingTiledWriter

    if isinstance(sources, str | Path):
        sources = [sources]
    results: list[ReplayResult] = []
    for path in _iter_paths(sources):
        if not path.is_file():
            raise ReplayError(f"{path}: no such journal file")
        results.append(
            _replay_one(
                client, path, move_written, writer_kwargs or {}, FlushingTiledWriter
            )
        )
    return results


def _replay_one(
    client: Any,
    path: Path,
    move_written: bool,
    writer_kwargs: dict[str, Any],
    writer_class: Any,
) -> ReplayResult:
    with open(path, "r+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return ReplayResult(
                path,
                ReplayStatus.SKIPPED,
                message="a running writer is still writing it",
            )
        try:
            docs, truncated = read_journal(path)
        except ReplayError as err:
            return ReplayResult(path, ReplayStatus.FAILED, message=str(err))
        starts = [doc for name, doc in docs if name == "start"]
        if len(starts) != 1:
            return ReplayResult(
                path,
                ReplayStatus.FAILED,
                documents=len(docs),
                message=f"expected one start document, found {len(starts)}",
            )
        uid = starts[0]["uid"]
        complete = any(name == "stop" for name, _ in docs) and not truncated
        result = ReplayResult(
            path, ReplayStatus.REPLAYED, uid=uid, documents=len(docs), complete=complete
        )
        try:
            if uid in client:
                if _run_has_stop(client[uid]) and not complete:
                    result.status = ReplayStatus.SKIPPED
                    result.message = (
                        "Tiled holds this run complete and the journal is not: "
                        "left as is"
                    )
                    return result
                try:
                    client.delete_contents(uid, recursive=True, external_only=False)
                except Exception as err:
                    if getattr(getattr(err, "response", None), "status_code", None) in (
                        401,
                        403,
                    ):
                        raise TiledPermissionError(
                            f"Tiled holds a partial copy of run {uid} and the API key "
                            f"may not delete it ({err}): use a key with the scopes "
                            "delete:node and delete:revision, or delete it by hand."
                        ) from err
                    raise
                result.replaced_partial = True
            writer = writer_class(client, **writer_kwargs)
            for name, doc in docs:
                writer(name, doc)
            if not complete:
                writer.flush()  # no stop document would write the cached rows
        except Exception as err:
            result.status = ReplayStatus.FAILED
            result.message = f"{type(err).__name__}: {err}"
            return result
        if not complete:
            result.message = (
                "journal has no stop document: the run was written as far as it goes"
            )
        if move_written:
            target = path.parent / WRITTEN_SUBDIR / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            result.moved_to = target
        return result
