"""Where the writer service resumes after a restart: pure logic, no sockets.

The service reads the stream in order. Its checkpoint is the stream sequence
of the start document of the oldest run not yet finished in Tiled, or, with
none open, the sequence after the last one processed. Restarting from there
re-reads every run that may be incomplete in Tiled from its start document
(the service then skips runs Tiled holds complete and rewrites partial ones),
and nothing older. ``high_water`` (the last sequence processed) tells a
message re-read after a restart from a new one.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Checkpoint", "CheckpointFile", "RunTracker"]


@dataclass(frozen=True)
class Checkpoint:
    """Resume at stream sequence ``resume_from``; ``high_water`` was the last
    sequence processed (0: none)."""

    resume_from: int = 1
    high_water: int = 0


class CheckpointFile:
    """A checkpoint persisted atomically (temporary file, fsync, rename)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> Checkpoint:
        """The saved checkpoint, or the start of the stream if there is none."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return Checkpoint()
        return Checkpoint(int(data["resume_from"]), int(data["high_water"]))

    def save(self, checkpoint: Checkpoint) -> None:
        """Replace the saved checkpoint; a crash leaves the old or the new one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(asdict(checkpoint), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a machine crash
        finally:
            os.close(fd)


class RunTracker:
    """Open runs and their start sequences; computes the checkpoint.

    :meth:`processed` is called by the consumer for every message in stream
    order, :meth:`started` for a run's start document, :meth:`finished` once
    the run is complete in Tiled (from the writer's thread: hence the lock).
    """

    def __init__(self, checkpoint: Checkpoint | None = None) -> None:
        checkpoint = checkpoint or Checkpoint()
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._last = checkpoint.resume_from - 1
        #: Sequences at or below this were processed before the restart.
        self.replay_until = checkpoint.high_water

    def replaying(self, seq: int) -> bool:
        """Was message ``seq`` already processed before the last restart?"""
        return seq <= self.replay_until

    def started(self, uid: str, seq: int) -> None:
        with self._lock:
            self._open.setdefault(uid, seq)

    def finished(self, uid: str) -> None:
        with self._lock:
            self._open.pop(uid, None)

    def processed(self, seq: int) -> None:
        with self._lock:
            self._last = max(self._last, seq)

    def open_runs(self) -> dict[str, int]:
        """Open runs' uids and start sequences."""
        with self._lock:
            return dict(self._open)

    def checkpoint(self) -> Checkpoint:
        """Where a restart must resume now."""
        with self._lock:
            resume = min(self._open.values()) if self._open else self._last + 1
            return Checkpoint(resume, max(self._last, self.replay_until))
