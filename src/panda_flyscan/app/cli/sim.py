"""``panda-flyscan sim``: serve the simulated beamline, and check block models.

The beamline itself lives in :mod:`panda_flyscan.app.simulated.launcher`;
this module is only its command line.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType

import click


class _Stop(Exception):
    """Raised by the SIGTERM/SIGHUP handler so the beamline's exit runs."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


@click.group(invoke_without_command=True)
@click.option(
    "--prefix",
    default="SIM",
    show_default=True,
    help="Record prefix: PREFIX:PANDA:... (PandA), PREFIX:M1 (motor), "
    "PREFIX:DET:cam1:/HDF1: (detector).",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the client environment (KEY=VALUE lines) to this file.",
)
@click.option(
    "--fmc-signal",
    multiple=True,
    metavar="FMC_IN<ch>=SIGNAL",
    help="What an ACQ427 ADC channel sees (repeatable; default 0 V): constant, "
    "ramp, sine, noise or axis, e.g. 'FMC_IN1=sine amplitude=2 frequency=1000' "
    "(docs/simulator.md; also *SIM.SIGNAL.FMC_IN1=... at run time).",
)
@click.option(
    "--readout-time",
    type=click.FloatRange(min=0),
    default=None,
    help="The detector's dead time after each exposure, s [default: 0.001].",
)
@click.option(
    "--detector-ttlin",
    type=click.IntRange(0, 6),
    default=None,
    help="The PandA TTLIN the detector's exposure output is cabled to, 0: none "
    "[default: 1].",
)
@click.option(
    "--detector-ttlin-signal",
    type=click.Choice(["exposing", "busy"]),
    default=None,
    help="What that output shows: high while exposing, or while busy (exposing "
    "or reading out) [default: exposing].",
)
@click.pass_context
def sim(
    ctx: click.Context,
    prefix: str,
    env_file: Path | None,
    fmc_signal: tuple[str, ...],
    readout_time: float | None,
    detector_ttlin: int | None,
    detector_ttlin_signal: str | None,
) -> None:
    """Serve the simulated beamline: PandA, motor and area detector.

    Starts the simulator on a free loopback address (127.0.0.N): the PandA,
    plus a motor record (PREFIX:M1, driving the PandA's INENC1) and an area
    detector (PREFIX:DET:, triggered by TTLOUT1) served over Channel Access on
    a port of their own, all sharing one simulated world and clock. Then the
    real PandABlocks-ioc (from sim_ioc/.venv) on free CA/PVA ports. Waits until
    everything answers, then prints the environment a client needs
    (EPICS_CA_ADDR_LIST reaches both CA servers), for example:

    \b
      panda-flyscan sim --env-file sim.env
      set -a; . ./sim.env; set +a               # then, in another shell
      python -m p4p.client.cli get "${PANDA_PREFIX}PVI"
      caproto-get "${PANDA_PREFIX}PCAP:ACTIVE" "${MOTOR_PV}.RBV"
      caproto-get "${DETECTOR_PREFIX}cam1:DetectorState_RBV"

    See docs/simulated-beamline.md for the motor's and detector's PVs.

    Runs in the foreground until Ctrl-C or SIGTERM, then stops everything it
    started. Logs go to a temporary directory, printed at start.
    """
    if ctx.invoked_subcommand is not None:
        return
    from sim_ioc.__main__ import make_panda
    from sim_ioc.panda.fields import FieldError

    from ..simulated.launcher import BeamlineError, SimulatedBeamline

    try:  # refused here, before anything starts, with the simulator's reason
        make_panda(list(fmc_signal))
    except FieldError as exc:
        raise click.BadParameter(str(exc), param_hint="--fmc-signal") from exc
    simulator_args = [a for spec in fmc_signal for a in ("--fmc-signal", spec)]
    for option, value in (
        ("--readout-time", readout_time),
        ("--detector-ttlin", detector_ttlin),
        ("--detector-ttlin-signal", detector_ttlin_signal),
    ):
        if value is not None:
            simulator_args += [option, str(value)]

    # SIGTERM (and a closed terminal) end the run as Ctrl-C does: through the
    # clean-up below, which stops every process started. SIGINT is set too, as
    # a shell starting us in the background would have it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    beamline = SimulatedBeamline(prefix, simulator_args=simulator_args)
    click.echo(f"Starting the simulated beamline {prefix!r}...", err=True)
    try:
        beamline.start()
        lines = beamline.env_lines()
        if env_file is not None:
            env_file.write_text("".join(f"{line}\n" for line in lines))
        for line in lines:
            click.echo(line)
        sys.stdout.flush()
        click.echo(f"Logs in {beamline.log_dir}", err=True)
        if env_file is not None:
            click.echo(f"Environment written to {env_file}", err=True)
        click.echo("Serving; Ctrl-C to stop.", err=True)
        # Watching for a crash: there is no event to wait on across processes.
        while not (dead := beamline.dead_processes()):
            time.sleep(0.5)
        for process in dead:
            click.echo(process.failure(f"{process.name} stopped"), err=True)
        ctx.exit(1)
    except (KeyboardInterrupt, _Stop):
        click.echo("Stopping...", err=True)
    except BeamlineError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        # A second Ctrl-C must not cut the clean-up short (it is bounded by
        # the beamline's stop timeouts).
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        beamline.stop()


@sim.command()
@click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False),
)
@click.option(
    "--tables",
    type=click.Path(exists=True, file_okay=False),
    help="Folder of the table files the timing vectors refer to.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only failures and the total.")
def conformance(files: tuple[str, ...], tables: str | None, quiet: bool) -> None:
    """Check block models against PandABlocks-FPGA timing vectors.

    FILES are ``*.timing.ini`` files. Prints one line per scenario and an
    ``N passed, M failed`` total; exits non-zero if any scenario failed.
    """
    from sim_ioc.panda.conformance import main

    sys.exit(main(list(files), tables=tables, quiet=quiet))
