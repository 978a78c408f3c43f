"""Reading external HDF5 arrays straight from their files, located through Tiled.

Tiled serves an external array over HTTP at a fixed cost of ~25-35 ms per
request on this project's machines (catalog lookup, ORM loading of the node's
data sources, middleware) plus ~3-10 ns per byte (copy to bytes, ETag, framing,
httpx): 0.01-0.1 of h5py's throughput on a page-cached file however the
request is cut (docs/benchmarks.md). A reader on a host that sees the files
(the beamline workstation, the demo, an analysis node mounting the data) needs
no bytes from the server, only what Tiled knows: which files, which dataset,
and how many rows the run has registered. :func:`file_source` asks for that
once (the node's data sources); :func:`read_file_source` then reads the
selection with h5py through the same adapter logic the bundled server uses
(:class:`~.hdf5_adapter.CachedHDF5ArrayAdapter`), with its own handle cache in
the reading process, so

* the result is what Tiled would serve: the rows of the structure Tiled
  advertised when the node was looked up, never more (a file still growing
  holds rows the catalog does not list yet), never stale ones (SWMR refresh);
* only the selection is read from disk (a one-frame read reads one frame);
* access is the file system's: a reader without permission on the files,
  or on another host, gets None from :func:`file_source` and reads over HTTP.

Only plain HDF5 datasets qualify (one data source, ``application/x-hdf5``,
no ``slice``/``squeeze`` parameters, all files readable here).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .hdf5_adapter import HDF5_MIMETYPE, CachedHDF5ArrayAdapter, HandleCache

if TYPE_CHECKING:
    import numpy as np
    from tiled.structures.array import ArrayStructure

__all__ = ["FileSource", "file_source", "read_file_source", "reader_cache"]

#: Files a reading process keeps open (its own cache, not the server's).
reader_cache = HandleCache()


@dataclass(frozen=True)
class FileSource:
    """Where an external array's data is, and how much of it Tiled lists."""

    paths: tuple[Path, ...]
    dataset: str
    structure: ArrayStructure
    swmr: bool
    locking: bool | str | None

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape as Tiled advertised it."""
        return tuple(self.structure.shape)

    def adapter(self, cache: HandleCache | None = None) -> CachedHDF5ArrayAdapter:
        """An adapter reading these files (``cache``: default the process's)."""
        return CachedHDF5ArrayAdapter(
            self.paths,
            self.dataset,
            self.structure,
            swmr=self.swmr,
            locking=self.locking,
            cache=reader_cache if cache is None else cache,
        )


def file_source(node: Any) -> FileSource | None:
    """The files behind a Tiled array client, if this process can read them.

    One request (the node with its data sources). None if the array is not a
    plain external HDF5 dataset or any of its files is not readable here.
    """
    from tiled.structures.array import ArrayStructure
    from tiled.utils import path_from_uri

    if getattr(node, "structure_family", None) != "array":
        return None
    sources = node.data_sources() or []
    if len(sources) != 1:
        return None
    [source] = sources
    parameters = dict(source.parameters or {})
    if source.mimetype != HDF5_MIMETYPE or parameters.get("slice"):
        return None
    if parameters.get("squeeze") or not source.assets:
        return None
    uris = [a.data_uri for a in source.assets if a.parameter == "data_uris"] or [
        source.assets[0].data_uri
    ]
    try:
        paths = tuple(Path(path_from_uri(uri)) for uri in uris)
    except ValueError:  # not a file: URI
        return None
    if not all(os.access(p, os.R_OK) for p in paths):
        return None
    dataset = parameters.get("dataset", "/")
    if not isinstance(dataset, str):
        dataset = "/".join(dataset)
    structure = node.structure()
    if not isinstance(structure, ArrayStructure):
        return None
    return FileSource(
        paths=paths,
        dataset=dataset,
        structure=structure,
        swmr=bool(parameters.get("swmr", True)),
        locking=parameters.get("locking"),
    )


def read_file_source(
    source: FileSource, selection: Sequence[slice] | None = None
) -> np.ndarray:
    """``selection`` (one ``start:stop`` per leading axis; default all) of the
    array, read from its files; shaped as Tiled would serve it."""
    from tiled.ndslice import NDSlice

    adapter = source.adapter()
    return adapter.read(NDSlice(*selection) if selection else NDSlice(...))
