"""The bundled Tiled service's adapter for HDF5 files: open once, read what is asked.

Tiled 0.2.20's own adapter (``tiled.adapters.hdf5``) is built anew for every
request, makes a dask task per HDF5 chunk and opens the file in each task: a
whole read of 1e6 PandA rows in 1024-row chunks opens the file 977 times per
field, and half of the server's time goes to ``h5py.File``. This adapter,
registered for ``application/x-hdf5`` in the service's configuration
(:data:`ADAPTERS_BY_MIMETYPE`), instead

* keeps files open in a bounded, process-wide :class:`HandleCache` (LRU, at
  most :data:`MAX_OPEN` files, each closed after :data:`IDLE_SECONDS` unused),
* reads exactly the requested selection with one h5py call per file, so HDF5
  touches only the chunks the selection overlaps (at most the selection plus
  one partial chunk at each edge in memory; never the whole file),
* follows files that grow during a run: the catalog's structure says how many
  rows exist; when a cached handle has fewer, or rows it has not yet
  confirmed are asked for, the dataset is refreshed (SWMR) or the file
  reopened, so a read returns the rows the catalog advertises, never stale
  ones, and never rows beyond them.

Layouts it does not serve itself (an HDF5 group as a container, data-source
``slice``/``squeeze`` parameters, object dtypes, scalars, reshaped
structures) go to Tiled's adapter unchanged.
"""

from __future__ import annotations

import builtins
import copy
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tiled.adapters.core import Adapter
from tiled.adapters.hdf5 import HDF5Adapter as TiledHDF5Adapter
from tiled.adapters.utils import DataNotReadyError, IncompatibleShapeError
from tiled.ndslice import NDBlock, NDSlice
from tiled.structures.array import ArrayStructure
from tiled.structures.core import StructureFamily
from tiled.utils import path_from_uri

from .config import ADAPTERS_BY_MIMETYPE

__all__ = [
    "ADAPTERS_BY_MIMETYPE",
    "HDF5_MIMETYPE",
    "CachedHDF5Adapter",
    "CachedHDF5ArrayAdapter",
    "HandleCache",
    "handle_cache",
]

HDF5_MIMETYPE = "application/x-hdf5"

#: Files kept open at most (each holds a descriptor and HDF5's caches).
MAX_OPEN = int(os.environ.get("PANDA_FLYSCAN_HDF5_MAX_OPEN", "64"))
#: Seconds an unused file stays open: a held handle keeps a deleted file's
#: space allocated and, without SWMR, a shared lock that would stop a writer
#: recreating the file.
IDLE_SECONDS = float(os.environ.get("PANDA_FLYSCAN_HDF5_IDLE_SECONDS", "30"))

#: The whole array, as Tiled's adapters spell it.
_ALL = NDSlice(...)

#: One signature of a file on disk: a changed inode means a new file.
_Signature = tuple[int, int]


@dataclass
class _Entry:
    file: h5py.File
    signature: _Signature
    swmr: bool
    last_used: float
    #: Rows per dataset confirmed since the last refresh: rows the catalog
    #: advertised then were on disk, so data read below them is final.
    confirmed: dict[str, int] = field(default_factory=dict)
    #: Datasets looked up in the file (an h5py lookup costs ~0.1 ms a read).
    datasets: dict[str, h5py.Dataset] = field(default_factory=dict)


@dataclass
class CacheStats:
    """Counters of a :class:`HandleCache` (for tests and profiling)."""

    opens: int = 0
    hits: int = 0
    refreshes: int = 0
    evictions: int = 0
    #: Dataset reads and the bytes they returned.
    reads: int = 0
    bytes_read: int = 0


class HandleCache:
    """Open HDF5 files shared by every request of the server process.

    Bounded (``max_open`` files, least recently used closed first; unused
    files closed after ``idle_seconds``). One lock guards the cache and every
    read through it: h5py serializes HDF5 calls anyway, and a file is never
    closed under a reader.
    """

    def __init__(
        self, max_open: int = MAX_OPEN, idle_seconds: float = IDLE_SECONDS
    ) -> None:
        if max_open < 1:
            raise ValueError("max_open must be at least 1")
        self.max_open = max_open
        self.idle_seconds = idle_seconds
        self.stats = CacheStats()
        self._lock = threading.RLock()
        self._entries: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @contextmanager
    def dataset(
        self,
        path: str | Path,
        name: str,
        *,
        rows: int | None = None,
        swmr: bool = True,
        libver: str | tuple[str, str] = "latest",
        locking: bool | str | None = None,
    ) -> Iterator[h5py.Dataset]:
        """The dataset ``name`` of ``path``, current for its first ``rows`` rows.

        ``rows``: how many rows along the first axis the caller will read (the
        catalog's count); if this handle has not confirmed that many since its
        last refresh, it refreshes (SWMR) or reopens first. The cache's lock is
        held until the block exits: read inside it.
        """
        path = os.path.realpath(path)
        key = (path, bool(swmr), str(libver), locking)
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            entry, fresh = self._entry(key, path, swmr, libver, locking)
            entry.last_used = now
            dataset = entry.datasets.get(name)
            if dataset is None:
                node = entry.file[name]
                if not isinstance(node, h5py.Dataset):
                    raise KeyError(f"{name!r} in {path} is not a dataset")
                dataset = entry.datasets[name] = node
            if rows is not None:
                # A fresh open sees every row the catalog advertised before this
                # request; an older handle may hold extents and chunks from
                # before they were written.
                if not fresh and entry.confirmed.get(name, -1) < rows:
                    dataset, entry = self._refresh(
                        key, entry, path, name, libver, locking
                    )
                seen = dataset.shape[0] if dataset.shape else 0
                entry.confirmed[name] = max(
                    entry.confirmed.get(name, 0), min(rows, seen)
                )
            yield dataset

    def _entry(
        self,
        key: tuple[Any, ...],
        path: str,
        swmr: bool,
        libver: str | tuple[str, str],
        locking: bool | str | None,
    ) -> tuple[_Entry, bool]:
        """The cached entry of ``key`` (opened if need be) and whether it is new."""
        stat = os.stat(path)
        signature = (stat.st_dev, stat.st_ino)
        entry = self._entries.get(key)
        if entry is not None and entry.signature != signature:
            self._close(key)  # replaced on disk: a new file
            entry = None
        if entry is not None:
            self.stats.hits += 1
            self._entries.move_to_end(key)
            return entry, False
        try:
            handle = h5py.File(path, "r", swmr=swmr, libver=libver, locking=locking)
        except OSError as error:
            if "SWMR read access flag" not in str(error):
                raise
            # HDF5 opens a file once per process: already open elsewhere in it
            # with the other flag (a user's own h5py.File), share that mode.
            swmr = not swmr
            handle = h5py.File(path, "r", swmr=swmr, libver=libver, locking=locking)
        self.stats.opens += 1
        entry = _Entry(handle, signature, swmr, time.monotonic())
        self._entries[key] = entry
        while len(self._entries) > self.max_open:
            self._close(next(iter(self._entries)))
        return entry, True

    def _refresh(
        self,
        key: tuple[Any, ...],
        entry: _Entry,
        path: str,
        name: str,
        libver: str | tuple[str, str],
        locking: bool | str | None,
    ) -> tuple[h5py.Dataset, _Entry]:
        self.stats.refreshes += 1
        if entry.swmr:
            dataset = entry.datasets.get(name) or entry.file[name]
            assert isinstance(dataset, h5py.Dataset)
            dataset.refresh()  # re-reads the extent and drops its chunk cache
            return dataset, entry
        # Without SWMR, only a new open sees what another process wrote.
        self._close(key)
        fresh, _ = self._entry(key, path, False, libver, locking)
        dataset = fresh.file[name]
        assert isinstance(dataset, h5py.Dataset)
        fresh.datasets[name] = dataset
        return dataset, fresh

    def _expire(self, now: float) -> None:
        for key in [
            k for k, e in self._entries.items() if now - e.last_used > self.idle_seconds
        ]:
            self._close(key)

    def _close(self, key: tuple[Any, ...]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.stats.evictions += 1
            entry.file.close()

    def close_all(self) -> None:
        """Close every cached file."""
        with self._lock:
            for key in list(self._entries):
                self._close(key)

    def record_read(self, nbytes: int) -> None:
        """Count one dataset read of ``nbytes`` (the stats tests look at)."""
        self.stats.reads += 1
        self.stats.bytes_read += nbytes


#: The cache of the server process.
handle_cache = HandleCache()


def _axis_selection(index: int | builtins.slice, length: int) -> tuple[Any, bool]:
    """h5py's selection along one axis (steps > 0 only) and whether to flip it."""
    if isinstance(index, builtins.slice):
        start, stop, step = index.indices(length)
        if step > 0:
            return builtins.slice(start, max(start, stop), step), False
        indices = range(start, stop, step)
        if not indices:
            return builtins.slice(0, 0), False
        return builtins.slice(indices[-1], indices[0] + 1, -step), True
    position = index + length if index < 0 else index
    if not 0 <= position < length:
        raise IndexError(f"index {index} out of range for length {length}")
    return position, False


def _expand(selection: NDSlice, ndim: int) -> list[int | builtins.slice]:
    """One int or slice per axis (Ellipsis and missing axes become ``:``)."""
    items = list(selection)
    if any(item is Ellipsis for item in items):
        at = items.index(Ellipsis)
        fill = ndim - (len(items) - 1)
        items[at : at + 1] = [builtins.slice(None)] * fill
    items += [builtins.slice(None)] * (ndim - len(items))
    if len(items) > ndim:
        raise IndexError(f"too many indices ({len(items)}) for {ndim} dimensions")
    return items


class CachedHDF5ArrayAdapter(Adapter[ArrayStructure]):
    """One array (a dataset, possibly across several files along the first
    axis) read through the :class:`HandleCache`.

    Its shape is the catalog's structure: rows the files hold beyond it are
    not served; fewer rows than it raise :class:`DataNotReadyError` (Tiled
    answers 503, retry), after a refresh of the handle.
    """

    structure_family = StructureFamily.array

    def __init__(
        self,
        paths: Sequence[Path],
        dataset: str,
        structure: ArrayStructure,
        *,
        swmr: bool = True,
        libver: str = "latest",
        locking: bool | str | None = None,
        cache: HandleCache | None = None,
        metadata: dict[str, Any] | None = None,
        specs: list[Any] | None = None,
    ) -> None:
        super().__init__(structure, metadata=metadata, specs=specs)
        self.paths = list(paths)
        self.dataset = dataset
        self._open_kwargs: dict[str, Any] = {
            "swmr": swmr,
            "libver": libver,
            "locking": locking,
        }
        self.cache = handle_cache if cache is None else cache
        self.dtype = structure.data_type.to_numpy_dtype()

    @property
    def dims(self) -> tuple[str, ...] | None:
        """Names of the dimensions, from the structure."""
        return self._structure.dims

    # -- reading ------------------------------------------------------------------
    def read(self, slice: NDSlice = _ALL) -> np.ndarray:
        """The selection ``slice`` of the array (all of it by default)."""
        shape = tuple(self._structure.shape)
        items = _expand(NDSlice(slice), len(shape))
        selections = [_axis_selection(i, n) for i, n in zip(items, shape, strict=True)]
        out_shape = tuple(
            len(range(sel.start, sel.stop, sel.step))
            for sel, _ in selections
            if isinstance(sel, builtins.slice)
        )
        # Unit axes after the first may differ between structure and file
        # (ophyd-async describes a frame per event as (1, H, W)): select in
        # the file's own axes without them, then reshape to what was asked.
        trailing = [
            (sel, flip)
            for (sel, flip), n in zip(selections[1:], shape[1:], strict=True)
            if n != 1
        ]
        if 0 in out_shape:
            return np.empty(out_shape, dtype=self.dtype)
        first, flip_first = selections[0]
        out = self._read_rows(first, tuple(sel for sel, _ in trailing), shape[0])
        # h5py takes positive steps only: negative ones are read forwards, flipped.
        flips = [flip_first] if isinstance(first, builtins.slice) else []
        flips += [flip for sel, flip in trailing if isinstance(sel, builtins.slice)]
        if any(flips):
            out = out[tuple(builtins.slice(None, None, -1 if f else 1) for f in flips)]
        return out.reshape(out_shape)

    def read_block(self, block: NDBlock, slice: NDSlice = _ALL) -> np.ndarray:
        """Block ``block`` of the structure's chunks, optionally a slice of it."""
        region = NDBlock(*block).slice_from_chunks(self._structure.chunks)
        out = self.read(region)
        return out[tuple(slice)] if slice else out

    def _read_rows(
        self, first: int | builtins.slice, rest: tuple[Any, ...], rows: int
    ) -> np.ndarray:
        """Rows ``first`` (of ``rows``) and ``rest`` of the other non-unit axes,
        file by file along the first axis, with the files' unit axes dropped."""
        pieces: list[np.ndarray] = []
        offset = 0
        for number, path in enumerate(self.paths):
            last = number == len(self.paths) - 1
            # The catalog's count bounds the last file; the others are whole.
            with self.cache.dataset(
                path,
                self.dataset,
                rows=rows - offset if last else None,
                **self._open_kwargs,
            ) as ds:
                self._check(ds, path)
                length = min(ds.shape[0], rows - offset)
                if last and length < rows - offset:
                    raise DataNotReadyError(
                        f"The structure advertises {rows} rows, but only "
                        f"{offset + ds.shape[0]} are in the files yet; retry later."
                    )
                local = _local(first, offset, length)
                if local is not None:
                    others = iter(rest)
                    selection = (
                        local,
                        *(0 if n == 1 else next(others) for n in ds.shape[1:]),
                    )
                    data = np.asarray(ds[selection])
                    self.cache.record_read(data.nbytes)
                    pieces.append(data)
                    if isinstance(first, int):
                        break
            offset += length
            if offset >= rows:
                break
        if not pieces:
            raise IndexError(f"{first} selects nothing of {rows} rows")
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=0)

    def _check(self, ds: h5py.Dataset, path: Path) -> None:
        if not _compatible(ds.shape, tuple(self._structure.shape)):
            raise IncompatibleShapeError(
                f"{path}:{self.dataset} has shape {ds.shape}; the structure "
                f"says {tuple(self._structure.shape)}"
            )
        if ds.dtype != self.dtype:
            raise ValueError(
                f"Data type mismatch between array data and structure: "
                f"{ds.dtype} != {self.dtype}"
            )


def _compatible(file_shape: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether a file's dataset serves ``shape``: any rows, the same other axes
    once axes of length 1 are left out."""
    if not file_shape or not shape:
        return False
    return [n for n in file_shape[1:] if n != 1] == [n for n in shape[1:] if n != 1]


def _local(
    first: int | builtins.slice, offset: int, length: int
) -> int | builtins.slice | None:
    """``first`` (global rows) within a file holding rows [offset, offset+length)."""
    if isinstance(first, int):
        return first - offset if offset <= first < offset + length else None
    start, stop, step = first.start, first.stop, first.step or 1
    if start < offset:
        start += -(-(offset - start) // step) * step
    stop = min(stop, offset + length)
    if start >= stop:
        return None
    return builtins.slice(start - offset, stop - offset, step)


class CachedHDF5Adapter:
    """The entry point Tiled's catalog calls for ``application/x-hdf5`` data
    sources (``from_catalog``): a :class:`CachedHDF5ArrayAdapter` for plain
    datasets, Tiled's own adapter for everything else."""

    @classmethod
    def from_catalog(
        cls,
        data_source: Any,
        node: Any,
        /,
        dataset: str | list[str] = "/",
        swmr: bool = True,
        libver: str = "latest",
        locking: bool | str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Build the adapter of one data source (Tiled calls this per request)."""
        name = dataset if isinstance(dataset, str) else "/".join(dataset)
        adapter = cls._cached(data_source, node, name, swmr, libver, locking, kwargs)
        if adapter is not None:
            return adapter
        return TiledHDF5Adapter.from_catalog(
            data_source,
            node,
            dataset=name,
            swmr=swmr,
            libver=libver,
            locking=locking,
            **kwargs,
        )

    @staticmethod
    def _cached(
        data_source: Any,
        node: Any,
        name: str,
        swmr: bool,
        libver: str,
        locking: bool | str | None,
        kwargs: dict[str, Any],
    ) -> CachedHDF5ArrayAdapter | None:
        """Our adapter for a plain dataset, or None for Tiled's to handle it."""
        structure = data_source.structure
        if (
            data_source.structure_family != StructureFamily.array
            or not isinstance(structure, ArrayStructure)
            or kwargs.get("slice")
            or kwargs.get("squeeze")
            or set(kwargs) - {"slice", "squeeze"}
            or len(structure.shape) < 1
            or structure.data_type.to_numpy_dtype() == np.dtype("O")
        ):
            return None
        assets = data_source.assets
        uris = [a.data_uri for a in assets if a.parameter == "data_uris"] or [
            assets[0].data_uri
        ]
        paths = [path_from_uri(uri) for uri in uris]
        # The catalog's row count confirms the handle (see HandleCache.dataset).
        rows = structure.shape[0] if len(paths) == 1 else None
        with handle_cache.dataset(
            paths[0], name, rows=rows, swmr=swmr, libver=libver, locking=locking
        ) as ds:
            if ds.dtype == np.dtype("O") or not _compatible(
                ds.shape, tuple(structure.shape)
            ):
                return None
            attrs = {
                k: (v.decode() if isinstance(v, bytes) else v)
                for k, v in ds.attrs.items()
            }
        metadata = copy.deepcopy(node.metadata_)
        metadata.update(attrs)
        return CachedHDF5ArrayAdapter(
            paths,
            name,
            structure,
            swmr=swmr,
            libver=libver,
            locking=locking,
            metadata=metadata,
            specs=node.specs,
        )
