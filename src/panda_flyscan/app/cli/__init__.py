"""The ``panda-flyscan`` command: every user-facing action goes through here.

Each concern contributes its own click group (``sim``, ``tiled``, ...); this
module only assembles them.
"""

from __future__ import annotations

import click

from ... import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="panda-flyscan")
def main() -> None:
    """PandA flyscans with ophyd-async, bluesky and Tiled.

    \b
    Typical use:
      panda-flyscan demo                 run a flyscan on the simulated beamline
      panda-flyscan sim --prefix SIM     serve a simulated PandA through the real IOC
      panda-flyscan tiled serve          run the bundled Tiled service
      panda-flyscan bus serve            a local NATS JetStream bus for documents
      panda-flyscan queue serve          plans through bluesky-queueserver (loopback)
      panda-flyscan view URI [UID]       plot a run live as it is written to Tiled
      panda-flyscan panda save DIR       save the PandA's configuration as YAML
      panda-flyscan sim conformance F    check block models against timing vectors
      panda-flyscan bench [--quick]      benchmark the whole stack, print one table
    """


def _add_subcommands() -> None:
    from .bench import bench
    from .bus import bus
    from .demo import demo
    from .panda import panda
    from .queue import queue
    from .sim import sim
    from .tiled import tiled
    from .view import view

    main.add_command(bench)
    main.add_command(bus)
    main.add_command(demo)
    main.add_command(panda)
    main.add_command(queue)
    main.add_command(sim)
    main.add_command(tiled)
    main.add_command(view)


_add_subcommands()
