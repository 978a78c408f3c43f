"""``panda-flyscan view URI [UID]``: the live view from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ...storage.config import CLIENT_API_KEY_ENV, DEFAULT_API_KEY

if TYPE_CHECKING:
    from ..view import Follower, Picture


@click.command()
@click.argument("uri")
@click.argument("uid", required=False)
@click.option(
    "--api-key",
    envvar=CLIENT_API_KEY_ENV,
    default=DEFAULT_API_KEY,
    show_default=True,
    help=f"API key (or set {CLIENT_API_KEY_ENV}).",
)
@click.option(
    "--png",
    "png_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Headless: rewrite DIR/live-<uid>.png as rows come, instead of a window.",
)
@click.option("--once", is_flag=True, help="Read what is there now, draw it, exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=0.25,
    show_default=True,
    help="Seconds between polls of Tiled.",
)
@click.option("--map", "map_field", default=None, help="Field a 2-D scan maps.")
def view(
    uri: str,
    uid: str | None,
    api_key: str,
    png_dir: Path | None,
    once: bool,
    interval: float,
    map_field: str | None,
) -> None:
    """Plot run UID (default: the newest) of the Tiled server at URI, live.

    Follows the run until its stop document is in Tiled (a finished run is
    drawn at once): the PandA's captured fields against time or position, a
    2-D scan's map filling in, the latest detector frame. Opens a window, or
    with --png writes PNGs (headless). Works from any machine that reaches
    Tiled.
    """
    from ...storage.checks import connect
    from ...storage.errors import StorageError
    from ..view import Follower, PngWriter, interactive_backend

    try:
        client = connect(uri, api_key=api_key)
    except StorageError as err:
        raise click.ClickException(str(err)) from err
    if png_dir is None:
        import matplotlib

        if not interactive_backend():
            raise click.UsageError(
                "no display for a window (matplotlib backend "
                f"{matplotlib.get_backend()!r}): give --png DIR to write PNGs"
            )
    if uid is not None and uid not in client:
        raise click.ClickException(f"no run {uid} in {uri}")
    try:
        follower = Follower(client, uid, interval=interval, map_field=map_field)
    except LookupError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"Following run {follower.uid} at {uri}", err=True)
    try:
        if png_dir is not None:
            writer = PngWriter(png_dir)
            picture = follower.follow(writer, once=once)
            if picture is not None and not picture.done:
                writer(picture)  # --once, or stopped: the state reached
            for path in writer.written:
                click.echo(str(path))
        else:
            picture = _window(follower, once)
    except KeyboardInterrupt:
        picture = follower.picture()
    if picture is not None:
        click.echo(f"{picture.title}", err=True)


def _window(follower: Follower, once: bool) -> Picture | None:
    """Follow in a thread, redraw in the GUI's (main) thread, keep the window
    open at the end until it is closed."""
    import matplotlib.pyplot as plt

    from ..view import LiveView, draw

    if once:
        picture = follower.follow(once=True)
        figure = plt.figure(figsize=(12, 8))
        if picture is not None:
            draw(picture, figure)
        plt.show()
        return picture
    live = LiveView(follower, figure=plt.figure(figsize=(12, 8))).start()
    while not live.done and plt.get_fignums():
        plt.pause(0.2)
    plt.show()
    return live.wait(0)
