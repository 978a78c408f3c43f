"""bluesky-tiled-plugins' private API: the TiledWriter's per-run writers.

Candidate upstream issue: ``TiledWriter`` buffers event rows and StreamDatum
documents in per-run ``_RunWriter`` objects until ``batch_size`` of them
arrive or the run stops, and nothing public writes the buffer out sooner.
A public ``TiledWriter.flush()`` (write what every open run holds) and a
public way to read a run writer's notes would remove this module: the
durable writer needs rows visible within a second during a run, at the
batched cost, which neither ``batch_size=1`` (a request per document) nor
the default (nothing visible until the stop document) gives.

What is used: the settings ``TiledWriter.__init__`` keeps (``_batch_size``,
``_max_array_size``, ``_validate``, ``_normalizer``), its ``_factory`` (the
RunRouter's factory, overridden), and ``_RunWriter``'s buffers and write
methods.
"""

from __future__ import annotations

from typing import Any

from bluesky_tiled_plugins import TiledWriter
from bluesky_tiled_plugins.writing.tiled_writer import _RunWriter

from . import require

require(
    "bluesky-tiled-plugins",
    "~=2.0.12",
    uses="TiledWriter._factory and bluesky_tiled_plugins.writing._RunWriter",
)

__all__ = ["TiledWriterKeepingRuns", "flush_run_writer", "run_writer_notes"]

_RUN_WRITER_METHODS = ("_write_internal_data", "_write_external_data")


def check_compatible() -> None:
    """Fail loudly if bluesky-tiled-plugins changed what this module relies on.

    The version check above covers releases it was written for; this one
    catches a patch release that moved the pieces anyway.
    """
    missing = [m for m in _RUN_WRITER_METHODS if not hasattr(_RunWriter, m)]
    if not hasattr(TiledWriter, "_factory"):
        missing.append("TiledWriter._factory")
    if missing:
        from importlib.metadata import version

        raise ImportError(
            f"bluesky-tiled-plugins {version('bluesky-tiled-plugins')} lacks "
            f"{missing}: panda_flyscan.storage needs bluesky-tiled-plugins ~=2.0.12"
        )


check_compatible()


class TiledWriterKeepingRuns(TiledWriter):
    """A ``TiledWriter`` that keeps each run's writer in :attr:`run_writers`.

    Builds each run's callbacks as ``TiledWriter._factory`` does, without the
    backup wrapper (a subclass must not pass ``backup_*`` arguments).
    Unnecessary with a public ``TiledWriter.flush()``.
    """

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        #: The ``_RunWriter`` of every run this writer has seen, oldest first.
        self.run_writers: list[Any] = []

    def _factory(self, name: str, doc: Any) -> tuple[list[Any], list[Any]]:
        run_writer = _RunWriter(
            self.client,
            batch_size=self._batch_size,
            max_array_size=self._max_array_size,
            validate=self._validate,
            ignore_errors=self.ignore_errors,
        )
        self.run_writers.append(run_writer)
        callback: Any = run_writer
        if self._normalizer:
            # The normalizer class takes these keywords (RunNormalizer does).
            normalizer: Any = self._normalizer
            callback = normalizer(
                patches=self.patches, spec_to_mimetype=self.spec_to_mimetype
            )
            callback.subscribe(run_writer)
        return [callback], []


def flush_run_writer(run_writer: Any) -> None:
    """Write the rows and StreamDatums a ``_RunWriter`` holds in memory.

    Unnecessary with a public ``flush()`` on the TiledWriter or its run writer.
    """
    for desc_name, rows in list(run_writer._internal_data_cache.items()):
        if rows:
            run_writer._write_internal_data(
                rows, desc_node=run_writer._desc_nodes[desc_name]
            )
            rows.clear()
    for sres_uid in list(run_writer._external_data_cache):
        run_writer._write_external_data(run_writer._external_data_cache.pop(sres_uid))


def run_writer_notes(run_writer: Any) -> list[str]:
    """The notes a ``_RunWriter`` recorded (e.g. a forced retry).

    Unnecessary if the TiledWriter reported its runs' notes publicly.
    """
    return list(run_writer.notes)
