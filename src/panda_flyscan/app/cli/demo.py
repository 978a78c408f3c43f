"""``panda-flyscan demo``: the command line of :func:`panda_flyscan.demo.run_demo`."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click


@click.command()
@click.option(
    "--plan",
    type=click.Choice(["time", "position", "async", "map"]),
    default="time",
    show_default=True,
    help="time: FRAMES frames every PERIOD; position: FRAMES points 10 um apart, "
    "flown at 10 um per PERIOD; async: that motion, positions sampled every "
    "PERIOD; map: a 2-D snake of 10 lines of FRAMES/10 points (x flown, y "
    "stepped 10 um), one spec_scan run.",
)
@click.option("--frames", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option(
    "--period",
    type=float,
    default=None,
    help="Seconds per frame (or per point, or per position sample) [default: "
    "1e-3; with --detector, the shortest that fits its readout].",
)
@click.option(
    "--exposure",
    type=float,
    default=None,
    help="Live time per frame in seconds [default: half the period].",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the HDF5 files and the Tiled catalog go [default: a new "
    "temporary directory]; kept afterwards.",
)
@click.option(
    "--prefix",
    default="DEMO",
    show_default=True,
    help="Record prefix of the simulated beamline started for the demo.",
)
@click.option(
    "--attach",
    is_flag=True,
    help="Use the simulated beamline the environment describes (PANDA_PREFIX, "
    "PANDA_HOST, EPICS_*, e.g. from `panda-flyscan sim --env-file`) instead of "
    "starting one.",
)
@click.option(
    "--detector",
    is_flag=True,
    help="Add the simulated area detector, triggered by the PandA (time and "
    "position plans; exposure + its 1 ms readout must fit in PERIOD); the "
    "picture shows a montage of its frames.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def demo(
    plan: str,
    frames: int,
    period: float | None,
    exposure: float | None,
    data_dir: Path | None,
    prefix: str,
    attach: bool,
    detector: bool,
    no_progress: bool,
) -> None:
    """Run a flyscan on the simulated beamline into the bundled Tiled.

    Starts the simulated beamline (PandA, the real PandABlocks-ioc, motor and
    area detector) and a local Tiled service; runs the plan with a RunEngine
    writing into Tiled; prints where the data is and a summary read back from
    Tiled, and the path of a PNG of what was measured; stops what it started.

    Ctrl-C twice, SIGTERM or SIGHUP stop the scan: the PandA is disarmed, the
    run closed in Tiled (exit status abort, the reason naming the signal)
    with the rows captured, everything started stopped; the exit status is
    128 + the signal's number (130, 143, 129).
    """
    from ..demo import DemoInterrupted, run_demo

    try:
        run_demo(
            frames,
            period,
            exposure,
            plan=plan,
            prefix=prefix,
            data_dir=data_dir,
            attach=attach,
            progress=not no_progress,
            detector=detector,
        )
    # Bad arguments (PlanArgumentError is one) are refused before anything runs.
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    # Set-up problems (--attach without its environment, a server that does
    # not start): the message alone, no traceback.
    except DemoInterrupted as err:
        click.echo(str(err), err=True)
        # The shell's convention: 128 + the signal's number (Ctrl-C: SIGINT).
        number = getattr(signal, err.signal_name, signal.SIGINT)
        sys.exit(128 + int(number))
    except RuntimeError as err:
        raise click.ClickException(str(err)) from err
    except Exception as err:  # a failed run: what failed, not where
        raise click.ClickException(
            f"the demo failed: {type(err).__name__}: {err}"
        ) from err
