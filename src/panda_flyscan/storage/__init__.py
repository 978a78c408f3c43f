"""Storage of flyscan data in Tiled: a bundled service, a durable writer, read-back.

Event ("slow") data goes into Tiled's writable storage; "fast" data in HDF5
files (detectors, the PandA) is registered as external assets from the
StreamResource/StreamDatum documents. One container per run, one
sub-container per stream. See docs/storage.md.

>>> from panda_flyscan.storage import TiledService, subscribe_tiled_writer
>>> with TiledService(readable=["/data/panda"]) as tiled:
...     writer = subscribe_tiled_writer(RE, tiled.uri, tiled.api_key,
...                                     external_dirs=["/data/panda"])
...     (uid,) = RE(plan)
...     tiled.client()[uid]["primary"].read()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Exports load on first use: `panda-flyscan --help` and the other commands
# import this package for the CLI and should not pay for Tiled's client.
if TYPE_CHECKING:
    from .checks import check_can_write, check_readable, connect
    from .cluster import RedisServer, TiledCluster
    from .config import (
        DEFAULT_API_KEY,
        default_data_dir,
        default_journal_dir,
        local_tiled_config,
        render_postgres_config,
        shipped_postgres_config_path,
    )
    from .errors import (
        ExternalDataUnreadableError,
        ReplayError,
        StorageError,
        TiledAuthenticationError,
        TiledPermissionError,
        TiledServerConfigError,
        TiledServiceError,
        TiledUnreachableError,
    )
    from .grid import GridError, grid_indices, read_grid, to_grid
    from .journal import ReplayResult, ReplayStatus, pending_journals, replay
    from .readback import (
        ExternalAsset,
        external_assets,
        fetch_array,
        fetch_arrays,
        get_run,
        read_array,
        read_arrays,
        read_events,
        read_field,
        read_run,
        read_stream,
        stream_dataframe,
        stream_names,
    )
    from .runner import run_server, serve_local
    from .service import TiledService
    from .writer import DurableTiledWriter, WriterStats, subscribe_tiled_writer

_EXPORTS: dict[str, str] = {
    "DEFAULT_API_KEY": "config",
    "DurableTiledWriter": "writer",
    "ExternalAsset": "readback",
    "ExternalDataUnreadableError": "errors",
    "GridError": "grid",
    "RedisServer": "cluster",
    "ReplayError": "errors",
    "ReplayResult": "journal",
    "ReplayStatus": "journal",
    "StorageError": "errors",
    "TiledAuthenticationError": "errors",
    "TiledCluster": "cluster",
    "TiledPermissionError": "errors",
    "TiledServerConfigError": "errors",
    "TiledService": "service",
    "TiledServiceError": "errors",
    "TiledUnreachableError": "errors",
    "WriterStats": "writer",
    "check_can_write": "checks",
    "check_readable": "checks",
    "connect": "checks",
    "default_data_dir": "config",
    "default_journal_dir": "config",
    "external_assets": "readback",
    "fetch_array": "readback",
    "fetch_arrays": "readback",
    "get_run": "readback",
    "grid_indices": "grid",
    "local_tiled_config": "config",
    "pending_journals": "journal",
    "read_array": "readback",
    "read_arrays": "readback",
    "read_events": "readback",
    "read_field": "readback",
    "read_grid": "grid",
    "read_run": "readback",
    "read_stream": "readback",
    "render_postgres_config": "config",
    "replay": "journal",
    "run_server": "runner",
    "serve_local": "runner",
    "shipped_postgres_config_path": "config",
    "stream_dataframe": "readback",
    "stream_names": "readback",
    "subscribe_tiled_writer": "writer",
    "to_grid": "grid",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "DEFAULT_API_KEY",
    "DurableTiledWriter",
    "ExternalAsset",
    "ExternalDataUnreadableError",
    "GridError",
    "RedisServer",
    "ReplayError",
    "ReplayResult",
    "ReplayStatus",
    "StorageError",
    "TiledAuthenticationError",
    "TiledCluster",
    "TiledPermissionError",
    "TiledServerConfigError",
    "TiledService",
    "TiledServiceError",
    "TiledUnreachableError",
    "WriterStats",
    "check_can_write",
    "check_readable",
    "connect",
    "default_data_dir",
    "default_journal_dir",
    "external_assets",
    "fetch_array",
    "fetch_arrays",
    "get_run",
    "grid_indices",
    "local_tiled_config",
    "pending_journals",
    "read_array",
    "read_arrays",
    "read_events",
    "read_field",
    "read_grid",
    "read_run",
    "read_stream",
    "render_postgres_config",
    "replay",
    "run_server",
    "serve_local",
    "shipped_postgres_config_path",
    "stream_dataframe",
    "stream_names",
    "subscribe_tiled_writer",
    "to_grid",
]
