"""bluesky-tiled-plugins' TiledWriter, with an explicit flush.

The TiledWriter buffers event rows and StreamDatum documents until it holds
``batch_size`` of them or the run stops: with the default (10000) nothing is
visible in Tiled during a run, and with 1 every document costs a request
(~30 ms). This subclass keeps the writer as it is and adds :meth:`flush`,
which writes whatever is buffered in one request per table / external node;
the durable writer calls it from its background thread every ~0.5 s.

:meth:`flush` reaches into ``_RunWriter`` (private in bluesky-tiled-plugins
2.0.x, which pyproject pins). :func:`check_compatible` verifies at import time
that the pieces it uses are there, so an incompatible upgrade fails loudly.
"""

from __future__ import annotations

from typing import Any

from bluesky_tiled_plugins import TiledWriter
from bluesky_tiled_plugins.writing.tiled_writer import _RunWriter

#: Batch size for the wrapped writer: effectively "never on its own", so rows
#: are written by flush() (or at the stop document).
UNBOUNDED_BATCH = 2**62

_RUN_WRITER_METHODS = ("_write_internal_data", "_write_external_data")


def check_compatible() -> None:
    """Fail loudly if bluesky-tiled-plugins changed what flush() relies on."""
    missing = [m for m in _RUN_WRITER_METHODS if not hasattr(_RunWriter, m)]
    if missing or not hasattr(TiledWriter, "_factory"):
        from importlib.metadata import version

        raise ImportError(
            f"bluesky-tiled-plugins {version('bluesky-tiled-plugins')} lacks "
            f"{missing or ['TiledWriter._factory']}: panda_flyscan.storage needs "
            "bluesky-tiled-plugins ~=2.0.12"
        )


check_compatible()


def flush_run_writer(run_writer: Any) -> None:
    """Write the rows and StreamDatums a ``_RunWriter`` holds in memory."""
    for desc_name, rows in list(run_writer._internal_data_cache.items()):
        if rows:
            run_writer._write_internal_data(
                rows, desc_node=run_writer._desc_nodes[desc_name]
            )
            rows.clear()
    for sres_uid in list(run_writer._external_data_cache):
        run_writer._write_external_data(run_writer._external_data_cache.pop(sres_uid))


class FlushingTiledWriter(TiledWriter):
    """``bluesky_tiled_plugins.TiledWriter`` that writes only when flushed.

    Accepts the TiledWriter's keyword arguments except ``batch_size`` and the
    backup ones (durability is the journal's job). Documents are normalised
    and written exactly as the TiledWriter does; rows and StreamDatums wait in
    memory until :meth:`flush` or the run's stop document.
    """

    def __init__(self, client: Any, **kwargs: Any) -> None:
        for name in ("batch_size", "backup_directory", "backup_dictionary"):
            if name in kwargs:
                raise TypeError(f"FlushingTiledWriter does not take {name!r}")
        super().__init__(client, batch_size=UNBOUNDED_BATCH, **kwargs)
        self.run_writers: list[Any] = []

    def _factory(self, name: str, doc: Any) -> tuple[list[Any], list[Any]]:
        # TiledWriter._factory without the backup wrapper, keeping a reference
        # to the run writer so that it can be flushed.
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

    def flush(self) -> None:
        """Write everything buffered, for every run this writer has seen."""
        for run_writer in self.run_writers:
            flush_run_writer(run_writer)

    def notes(self) -> list[str]:
        """Notes of the run writers (e.g. a forced retry that may duplicate rows)."""
        return [note for rw in self.run_writers for note in rw.notes]
