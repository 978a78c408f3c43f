"""Tiled server configurations: the embedded local default and production.

Two layouts are produced here, both as plain Tiled configuration (the same
schema ``tiled serve config`` reads), and :func:`load_config` validates any
configuration before a server starts:

* :func:`local_tiled_config`: the service :mod:`.runner` runs by default. One
  data directory holds the SQLite catalog, the DuckDB table store (event data)
  and a file store (arrays); extra directories are readable as external assets.
* :func:`render_postgres_config`: a commented YAML file for a production
  deployment with a PostgreSQL catalog and PostgreSQL table store. The file
  shipped beside this module (``tiled-postgres.yml``) is its output with the
  default ``${...}`` placeholders, which Tiled expands from the environment.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from .errors import TiledServiceError

if TYPE_CHECKING:
    from tiled.config import Config

#: API key of the local development service. It is documented (docs/storage.md)
#: and matches the user tutorial (``tiled serve catalog --api-key=secret``). The
#: service only listens on 127.0.0.1; give a real key for anything shared.
DEFAULT_API_KEY = "secret"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000

#: Environment variable read by ``serve`` for its key (the name Tiled uses).
SERVER_API_KEY_ENV = "TILED_SINGLE_USER_API_KEY"
#: Environment variable read by the client-side commands (the name Tiled uses).
CLIENT_API_KEY_ENV = "TILED_API_KEY"

#: Adapters the bundled configurations give Tiled, by mimetype: HDF5 read
#: from files kept open, only the selection asked for (:mod:`.hdf5_adapter`;
#: named, not imported, so that loading this module stays light).
ADAPTERS_BY_MIMETYPE: dict[str, str] = {
    "application/x-hdf5": "panda_flyscan.storage.hdf5_adapter:CachedHDF5Adapter",
}

#: Name of the shipped production configuration, beside this module.
POSTGRES_CONFIG_NAME = "tiled-postgres.yml"

#: Placeholders of the shipped production file, expanded by Tiled at start-up.
POSTGRES_PLACEHOLDERS: dict[str, str] = {
    "catalog_uri": "${PANDA_TILED_CATALOG_URI}",
    "storage_uri": "${PANDA_TILED_STORAGE_URI}",
    "data_dir": "${PANDA_TILED_DATA_DIR}",
    "api_key": "${PANDA_TILED_API_KEY}",
    "readable": "${PANDA_TILED_READABLE_DIR}",
}


def default_data_dir() -> Path:
    """Where the local service keeps its catalog and data unless told otherwise."""
    return platformdirs.user_data_path("panda-flyscan") / "tiled"


def default_journal_dir() -> Path:
    """Where the durable writer journals documents unless told otherwise."""
    return platformdirs.user_data_path("panda-flyscan") / "tiled-journal"


@dataclass(frozen=True)
class LocalLayout:
    """Files of the embedded local service, all under one data directory."""

    data_dir: Path

    @property
    def catalog_path(self) -> Path:
        """SQLite database of the catalog (metadata, structure, asset links)."""
        return self.data_dir / "catalog.db"

    @property
    def tables_path(self) -> Path:
        """DuckDB database holding tabular data (event data of each stream)."""
        return self.data_dir / "tables.duckdb"

    @property
    def files_dir(self) -> Path:
        """Writable file storage (internal arrays too large for a table)."""
        return self.data_dir / "data"

    @property
    def external_dir(self) -> Path:
        """Default readable directory for detector and PandA HDF5 files."""
        return self.data_dir / "external"

    @property
    def log_path(self) -> Path:
        """Log of the server process."""
        return self.data_dir / "server.log"

    @property
    def lock_path(self) -> Path:
        """Held by the running server so two cannot share a data directory."""
        return self.data_dir / "server.lock"

    def create(self) -> None:
        """Create the directories of the layout."""
        for directory in (self.data_dir, self.files_dir, self.external_dir):
            directory.mkdir(parents=True, exist_ok=True)


def local_tiled_config(
    data_dir: str | Path,
    *,
    api_key: str = DEFAULT_API_KEY,
    readable: Iterable[str | Path] = (),
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
) -> dict[str, Any]:
    """Tiled configuration of the embedded service rooted at ``data_dir``.

    The writable storage pairs a file directory with a DuckDB table store: the
    TiledWriter puts event data in tables, and a file-only store answers 500 on
    table creation. ``readable`` lists directories whose files may be registered
    as external assets (where HDF5 files land); the layout's ``external``
    directory is always among them.
    """
    layout = LocalLayout(Path(data_dir).resolve())
    readable_dirs = [str(layout.external_dir)]
    for directory in readable:
        resolved = str(Path(directory).resolve())
        if resolved not in readable_dirs:
            readable_dirs.append(resolved)
    return {
        "catalog": {
            "uri": f"sqlite:///{layout.catalog_path}",
            "init_if_not_exists": True,
            "writable_storage": [
                str(layout.files_dir),
                f"duckdb:///{layout.tables_path}",
            ],
            "readable_storage": readable_dirs,
            # HDF5 read from open files, only the selection (hdf5_adapter).
            "adapters_by_mimetype": dict(ADAPTERS_BY_MIMETYPE),
        },
        "authentication": {"single_user_api_key": api_key},
        # In-memory cache of live updates: lets clients subscribe to a run's
        # streams over websockets (bluesky_tiled_plugins.subscribe_to_streams).
        "streaming_cache": {"uri": "memory"},
        "uvicorn": {"host": host, "port": port},
    }


def render_postgres_config(
    *,
    catalog_uri: str = POSTGRES_PLACEHOLDERS["catalog_uri"],
    storage_uri: str = POSTGRES_PLACEHOLDERS["storage_uri"],
    data_dir: str = POSTGRES_PLACEHOLDERS["data_dir"],
    api_key: str = POSTGRES_PLACEHOLDERS["api_key"],
    readable: Sequence[str] = (POSTGRES_PLACEHOLDERS["readable"],),
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    streaming_cache_uri: str | None = None,
) -> str:
    """YAML Tiled configuration for production with PostgreSQL.

    Every argument defaults to a ``${PANDA_TILED_...}`` placeholder that Tiled
    expands from the environment when it reads the file, so secrets (database
    password, API key) need not be written into it.

    ``streaming_cache_uri`` (``redis://host:port``, or
    ``${PANDA_TILED_REDIS_URI}``) adds the Redis streaming cache that several
    server processes on one catalog share for live updates (a cluster, see
    docs/deployment.md); without it the servers have none.
    """
    if not readable:
        raise ValueError("give at least one readable directory (where HDF5 lands)")

    def q(value: str | int) -> str:
        # JSON scalars are valid YAML and quote anything unusual.
        return json.dumps(value)

    readable_lines = "\n".join(f"    - {q(str(d))}" for d in readable)
    adapter_lines = "\n".join(
        f"    {q(mimetype)}: {q(entry)}"
        for mimetype, entry in ADAPTERS_BY_MIMETYPE.items()
    )
    if streaming_cache_uri:
        streaming = (
            "# Live updates (websocket subscriptions), shared by every server\n"
            "# process on this catalog: a Redis streaming cache.\n"
            f"streaming_cache:\n  uri: {q(streaming_cache_uri)}"
        )
    else:
        streaming = (
            "# Live updates over websockets need a streaming cache; with several\n"
            "# server processes use Redis (`config postgres --redis URI`):\n"
            "# streaming_cache:\n"
            '#   uri: "redis://localhost:6379"'
        )
    return f"""\
# Tiled service for panda-flyscan: production deployment with PostgreSQL.
# Generated by `panda-flyscan tiled config postgres`; see docs/storage.md.
#
# Run it with Tiled's own command or ours (same configuration schema):
#   tiled serve config {POSTGRES_CONFIG_NAME}
#   panda-flyscan tiled serve --config {POSTGRES_CONFIG_NAME}
#
# Values written ${{LIKE_THIS}} are read from the environment by Tiled when
# it loads this file, so passwords and keys stay out of it:
#   PANDA_TILED_CATALOG_URI   postgresql://tiled:PASSWORD@db-host:5432/tiled_catalog
#   PANDA_TILED_STORAGE_URI   postgresql://tiled:PASSWORD@db-host:5432/tiled_storage
#   PANDA_TILED_DATA_DIR      directory for arrays written by Tiled (Zarr)
#   PANDA_TILED_API_KEY       API key that writers and readers present
#   PANDA_TILED_READABLE_DIR  directory where detectors and the PandA write HDF5

authentication:
  # One shared key with every scope. For per-user keys and read-only
  # access, configure an authentication provider instead (Tiled docs).
  single_user_api_key: {q(api_key)}

catalog:
  # Metadata, structures and links to assets. The database must exist;
  # Tiled creates its tables on first start.
  uri: {q(catalog_uri)}
  init_if_not_exists: true
  writable_storage:
    # Arrays written by Tiled (large internal arrays, as Zarr).
    - {q(data_dir)}
    # Tables of event data ("slow" data): a SQL table store is required,
    # a file directory alone fails when the TiledWriter creates a table.
    - {q(storage_uri)}
  readable_storage:
    # Directories whose files may be registered as external assets (HDF5
    # files of detectors and the PandA). Tiled refuses to serve any file
    # outside these, so list every directory your scans write to.
{readable_lines}
  adapters_by_mimetype:
    # HDF5 read from files kept open, only the selection asked for, following
    # files that grow during a run (panda_flyscan.storage.hdf5_adapter; the
    # server's environment must have panda-flyscan installed).
{adapter_lines}

{streaming}

uvicorn:
  # Loopback only: put a TLS reverse proxy in front, or bind a site
  # network address explicitly.
  host: {q(host)}
  port: {q(port)}
"""


def shipped_postgres_config_path() -> Path:
    """Path of the production configuration shipped with the package."""
    return Path(
        str(resources.files("panda_flyscan.storage").joinpath(POSTGRES_CONFIG_NAME))
    )


def _unexpanded(value: Any) -> list[str]:
    """Strings in a parsed configuration still holding ``${VAR}`` placeholders."""
    if isinstance(value, str):
        return [value] if "${" in value or value.startswith("$") else []
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _unexpanded(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _unexpanded(v)]
    return []


def _check_readable_dirs(paths: Iterable[str]) -> None:
    """Fail now, naming the fix, if a readable directory is unusable.

    A missing directory does not stop Tiled from starting, but every external
    asset registered there would fail to read (500) later, mid-analysis.
    """
    for entry in paths:
        path = Path(entry.removeprefix("file://localhost").removeprefix("file://"))
        if "://" in entry and not entry.startswith("file:"):
            continue  # object storage etc.: not ours to check
        if not path.is_dir():
            raise TiledServiceError(
                f"Readable directory {path} does not exist. Create it (the "
                "directory where detectors and the PandA write their files) or "
                "remove it from --readable / readable_storage."
            )
        if not os.access(path, os.R_OK | os.X_OK):
            raise TiledServiceError(
                f"Readable directory {path} is not readable by this user "
                f"(uid {os.getuid()}). Fix its permissions (e.g. chmod o+rx) or "
                "run the server as a user that can read it."
            )


def load_config(config: Mapping[str, Any] | str | Path) -> Config:
    """Parse and validate a Tiled configuration (a dict, or a YAML file/dir).

    Raises :class:`TiledServiceError` for placeholders left unexpanded (an
    environment variable not set) and for readable directories that do not
    exist, before any server starts.
    """
    from tiled.config import Config, parse_configs

    try:
        if isinstance(config, Mapping):
            parsed = Config.model_validate(copy.deepcopy(dict(config)))
        else:
            parsed = parse_configs(Path(config))
    except Exception as err:
        raise TiledServiceError(f"Invalid Tiled configuration: {err}") from err
    for tree in parsed.trees or []:
        args = tree.args or {}
        relevant = {
            k: args.get(k) for k in ("uri", "writable_storage", "readable_storage")
        }
        if missing := _unexpanded(relevant):
            raise TiledServiceError(
                f"The configuration still contains {missing}: set these "
                "environment variables before starting the server (see the "
                "header of the configuration file)."
            )
        _check_readable_dirs(args.get("readable_storage") or [])
    key = parsed.authentication.single_user_api_key
    if key is not None and _unexpanded(key):
        raise TiledServiceError(
            f"The API key is the placeholder {key!r}: set that environment variable."
        )
    return parsed


def check_api_key(api_key: str) -> str:
    """Return ``api_key`` if Tiled accepts it as a single-user key, else raise."""
    if not api_key or not api_key.isalnum():
        raise TiledServiceError(
            "The API key must be non-empty and alphanumeric (Tiled's rule, so that "
            "it survives URLs); generate one with `openssl rand -hex 32`."
        )
    return api_key
