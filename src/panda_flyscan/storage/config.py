"""Tiled server configurations: the embedded local default and production.

Two layouts are produced here, both as plain Tiled configuration (the same
schema ``tiled serve config`` reads):

* :func:`local_tiled_config`: the service :mod:`.server` runs by default. One
  data directory holds the SQLite catalog, the DuckDB table store (event data)
  and a file store (arrays); extra directories are readable as external assets.
* :func:`render_postgres_config`: a commented YAML file for a production
  deployment with a PostgreSQL catalog and PostgreSQL table store. The file
  shipped beside this module (``tiled-postgres.yml``) is its output with the
  default ``${...}`` placeholders, which Tiled expands from the environment.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import platformdirs

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
) -> str:
    """YAML Tiled configuration for production with PostgreSQL.

    Every argument defaults to a ``${PANDA_TILED_...}`` placeholder that Tiled
    expands from the environment when it reads the file, so secrets (database
    password, API key) need not be written into it.
    """
    if not readable:
        raise ValueError("give at least one readable directory (where HDF5 lands)")

    def q(value: str | int) -> str:
        # JSON scalars are valid YAML and quote anything unusual.
        return json.dumps(value)

    readable_lines = "\n".join(f"    - {q(str(d))}" for d in readable)
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

# Live updates over websockets need a streaming cache; with several server
# processes use Redis:
# streaming_cache:
#   uri: "redis://localhost:6379"

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
