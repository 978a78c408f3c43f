"""bluesky-tiled-plugins' TiledWriter, with an explicit flush.

The TiledWriter buffers event rows and StreamDatum documents until it holds
``batch_size`` of them or the run stops: with the default (10000) nothing is
visible in Tiled during a run, and with 1 every document costs a request
(~30 ms). This subclass keeps the writer as it is and adds :meth:`flush`,
which writes whatever is buffered in one request per table / external node;
the durable writer calls it from its background thread every ~0.5 s.

The writer's internals it needs are reached through
:mod:`panda_flyscan._compat.bluesky_tiled_plugins`, which checks the
installed version when imported.
"""

from __future__ import annotations

from typing import Any

from .._compat.bluesky_tiled_plugins import (
    TiledWriterKeepingRuns,
    flush_run_writer,
    run_writer_notes,
)

#: Batch size for the wrapped writer: effectively "never on its own", so rows
#: are written by flush() (or at the stop document).
UNBOUNDED_BATCH = 2**62


class FlushingTiledWriter(TiledWriterKeepingRuns):
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

    def flush(self) -> None:
        """Write everything buffered, for every run this writer has seen."""
        for run_writer in self.run_writers:
            flush_run_writer(run_writer)

    def notes(self) -> list[str]:
        """Notes of the run writers (e.g. a forced retry that may duplicate rows)."""
        return [note for rw in self.run_writers for note in run_writer_notes(rw)]
