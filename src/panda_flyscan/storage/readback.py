"""Reading runs back through Tiled as xarray datasets and pandas data frames.

A run written by the TiledWriter is one container (key: the start uid) with a
sub-container per stream (``primary``, ...). A stream holds the event table
("slow" data, in Tiled's storage) and one array per external data key
(detector images, PandA datasets: HDF5 files registered as assets), read
together as one ``xarray.Dataset`` with ``time`` as the leading dimension.

``client[uid]["primary"]`` is the current spelling; the older
``client[uid]["streams/primary"]`` still works (with a DeprecationWarning)
and so do these helpers, which use the current one.

Reading while a run is being written: Tiled (0.2.20) fetches an array's
shape, then its data, and answers 500 if rows were appended in between; its
client then retries with the stale shape for ~20 s and fails. The helpers
here read with a fail-fast client and, on such an error, fetch the node again
(fresh shape) and retry, so they work during a run.

Large arrays: :func:`read_array` / :func:`read_arrays` (and :func:`read_field`,
which uses them) read external HDF5 arrays straight from their files when
this process can read them (Tiled says which files, which dataset and how
many rows; see :mod:`.direct`): h5py's speed, only the selection touched.
Otherwise (another host, no permission, not HDF5) they fetch the selection
over HTTP in contiguous blocks of about :data:`BLOCK_BYTES`, cut on the
array's chunk boundaries along the first axis, :data:`READ_WORKERS` requests
at a time, straight into one output array, uncompressed from a server on this
host (compressing on loopback only costs CPU). ``direct=False`` forces HTTP.
Each read is of the shape the node had when looked up: during a run, a prefix
of the final data.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from .direct import FileSource, file_source, read_file_source
from .fail_fast import RequestAborted, failing_fast

T = TypeVar("T")

#: Attempts of a read that collides with a concurrent write (see above).
READ_ATTEMPTS = 4
#: Bytes per HTTP request of :func:`read_array`: large enough that Tiled's
#: fixed cost per request (~25-35 ms: catalog lookup, data sources, ETag,
#: framing) is amortized (4 MB blocks: ~90 MB/s, 32 MB: ~300 MB/s measured),
#: small enough that blocks pipeline and bound the server's memory per request.
BLOCK_BYTES = 32 * 1024 * 1024
#: HTTP requests of :func:`read_array` in flight at once (two: one packed by
#: the server while the client receives the other).
READ_WORKERS = 2

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import xarray as xr


def _read_fresh(client: Any, read: Callable[[], T]) -> T:
    """Run ``read`` (which must look nodes up afresh), retrying collisions."""
    for attempt in range(READ_ATTEMPTS):
        try:
            with failing_fast(client):
                return read()
        except (httpx.HTTPStatusError, RequestAborted):
            if attempt == READ_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def get_run(client: Any, uid: str) -> Any:
    """The run container (a ``BlueskyRun`` client) of start uid ``uid``."""
    return client[uid]


def stream_names(client: Any, uid: str) -> list[str]:
    """Names of a run's streams, sorted."""
    return sorted(get_run(client, uid))


def read_stream(
    client: Any,
    uid: str,
    stream: str = "primary",
    *,
    variables: Iterable[str] | None = None,
) -> xr.Dataset:
    """One stream of a run as an ``xarray.Dataset`` (internal and external data).

    ``variables`` selects data keys (default: all, without timestamps).
    """
    names = None if variables is None else list(variables)

    def read() -> xr.Dataset:
        node = get_run(client, uid)[stream]
        return node.read() if names is None else node.read(variables=names)

    return _read_fresh(client, read)


def read_events(client: Any, uid: str, stream: str = "primary") -> pd.DataFrame:
    """The event table of a stream ("slow" data: seq_num, time, values, ts_*).

    One request; the lightest way to follow a run while it is being written.
    """
    return _read_fresh(
        client, lambda: get_run(client, uid)[stream].base["internal"].read()
    )


def read_run(client: Any, uid: str) -> dict[str, xr.Dataset]:
    """Every stream of a run, by name, as ``xarray.Dataset``."""
    return {name: read_stream(client, uid, name) for name in stream_names(client, uid)}


def stream_dataframe(
    client: Any,
    uid: str,
    stream: str = "primary",
    *,
    variables: Iterable[str] | None = None,
) -> pd.DataFrame:
    """A stream's one-value-per-event data keys as a ``pandas.DataFrame``.

    Indexed by ``time``. Scalars (motor positions, counters, PandA captured
    values, ...) become columns; keys with more dimensions per event (images)
    are left out unless asked for in ``variables``, which raises ValueError
    for them: read those with :func:`read_stream`.
    """
    dataset = read_stream(client, uid, stream, variables=variables)
    scalar = [str(name) for name, var in dataset.data_vars.items() if var.ndim == 1]
    if variables is not None:
        wanted = list(variables)
        if bad := [name for name in wanted if name not in scalar]:
            raise ValueError(
                f"{bad} are not one value per event; read them with read_stream()"
            )
        scalar = wanted
    return dataset[sorted(scalar)].to_dataframe()


def read_field(
    client: Any, uid: str, stream: str, field: str, index: Any = None
) -> np.ndarray:
    """One data key of a stream as a numpy array, optionally a slice of it.

    Large selections are read in concurrent blocks (see :func:`read_array`).
    """
    return read_array(client, uid, stream, field, index)


def read_array(
    client: Any,
    uid: str,
    stream: str,
    field: str,
    index: Any = None,
    *,
    block_bytes: int = BLOCK_BYTES,
    workers: int = READ_WORKERS,
    compress: bool | None = None,
    direct: bool | None = None,
) -> np.ndarray:
    """One array of a stream (``index``: a numpy-style selection; default all),
    fetched in contiguous blocks, several at a time (see :func:`fetch_array`).
    """
    return read_arrays(
        client,
        uid,
        stream,
        [field],
        index,
        block_bytes=block_bytes,
        workers=workers,
        compress=compress,
        direct=direct,
    )[field]


def read_arrays(
    client: Any,
    uid: str,
    stream: str,
    fields: Iterable[str],
    index: Any = None,
    *,
    block_bytes: int = BLOCK_BYTES,
    workers: int = READ_WORKERS,
    compress: bool | None = None,
    direct: bool | None = None,
) -> dict[str, np.ndarray]:
    """Several arrays of one stream, by name, their blocks fetched together.

    Looks the stream up once; retries with fresh shapes when a read collides
    with a write (see the module's docstring).
    """
    names = list(fields)

    def read() -> dict[str, np.ndarray]:
        node = get_run(client, uid)[stream]
        nodes = {name: _array_node(node, name) for name in names}
        return fetch_arrays(
            nodes,
            index,
            block_bytes=block_bytes,
            workers=workers,
            compress=compress,
            direct=direct,
        )

    return _read_fresh(client, read)


def fetch_array(
    node: Any,
    index: Any = None,
    *,
    block_bytes: int = BLOCK_BYTES,
    workers: int = READ_WORKERS,
    compress: bool | None = None,
    direct: bool | None = None,
) -> np.ndarray:
    """Read a Tiled array client's data (``index`` a selection; default all).

    Selections contiguous along the first axis and larger than
    ``block_bytes`` are cut into blocks on the array's chunk boundaries
    (the writer's ``chunk_shape``), each one ``/array/full`` request,
    ``workers`` at a time, copied into one preallocated result. ``compress``:
    let the server compress (default: not for a server on this host).

    ``direct``: read the array's files here instead (see :mod:`.direct`);
    default: when they are plain HDF5 files this process can read; True
    raises ValueError if they are not; False always reads over HTTP.
    """
    return fetch_arrays(
        {"": node},
        index,
        block_bytes=block_bytes,
        workers=workers,
        compress=compress,
        direct=direct,
    )[""]


def fetch_arrays(
    nodes: Mapping[str, Any],
    index: Any = None,
    *,
    block_bytes: int = BLOCK_BYTES,
    workers: int = READ_WORKERS,
    compress: bool | None = None,
    direct: bool | None = None,
) -> dict[str, np.ndarray]:
    """:func:`fetch_array` for several array clients, all blocks in one pool."""
    import numpy as np

    outputs: dict[str, np.ndarray] = {}
    jobs: list[tuple[Any, np.ndarray, tuple[slice, ...], Any]] = []
    for name, node in nodes.items():
        shape = tuple(node.shape)
        dtype = np.dtype(node.dtype)
        selection = _normalize(index, shape)
        source = None if direct is False else _file_source(node)
        if direct and source is None:
            raise ValueError(
                f"{node.uri}: not plain HDF5 files this process can read "
                "(another host, no permission, or another format); read it "
                "with direct=None or direct=False (over HTTP)"
            )
        if source is not None and selection is not None:
            outputs[name] = read_file_source(source, selection)
            continue
        if selection is None:  # ints, steps, ...: one request, as Tiled's client does
            outputs[name] = np.asarray(node.read() if index is None else node[index])
            continue
        out_shape = tuple(s.stop - s.start for s in selection)
        out = np.empty(out_shape, dtype=dtype)
        outputs[name] = out
        row_bytes = dtype.itemsize * math.prod(out_shape[1:])
        bounds = _block_bounds(
            selection[0].start,
            selection[0].stop,
            max(1, block_bytes // max(row_bytes, 1)),
            node.chunks[0] if node.chunks else (),
        )
        for start, stop in bounds:
            block = (slice(start, stop), *selection[1:])
            target = out[start - selection[0].start : stop - selection[0].start]
            jobs.append((node, target, block, dtype))
    if jobs:
        headers = {"Accept": "application/octet-stream"}
        first = jobs[0][0]
        if compress is False or (compress is None and _is_local(first)):
            headers["Accept-Encoding"] = "identity"

        def fetch(job: tuple[Any, np.ndarray, tuple[slice, ...], Any]) -> None:
            node, target, block, dtype = job
            _fetch_block(node, target, block, dtype, headers)

        if len(jobs) == 1 or workers <= 1:
            for job in jobs:
                fetch(job)
        else:
            with ThreadPoolExecutor(min(workers, len(jobs))) as pool:
                list(pool.map(fetch, jobs))
    return outputs


#: Data sources looked up, by node URI: one request per array, not per read.
#: A one-file source is reused with the node's current structure as the
#: array grows; one of several files only at the same shape (files may have
#: been added since).
_SOURCES: OrderedDict[tuple[str, tuple[int, ...] | None], FileSource | None] = (
    OrderedDict()
)
_SOURCES_MAX = 256


def _file_source(node: Any) -> FileSource | None:
    """:func:`.direct.file_source` of ``node``, remembered (see ``_SOURCES``)."""
    uri, shape = str(node.uri), tuple(node.shape)
    for key in ((uri, None), (uri, shape)):
        if key in _SOURCES:
            _SOURCES.move_to_end(key)
            source = _SOURCES[key]
            if source is None or source.shape == shape:
                return source
            return dataclasses.replace(source, structure=node.structure())
    source = file_source(node)
    single = source is None or len(source.paths) == 1
    _SOURCES[(uri, None if single else shape)] = source
    while len(_SOURCES) > _SOURCES_MAX:
        _SOURCES.popitem(last=False)
    return source


def _array_node(stream: Any, name: str) -> Any:
    """The array client of data key ``name`` in a stream container.

    During a run the stream's composite view may not list a key registered
    since it was fetched; its base container does.
    """
    try:
        return stream[name]
    except KeyError:
        return stream.base[name]


def _normalize(index: Any, shape: tuple[int, ...]) -> tuple[slice, ...] | None:
    """``index`` as one ``start:stop`` slice per axis, or None if it is not
    that simple (ints, steps, Ellipsis in the middle...)."""
    if index is None or index is Ellipsis:
        items: tuple[Any, ...] = ()
    elif isinstance(index, slice):
        items = (index,)
    elif isinstance(index, tuple) and all(isinstance(i, slice) for i in index):
        items = index
    else:
        return None
    if len(items) > len(shape) or not shape:
        return None
    out = []
    padded = (*items, *([slice(None)] * (len(shape) - len(items))))
    for item, length in zip(padded, shape, strict=True):
        start, stop, step = item.indices(length)
        if step != 1:
            return None
        out.append(slice(start, max(start, stop)))
    return tuple(out)


def _block_bounds(
    start: int, stop: int, rows: int, chunks: Sequence[int]
) -> list[tuple[int, int]]:
    """Cut rows [start, stop) into blocks of about ``rows``, each cut on a chunk
    boundary (so no chunk is read by two requests) when chunks are given."""
    if stop <= start:
        return [(start, stop)]
    edges = list(itertools.accumulate(chunks, initial=0)) if chunks else []
    if edges:
        step = max(1, round(rows / max(1, max(chunks))))
        edges = edges[::step]
    else:
        edges = list(range(0, stop + rows, rows))
    cuts = [start, *(e for e in edges if start < e < stop), stop]
    return list(itertools.pairwise(cuts))


def _fetch_block(
    node: Any,
    target: np.ndarray,
    block: tuple[slice, ...],
    dtype: Any,
    headers: dict[str, str],
) -> None:
    """One ``/array/full`` request for ``block``, copied into ``target``."""
    import numpy as np
    from tiled.client.utils import handle_error

    if target.size == 0:
        return
    params = {
        "slice": ",".join(f"{s.start}:{s.stop}" for s in block),
        "expected_shape": ",".join(map(str, target.shape)),
    }
    response: httpx.Response = node.context.http_client.get(
        node.item["links"]["full"], headers=headers, params=params
    )
    handle_error(response)
    target[...] = np.frombuffer(response.content, dtype=dtype).reshape(target.shape)


def _is_local(node: Any) -> bool:
    """Whether ``node``'s server is on this host (loopback address or name)."""
    host = httpx.URL(node.item["links"]["full"]).host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ExternalAsset:
    """A file registered for an external data key."""

    path: Path
    mimetype: str
    parameters: dict[str, Any]

    @property
    def dataset(self) -> str | None:
        """Path of the dataset inside an HDF5 file."""
        return self.parameters.get("dataset")


def external_assets(
    client: Any, uid: str, stream: str, field: str
) -> list[ExternalAsset]:
    """Files (and HDF5 dataset paths) behind an external data key.

    Useful to check what Tiled serves against the files themselves.
    """
    from tiled.utils import path_from_uri

    stream_node = get_run(client, uid)[stream]
    node = stream_node.base[field].include_data_sources()
    assets: list[ExternalAsset] = []
    for source in node.data_sources():
        for asset in source.assets:
            assets.append(
                ExternalAsset(
                    path=Path(path_from_uri(asset.data_uri)),
                    mimetype=source.mimetype,
                    parameters=dict(source.parameters or {}),
                )
            )
    return assets
