"""``panda-flyscan queue``: plans through bluesky-queueserver.

The launcher lives in :mod:`panda_flyscan.app.queue.server`; this module is
only its command line.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click


class _Stop(Exception):
    """Raised by the SIGTERM/SIGHUP handler so the clean-up runs."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


@click.group()
def queue() -> None:
    """Run plans through bluesky-queueserver (see docs/queue.md)."""


@queue.command()
@click.option(
    "--sim/--no-sim",
    default=True,
    show_default=True,
    help="Start a simulated beamline (PandA, real IOC, motors x y z, detectors "
    "det det2) for the queue server; --no-sim: use the beamline the "
    "environment describes (PANDA_PREFIX, MOTOR_PV..., EPICS_*, e.g. from "
    "`panda-flyscan sim --env-file`; PANDA_FLYSCAN_BEAMLINE=real for real "
    "hardware, see panda_flyscan.app.queue.settings).",
)
@click.option(
    "--prefix",
    default="QS",
    show_default=True,
    help="Record prefix of the simulated beamline started (with --sim).",
)
@click.option(
    "--tiled-uri",
    metavar="URI",
    help="An existing Tiled server to write runs into (it must read "
    "--data-dir) [default: start the bundled one, on loopback].",
)
@click.option(
    "--tiled-api-key",
    metavar="KEY",
    envvar="TILED_API_KEY",
    help="The API key of --tiled-uri [env: TILED_API_KEY].",
)
@click.option(
    "--redis-addr",
    metavar="HOST:PORT",
    help="An existing Redis for the queue [default: start Debian's "
    "redis-server on 127.0.0.1, without persistence].",
)
@click.option(
    "--control-port",
    type=click.IntRange(min=0, max=65535),
    default=60615,
    show_default=True,
    help="The RE Manager's 0MQ control port on 127.0.0.1 (the queue server's "
    "default, which `qserver` assumes); 0: a free one.",
)
@click.option(
    "--info-port",
    type=click.IntRange(min=0, max=65535),
    default=60625,
    show_default=True,
    help="The RE Manager's 0MQ console-output port on 127.0.0.1; 0: a free one.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Logs, the Tiled catalog and the generated "
    "existing_plans_and_devices.yaml [default: a new temporary directory]; kept.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the PandA and detectors write HDF5 [default: WORK_DIR/data].",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the client environment (KEY=VALUE lines) to this file.",
)
@click.option(
    "--bus",
    "bus_url",
    metavar="URL",
    help="Publish the worker's documents to this NATS JetStream server "
    "(nats://127.0.0.1:4222, e.g. from `panda-flyscan bus serve`) instead of "
    "writing Tiled in the worker; run `panda-flyscan tiled writer --bus URL "
    "--tiled-uri ...` to write them into Tiled (docs/deployment.md).",
)
@click.option(
    "--bus-name",
    metavar="NAME",
    help="The beamline's name on the bus (subject bluesky.NAME.documents) "
    "[default: the PandA's prefix].",
)
def serve(
    sim: bool,
    prefix: str,
    tiled_uri: str | None,
    tiled_api_key: str | None,
    redis_addr: str | None,
    control_port: int,
    info_port: int,
    work_dir: Path | None,
    data_dir: Path | None,
    env_file: Path | None,
    bus_url: str | None,
    bus_name: str | None,
) -> None:
    """Serve the queue server (Redis + RE Manager) against a beamline.

    Starts, on 127.0.0.1 only: the simulated beamline (unless --no-sim), the
    bundled Tiled service (unless --tiled-uri), Redis (unless --redis-addr)
    and bluesky-queueserver's RE Manager with panda-flyscan's start-up
    profile; opens its worker environment (the devices connected, every run
    written into Tiled) and prints what a client needs, for example:

    \b
      panda-flyscan queue serve --env-file queue.env
      set -a; . ./queue.env; set +a              # then, in another shell
      qserver status
      qserver queue add plan '{"name": "time_scan", "args": ["panda", 1000, 0.001]}'
      qserver queue start

    Devices are passed by name ("panda", "x", ["det"]); spec_scan takes its
    scanspec spec serialised (Spec.serialize(), axes named by motor). Plans:
    spec_scan, time_scan, position_scan, async_scan, count, scan, mv.

    Runs until Ctrl-C or SIGTERM, then stops every process it started (also
    when one fails to start). A given Redis or Tiled that does not accept
    connections, or a port in use, is refused at once, naming the address.
    """
    from ..queue.server import QueueServerError, QueueStack

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.getsignal(sig) for sig in handled}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    stack = QueueStack(
        work_dir,
        sim=sim,
        prefix=prefix,
        tiled_uri=tiled_uri,
        tiled_api_key=tiled_api_key,
        data_dir=data_dir,
        redis_addr=redis_addr,
        control_port=control_port,
        info_port=info_port,
        bus_url=bus_url,
        bus_name=bus_name,
    )
    click.echo(
        f"Starting the queue server (work directory {stack.work_dir})...", err=True
    )
    try:
        stack.start()
        lines = [f"{key}={value}" for key, value in stack.client_env().items()]
        if env_file is not None:
            env_file.write_text("".join(f"{line}\n" for line in lines))
        for line in lines:
            click.echo(line)
        sys.stdout.flush()
        click.echo("Serving; Ctrl-C to stop.", err=True)
        # No event announces another process's death: watch for it.
        while not (dead := stack.dead_processes()):
            time.sleep(0.5)
        for process in dead:
            click.echo(process.failure(f"{process.name} stopped"), err=True)
        sys.exit(1)
    except (KeyboardInterrupt, _Stop):
        click.echo("Stopping...", err=True)
    except (QueueServerError, RuntimeError) as err:
        raise click.ClickException(str(err)) from err
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        for sig in handled:
            signal.signal(sig, signal.SIG_IGN)
        try:
            stack.stop()
        finally:
            # As they were (the command may run inside another program).
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@queue.command()
@click.option(
    "--zmq-control-addr",
    metavar="ADDR",
    envvar="QSERVER_ZMQ_CONTROL_ADDRESS",
    default="tcp://127.0.0.1:60615",
    show_default=True,
    help="The RE Manager's control address [env: QSERVER_ZMQ_CONTROL_ADDRESS].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds to wait for an answer.",
)
def status(zmq_control_addr: str, timeout: float) -> None:
    """Print the RE Manager's state, queue length and plans; an error naming
    the address at once if nothing listens there."""
    from ..queue.server import QueueServerError, connect_queue_server

    try:
        api = connect_queue_server(zmq_control_addr, timeout=timeout)
    except QueueServerError as err:
        raise click.ClickException(str(err)) from err
    try:
        # The API's replies are untyped dicts.
        state: Any = api.status()
        allowed: Any = api.plans_allowed()
        devices_allowed: Any = api.devices_allowed()
        plans = sorted(allowed["plans_allowed"])
        devices = sorted(devices_allowed["devices_allowed"])
    finally:
        api.close()
    click.echo(f"RE Manager at {zmq_control_addr}: {state['manager_state']}")
    click.echo(f"environment open: {state['worker_environment_exists']}")
    click.echo(
        f"queue: {state['items_in_queue']}, history: {state['items_in_history']}"
    )
    click.echo(f"plans: {', '.join(plans)}")
    click.echo(f"devices: {', '.join(devices)}")
