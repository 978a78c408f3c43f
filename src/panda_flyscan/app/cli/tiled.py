"""``panda-flyscan tiled``: run the Tiled service, check it, replay journals."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ...storage.config import (
    CLIENT_API_KEY_ENV,
    DEFAULT_API_KEY,
    DEFAULT_PORT,
    POSTGRES_PLACEHOLDERS,
    SERVER_API_KEY_ENV,
    default_data_dir,
    default_journal_dir,
    local_tiled_config,
    render_postgres_config,
    shipped_postgres_config_path,
)
from ...storage.errors import StorageError

DEFAULT_URI = f"http://127.0.0.1:{DEFAULT_PORT}"


def _fail(err: Exception) -> None:
    raise click.ClickException(str(err)) from err


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def tiled() -> None:
    """Tiled storage: serve the local service, check a server, replay runs.

    \b
    panda-flyscan tiled serve            local service (SQLite + DuckDB), prints its URI
    panda-flyscan tiled config postgres  production configuration (PostgreSQL)
    panda-flyscan tiled check --uri URI  can runs be written to (and read from) URI?
    panda-flyscan tiled replay           write journaled runs Tiled missed
    panda-flyscan tiled writer --bus URL write the documents on a bus into Tiled
    """


@tiled.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Directory of the catalog, tables and files (default: {default_data_dir()}). "
    "Kept across restarts.",
)
@click.option(
    "--port",
    type=int,
    default=DEFAULT_PORT,
    show_default=True,
    help="Port on 127.0.0.1 (0 picks a free one).",
)
@click.option(
    "--api-key",
    envvar=SERVER_API_KEY_ENV,
    default=DEFAULT_API_KEY,
    show_default=True,
    help=f"API key clients must present (or set {SERVER_API_KEY_ENV}). "
    "The default is for local development only.",
)
@click.option(
    "--readable",
    "readable",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory whose files may be registered as external assets, i.e. where "
    "detectors and the PandA write HDF5. Repeat for several. DATA_DIR/external "
    "is always readable.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Serve this Tiled configuration file instead (e.g. the PostgreSQL one "
    "from `config postgres`); --data-dir and --readable are then ignored.",
)
@click.option(
    "--servers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Run this many server processes on --config (a cluster: they share its "
    "PostgreSQL catalog and storage, and its Redis streaming cache from "
    "`config postgres --redis` for live updates), on ports PORT, PORT+1, ... "
    "(or free ones with --port 0).",
)
def serve(
    data_dir: Path | None,
    port: int,
    api_key: str,
    readable: tuple[Path, ...],
    config_file: Path | None,
    servers: int,
) -> None:
    """Run the Tiled service in the foreground until Ctrl-C or SIGTERM.

    By default: a SQLite catalog and writable storage (DuckDB tables for event
    data, a directory for arrays) under one data directory, API-key
    authentication, bound to 127.0.0.1. Prints the API URI on stdout once the
    server answers; logs go to stderr.

    With --config and --servers N: N processes on that configuration, one API
    URI printed per line (docs/deployment.md).
    """
    from ...storage.runner import run_server, serve_local

    if servers > 1:
        if config_file is None:
            raise click.UsageError(
                "--servers needs --config: several processes must share a "
                "PostgreSQL catalog (see `panda-flyscan tiled config postgres "
                "--redis URI`); SQLite is for one process"
            )
        _serve_cluster(config_file, servers, port, api_key)
        return

    def on_ready(uri: str) -> None:
        # The one stdout line: scripts and TiledService read the URI from it
        # (storage.service.READY_LINE), so it is flushed at once.
        click.echo(uri)
        sys.stdout.flush()
        click.echo(
            f"Tiled is ready at {uri} (Ctrl-C or SIGTERM stops it). "
            f"Connect with: from_uri({uri.removesuffix('/api/v1')!r}, api_key=...)",
            err=True,
        )

    try:
        if config_file is not None:
            # --api-key given explicitly (or via env) overrides the file's key.
            src = click.get_current_context().get_parameter_source("api_key")
            explicit = src is not None and src.name != "DEFAULT"
            run_server(
                config_file,
                port=port,
                api_key=api_key if explicit else None,
                on_ready=on_ready,
            )
        else:
            serve_local(
                data_dir,
                api_key=api_key,
                port=port,
                readable=readable,
                on_ready=on_ready,
            )
    except StorageError as err:
        _fail(err)
    except KeyboardInterrupt:
        pass
    click.echo("Tiled stopped.", err=True)


def _serve_cluster(config_file: Path, servers: int, port: int, api_key: str) -> None:
    """``servers`` Tiled processes on ``config_file`` until Ctrl-C or SIGTERM."""
    import signal
    import tempfile

    from ...storage.cluster import TiledCluster

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)
    log_dir = Path(tempfile.mkdtemp(prefix="panda-flyscan-tiled-cluster-"))
    ports = [port + i for i in range(servers)] if port else []
    cluster = TiledCluster(
        config_file, servers=servers, api_key=api_key, log_dir=log_dir, ports=ports
    )
    try:
        cluster.start()
        for uri in cluster.uris:
            click.echo(uri)
        sys.stdout.flush()
        click.echo(
            f"{servers} Tiled servers ready (logs in {log_dir}); Ctrl-C or "
            "SIGTERM stops them.",
            err=True,
        )
        # Watching for a crash: there is no event to wait on across processes.
        while all(service.running for service in cluster.services):
            time.sleep(0.5)
        raise click.ClickException(f"a Tiled server stopped; see its log in {log_dir}")
    except StorageError as err:
        _fail(err)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cluster.stop()
    click.echo("Tiled stopped.", err=True)


@tiled.group()
def config() -> None:
    """Print Tiled configuration files (production PostgreSQL, or the local one)."""


@config.command("postgres")
@click.option(
    "--catalog-uri",
    default=POSTGRES_PLACEHOLDERS["catalog_uri"],
    show_default=True,
    help="PostgreSQL database of the catalog, postgresql://user:password@host:5432/db.",
)
@click.option(
    "--storage-uri",
    default=POSTGRES_PLACEHOLDERS["storage_uri"],
    show_default=True,
    help="PostgreSQL database for event tables (a second database is recommended).",
)
@click.option(
    "--data-dir",
    default=POSTGRES_PLACEHOLDERS["data_dir"],
    show_default=True,
    help="Directory for arrays Tiled writes itself.",
)
@click.option(
    "--readable",
    multiple=True,
    default=[POSTGRES_PLACEHOLDERS["readable"]],
    show_default=True,
    help="Directory where detectors and the PandA write HDF5 (repeatable).",
)
@click.option(
    "--api-key",
    default=POSTGRES_PLACEHOLDERS["api_key"],
    show_default=True,
    help="Single-user API key; keep the placeholder to read it from the environment.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, help="Port to bind.")
@click.option(
    "--redis",
    "redis_uri",
    default=None,
    metavar="URI",
    help="Redis streaming cache (redis://host:6379) shared by several server "
    "processes on one catalog, for live updates across them (a cluster); "
    "'${PANDA_TILED_REDIS_URI}' reads it from the environment. Default: none.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of stdout.",
)
def config_postgres(
    catalog_uri: str,
    storage_uri: str,
    data_dir: str,
    readable: tuple[str, ...],
    api_key: str,
    host: str,
    port: int,
    redis_uri: str | None,
    output: Path | None,
) -> None:
    """Production configuration: PostgreSQL catalog and table store.

    With no options this is the file shipped with the package, whose
    ${PANDA_TILED_...} placeholders Tiled expands from the environment. Run it
    with `tiled serve config FILE` or `panda-flyscan tiled serve --config FILE`.
    """
    text = render_postgres_config(
        catalog_uri=catalog_uri,
        storage_uri=storage_uri,
        data_dir=data_dir,
        readable=list(readable),
        api_key=api_key,
        host=host,
        port=port,
        streaming_cache_uri=redis_uri,
    )
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"Wrote {output}", err=True)


@config.command("local")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory (default: the one `serve` uses).",
)
@click.option(
    "--readable",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Extra readable directory (repeatable).",
)
def config_local(data_dir: Path | None, readable: tuple[Path, ...]) -> None:
    """The configuration `serve` runs by default, as YAML (API key not shown)."""
    import yaml

    cfg = local_tiled_config(
        data_dir or default_data_dir(),
        api_key=f"${{{SERVER_API_KEY_ENV}}}",
        readable=readable,
    )
    click.echo(yaml.safe_dump(cfg, sort_keys=False), nl=False)


@config.command("path")
def config_path() -> None:
    """Path of the PostgreSQL configuration shipped with the package."""
    click.echo(str(shipped_postgres_config_path()))


_uri_option = click.option(
    "--uri",
    default=DEFAULT_URI,
    show_default=True,
    help="Tiled server (or a node in it).",
)
_key_option = click.option(
    "--api-key",
    envvar=CLIENT_API_KEY_ENV,
    default=DEFAULT_API_KEY,
    show_default=True,
    help=f"API key (or set {CLIENT_API_KEY_ENV}).",
)


@tiled.command()
@_uri_option
@_key_option
@click.option(
    "--external-dir",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Check that the server can read files written here (repeatable).",
)
def check(uri: str, api_key: str, external_dir: tuple[Path, ...]) -> None:
    """Check that runs can be written to URI and external files read back.

    The same checks the writer runs when it is subscribed: the server answers,
    accepts the key, lets it create nodes and tables (a probe, then deleted),
    and can read files in each --external-dir.
    """
    from ...storage.checks import check_can_write, check_readable, connect

    try:
        client = connect(uri, api_key=api_key)
        click.echo(f"reachable, key accepted: {uri}")
        check_can_write(client)
        click.echo("can write runs (container, event table, rows)")
        for directory in external_dir:
            check_readable(client, directory)
            click.echo(f"can read external files in {directory}")
    except StorageError as err:
        _fail(err)


@tiled.command()
@_uri_option
@_key_option
@click.option(
    "--journal-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Journal directory of the writer (default: {default_journal_dir()}).",
)
@click.option("--list", "list_only", is_flag=True, help="Only list pending journals.")
@click.argument("journals", nargs=-1, type=click.Path(exists=True, path_type=Path))
def replay(
    uri: str,
    api_key: str,
    journal_dir: Path | None,
    list_only: bool,
    journals: tuple[Path, ...],
) -> None:
    """Write runs that did not reach Tiled from their journals.

    Replays the pending journals of --journal-dir, or the JOURNALS given (also
    bluesky-tiled-plugins backup files). A partial copy of a run left in Tiled
    by an outage is replaced. Runs still being written are skipped. Exits with
    status 1 if any journal failed.
    """
    from ...storage.checks import REPLAY_SCOPES, check_can_write, connect
    from ...storage.journal import ReplayStatus, pending_journals
    from ...storage.journal import replay as do_replay

    sources: list[Path] = list(journals) or [journal_dir or default_journal_dir()]
    if list_only:
        for source in sources:
            for path in pending_journals(source) if source.is_dir() else [source]:
                click.echo(str(path))
        return
    try:
        client = connect(uri, api_key=api_key)
        check_can_write(client, scopes=REPLAY_SCOPES)
        results = do_replay(client, sources)
    except StorageError as err:
        _fail(err)
        return
    failed = 0
    for result in results:
        line = f"{result.status.value:8s} {result.uid or '?'} {result.path.name}"
        if result.replaced_partial:
            line += " (replaced a partial copy)"
        if result.message:
            line += f": {result.message}"
        click.echo(line)
        failed += result.status is ReplayStatus.FAILED
    if not results:
        click.echo("nothing to replay")
    if failed:
        raise click.ClickException(f"{failed} journal(s) failed; they stay pending")


@tiled.command()
@click.option(
    "--bus",
    "bus_url",
    default="nats://127.0.0.1:4222",
    show_default=True,
    help="NATS JetStream server the RunEngines publish to.",
)
@click.option(
    "--bus-user",
    envvar="PANDA_FLYSCAN_BUS_USER",
    default=None,
    help="User on the bus (or set PANDA_FLYSCAN_BUS_USER); none by default.",
)
@click.option(
    "--bus-password",
    envvar="PANDA_FLYSCAN_BUS_PASSWORD",
    default=None,
    help="Its password (or set PANDA_FLYSCAN_BUS_PASSWORD).",
)
@click.option(
    "--bus-token",
    envvar="PANDA_FLYSCAN_BUS_TOKEN",
    default=None,
    help="Token instead of a user (or set PANDA_FLYSCAN_BUS_TOKEN).",
)
@click.option(
    "--tiled-uri", default=DEFAULT_URI, show_default=True, help="Tiled server."
)
@_key_option
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The service's checkpoint and journals (default: "
    f"{default_journal_dir().parent / 'writer-service'}). One per service.",
)
@click.option(
    "--no-validate",
    is_flag=True,
    help="Skip event-model's schema check of each document (faster).",
)
def writer(
    bus_url: str,
    bus_user: str | None,
    bus_password: str | None,
    bus_token: str | None,
    tiled_uri: str,
    api_key: str,
    state_dir: Path | None,
    no_validate: bool,
) -> None:
    """Write the documents on the bus into Tiled, until Ctrl-C or SIGTERM.

    Reads every bluesky.<beamline>.documents subject in order, resumes after
    a crash where it left off (runs Tiled holds complete are skipped, partial
    ones rewritten), quarantines malformed messages to bluesky.quarantine.
    Prints one line on stdout once it consumes; logs go to stderr.
    """
    from ..writer_service import run_writer_service

    try:
        run_writer_service(
            bus_url=bus_url,
            user=bus_user,
            password=bus_password,
            token=bus_token,
            tiled_uri=tiled_uri,
            api_key=api_key,
            state_dir=state_dir or default_journal_dir().parent / "writer-service",
            validate=not no_validate,
        )
    except StorageError as err:
        _fail(err)
