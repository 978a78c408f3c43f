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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from .fail_fast import RequestAborted, failing_fast

T = TypeVar("T")

#: Attempts of a read that collides with a concurrent write (see above).
READ_ATTEMPTS = 4

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
    """One data key of a stream as a numpy array, optionally a slice of it."""
    import numpy as np

    def read() -> Any:
        node = get_run(client, uid)[stream][field]
        return node.read() if index is None else node.read(slice=index)

    return np.asarray(_read_fresh(client, read))


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
