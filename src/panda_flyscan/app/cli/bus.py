"""``panda-flyscan bus``: a local NATS JetStream server for the document bus."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from ...storage.config import default_journal_dir
from ...storage.errors import StorageError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def bus() -> None:
    """The document bus (NATS JetStream) between RunEngines and writer services.

    \b
    panda-flyscan bus serve     a local nats-server with JetStream, prints its URL
    """


@bus.command()
@click.option(
    "--store-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="JetStream's storage, kept across restarts (default: "
    f"{default_journal_dir().parent / 'nats'}).",
)
@click.option(
    "--port",
    type=int,
    default=4222,
    show_default=True,
    help="Port on 127.0.0.1 (0: a free one).",
)
@click.option(
    "--user", envvar="PANDA_FLYSCAN_BUS_USER", default=None, help="Require this user."
)
@click.option(
    "--password",
    envvar="PANDA_FLYSCAN_BUS_PASSWORD",
    default=None,
    help="The user's password.",
)
@click.option(
    "--token",
    envvar="PANDA_FLYSCAN_BUS_TOKEN",
    default=None,
    help="Require this token.",
)
def serve(
    store_dir: Path | None,
    port: int,
    user: str | None,
    password: str | None,
    token: str | None,
) -> None:
    """Run nats-server with JetStream on 127.0.0.1 until Ctrl-C or SIGTERM.

    Prints its URL on stdout once it accepts clients. Credentials on its
    command line are for local development; a site configures accounts in
    nats-server's own configuration file.
    """
    from ...storage.bus import NatsServer

    server = NatsServer(
        store_dir or default_journal_dir().parent / "nats",
        port=port,
        user=user,
        password=password,
        token=token,
    )
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    try:
        with server:
            click.echo(server.url)
            click.echo(
                f"nats-server (JetStream in {server.store_dir}) is ready at "
                f"{server.url}; log {server.log_path}. Ctrl-C stops it.",
                err=True,
            )
            done.wait()
    except StorageError as err:
        raise click.ClickException(str(err)) from err
