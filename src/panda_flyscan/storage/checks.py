"""Connecting to Tiled, and checking at set-up time that a run can be stored.

Every function here fails fast with an error naming the fix, so that a wrong
key, a read-only key, an unreachable server, a server without a table store or
one that cannot read the detectors' directory is reported when the writer is
subscribed, not in the middle of a scan. The checks run on a fail-fast client
(:mod:`.fail_fast`), so a server error is reported at once, not after Tiled's
~45 s of retries.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import httpx

from .errors import (
    ExternalDataUnreadableError,
    TiledAuthenticationError,
    TiledPermissionError,
    TiledServerConfigError,
    TiledUnreachableError,
)
from .fail_fast import FailFastTransport, failing_fast, install_fail_fast

logger = logging.getLogger(__name__)

#: Scopes the TiledWriter needs: create run/stream nodes, write metadata
#: (stop document), append event rows, register external HDF5 assets.
WRITER_SCOPES = frozenset({"create:node", "write:metadata", "write:data", "register"})
#: Scopes replay needs on top, to remove a partially written run first.
REPLAY_SCOPES = WRITER_SCOPES | {"delete:node", "delete:revision"}

_PROBE_PREFIX = "panda-flyscan-check-"


def _base_url(uri: str) -> str:
    url = httpx.URL(uri)
    if url.scheme not in {"http", "https"} or not url.host:
        raise TiledUnreachableError(
            f"{uri!r} is not an http(s) URI: give the server's address, "
            "e.g. http://127.0.0.1:8000"
        )
    return str(url.copy_with(path="/", query=None, fragment=None))


def connect(
    uri: str,
    api_key: str | None = None,
    *,
    timeout: float = 5.0,
    fail_fast: bool = False,
    **kwargs: Any,
) -> Any:
    """Open a Tiled client, failing fast and clearly if that cannot work.

    ``uri`` is the server (``http://host:port``), its API root or a node in
    it. ``api_key`` defaults to Tiled's own ``TILED_API_KEY`` environment
    variable. The server is probed once without retries first, so an
    unreachable one is reported in about ``timeout`` seconds rather than
    after Tiled's ~45 s of retries. ``fail_fast`` installs a
    :class:`FailFastTransport` on the new connection. Extra keyword arguments
    go to ``tiled.client.from_uri``.

    Raises :class:`TiledUnreachableError` and
    :class:`TiledAuthenticationError`.
    """
    from tiled.client import from_uri
    from tiled.client.utils import ClientError

    base = _base_url(uri)
    try:
        with httpx.Client(timeout=timeout) as http:
            http.get(f"{base}healthz")
    except httpx.HTTPError as err:
        raise TiledUnreachableError(
            f"No Tiled server answers at {base} ({type(err).__name__}: {err}). "
            "Start one (`panda-flyscan tiled serve`) or check the host and port."
        ) from err
    try:
        client = from_uri(uri, api_key=api_key, **kwargs)
    except ClientError as err:
        if err.response.status_code == 401:
            what = "rejected the API key" if api_key else "needs an API key"
            raise TiledAuthenticationError(
                f"The Tiled server at {base} {what} (401). Pass the key the "
                "server was started with (api_key=..., --api-key, or the "
                "TILED_API_KEY environment variable); the local service's key "
                "is set by `panda-flyscan tiled serve --api-key`."
            ) from err
        raise TiledUnreachableError(
            f"{uri} answered {err.response.status_code}: is it a Tiled server? ({err})"
        ) from err
    if fail_fast:
        install_fail_fast(client)
    return client


def _key_scopes(client: Any) -> set[str] | None:
    """Scopes of the client's API key, or None where the server has no per-key
    scopes (single-user mode: a valid key there may do everything)."""
    context = client.context
    links = context.server_info.authentication.links
    if links is None or not context.api_key:
        return None
    info = context.which_api_key()
    scopes = set(info.get("scopes", []))
    if "inherit" in scopes:
        principal = info.get("principal") or context.whoami() or {}
        for role in principal.get("roles", []):
            scopes.update(role.get("scopes", []))
    return scopes


def _status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _permission_error(
    base: str, doing: str, err: BaseException
) -> TiledPermissionError:
    return TiledPermissionError(
        f"The API key may not write to the Tiled server at {base}: {doing} was "
        f"refused ({err}). The TiledWriter needs the scopes "
        f"{', '.join(sorted(WRITER_SCOPES))}; use a key that has them (single-user "
        "servers: the key given to `panda-flyscan tiled serve`; multi-user "
        "servers: `tiled api_key create --scopes ...`)."
    )


def _delete_probe(client: Any, key: str) -> None:
    try:
        client.delete_contents(key, recursive=True, external_only=False)
    except Exception as err:  # the check itself succeeded; do not hide that
        logger.warning(
            "Could not remove the probe node %r from Tiled (%s); delete it by hand.",
            key,
            err,
        )


def check_can_write(client: Any, *, scopes: Iterable[str] = WRITER_SCOPES) -> None:
    """Check that ``client`` can store a run: fail now, naming the fix.

    Checks the key's scopes where the server reports them, then writes what
    the TiledWriter writes first (a container, an appendable table and one
    row), reads the row back and deletes the probe. ``client`` should be
    fail-fast (:func:`connect` with ``fail_fast=True``) so a server error is
    reported at once. Raises :class:`TiledPermissionError` and
    :class:`TiledServerConfigError`.
    """
    base = str(client.context.api_uri)
    with failing_fast(client) as transport:
        _check_can_write(client, base, transport, scopes)


def _check_can_write(
    client: Any, base: str, transport: FailFastTransport, scopes: Iterable[str]
) -> None:
    import pyarrow

    key_scopes = _key_scopes(client)
    if key_scopes is not None and (missing := set(scopes) - key_scopes):
        raise TiledPermissionError(
            f"The API key for {base} lacks the scopes {', '.join(sorted(missing))} "
            f"(it has {', '.join(sorted(key_scopes)) or 'none'}). Create a key with "
            f"`tiled api_key create --scopes {' --scopes '.join(sorted(scopes))}`; "
            "a key's scopes are bounded by its user's roles, and Tiled's default "
            "'user' role lacks 'register' (needed for external HDF5 files), which "
            "an admin must grant."
        )
    key = f"{_PROBE_PREFIX}{uuid.uuid4().hex[:12]}"
    doing = "creating a container"
    created = False
    try:
        node = client.create_container(
            key, metadata={"purpose": "panda-flyscan write check; safe to delete"}
        )
        created = True
        doing = "creating an appendable table (event data)"
        schema = pyarrow.schema([("seq_num", pyarrow.int64())])
        table = node.create_appendable_table(schema=schema, key="internal")
        doing = "appending a row to it"
        table.append_partition(0, pyarrow.table({"seq_num": [1]}))
        doing = "reading the row back"
        values = list(table.read()["seq_num"])
        if values != [1]:
            raise TiledServerConfigError(
                f"The Tiled server at {base} returned {values} for a row written as "
                "[1]: its table storage is not working."
            )
    except (TiledServerConfigError, TiledPermissionError):
        raise
    except Exception as err:
        status = _status(err)
        if status in (401, 403):
            raise _permission_error(base, doing, err) from err
        if "table" in doing or "row" in doing:
            raise TiledServerConfigError(
                f"The Tiled server at {base} failed while {doing} ({err}; "
                f"{transport.failure or 'no transport error'}). Its writable storage "
                "needs a SQL table store next to the file directory: "
                "duckdb:///path/tables.duckdb (local) or postgresql://... "
                "(production) under catalog.writable_storage. "
                "`panda-flyscan tiled serve` sets this up."
            ) from err
        raise TiledServerConfigError(
            f"The Tiled server at {base} failed while {doing}: {err}"
        ) from err
    finally:
        transport.reset()
        if created:
            _delete_probe(client, key)
        transport.reset()


def check_readable(client: Any, directory: str | Path) -> None:
    """Check that the server can read files the detectors write in ``directory``.

    Writes a small HDF5 file there, registers it as an external asset (as the
    TiledWriter does from StreamResource documents), reads it back through
    Tiled and cleans up. Without this, registration succeeds and every read
    fails with 500 later. Raises :class:`ExternalDataUnreadableError`.
    """
    import h5py
    import numpy as np

    base = str(client.context.api_uri)
    directory = Path(directory).resolve()
    if not directory.is_dir():
        raise ExternalDataUnreadableError(
            f"{directory} does not exist: create the directory where the "
            "detectors and the PandA write, then subscribe again."
        )
    token = uuid.uuid4().hex[:12]
    probe_file = directory / f".{_PROBE_PREFIX}{token}.h5"
    expected = np.arange(6, dtype="<i4")
    try:
        with h5py.File(probe_file, "w") as handle:
            handle["probe"] = expected
    except OSError as err:
        logger.warning(
            "Cannot write a probe file in %s (%s): not checking that Tiled can "
            "read it.",
            directory,
            err,
        )
        return
    try:
        with failing_fast(client) as transport:
            _check_readable(client, base, directory, probe_file, token, transport)
    finally:
        probe_file.unlink(missing_ok=True)


def _check_readable(
    client: Any,
    base: str,
    directory: Path,
    probe_file: Path,
    token: str,
    transport: FailFastTransport,
) -> None:
    import numpy as np
    from tiled.structures.array import ArrayStructure
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import Asset, DataSource, Management
    from tiled.utils import ensure_uri

    expected = np.arange(6, dtype="<i4")
    fix = (
        f"Add {directory} to the server's readable storage (`panda-flyscan tiled "
        f"serve --readable {directory}`, or catalog.readable_storage in its "
        "configuration) and restart it."
    )
    key = f"{_PROBE_PREFIX}{token}"
    created = False
    try:
        container = client.create_container(
            key, metadata={"purpose": "panda-flyscan read check; safe to delete"}
        )
        created = True
        source = DataSource(
            structure_family=StructureFamily.array,
            mimetype="application/x-hdf5",
            structure=ArrayStructure.from_array(expected),
            parameters={"dataset": "probe"},
            management=Management.external,
            assets=[
                Asset(
                    data_uri=ensure_uri(str(probe_file)),
                    is_directory=False,
                    parameter="data_uris",
                    num=0,
                )
            ],
        )
        node = container.new(
            StructureFamily.array, [source], key="probe", metadata={}, specs=[]
        )
        values = cast(Any, node).read()
        if not np.array_equal(np.asarray(values), expected):
            raise ExternalDataUnreadableError(
                f"The Tiled server at {base} read {values!r} from {probe_file}, "
                f"which holds {expected!r}: it does not see the same files as this "
                f"machine. Mount {directory} at the same path on both."
            )
    except ExternalDataUnreadableError:
        raise
    except Exception as err:
        if _status(err) in (401, 403):
            raise _permission_error(base, "registering an external file", err) from err
        raise ExternalDataUnreadableError(
            f"The Tiled server at {base} cannot read files in {directory}: it "
            f"failed to serve the probe file {probe_file.name} ({err}). {fix}"
        ) from err
    finally:
        transport.reset()
        if created:
            _delete_probe(client, key)
        transport.reset()
