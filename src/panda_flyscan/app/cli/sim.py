"""``panda-flyscan sim``: serve the simulated beamline, and check block models.

The beamline itself lives in :mod:`panda_flyscan.app.simulated.launcher`;
this module is only its command line. The simulator's options are fields of
:class:`sim_ioc.config.SimulatorConfig` (help, defaults and checks included);
the command builds that model and hands it to the launcher.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from sim_ioc.config import SimulatorConfig


class _Stop(Exception):
    """Raised by the SIGTERM/SIGHUP handler so the beamline's exit runs."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


class _SimulatorOption(click.Option):
    """An option that sets a field of :class:`sim_ioc.config.SimulatorConfig`
    (the click parameter's name is the field's).

    Its help (bounds and default included) is the model's, read only when
    help is shown, so the other commands need not import pydantic. Left unset
    (None) it leaves the model's default; the model converts and checks the
    value, so neither is restated here.
    """

    def __init__(self, param_decls: Sequence[str], **kwargs: Any) -> None:
        super().__init__(param_decls, default=None, **kwargs)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from sim_ioc.config import SimulatorConfig, choices, describe_field

        assert self.name is not None
        self.help = describe_field(self.name)
        if words := choices(self.name):
            self.metavar = "[" + "|".join(words) + "]"
        elif self.metavar is None:
            kind = SimulatorConfig.model_fields[self.name].annotation
            self.metavar = (
                "INTEGER" if kind is int else "FLOAT" if kind is float else "TEXT"
            )
        return super().get_help_record(ctx)


@click.group(invoke_without_command=True)
@click.option("--prefix", "prefix", cls=_SimulatorOption)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the client environment (KEY=VALUE lines) to this file.",
)
@click.option(
    "--fmc-signal",
    "fmc_signals",
    cls=_SimulatorOption,
    multiple=True,
    metavar="FMC_IN<ch>=SIGNAL",
)
@click.option(
    "--config-json",
    metavar="JSON",
    help="The whole simulator configuration as JSON (sim_ioc.config."
    'SimulatorConfig, e.g. per-motor speeds and limits under "motors"); '
    "options given beside it override its values.",
)
@click.option(
    "--heal/--no-heal",
    default=True,
    show_default=True,
    help="Supervise the IOC: restart it on the same CA/PVA ports (clients "
    "reconnect by themselves) when it dies, loses its PandA (PandABlocks-ioc "
    "0.11 never reconnects) or runs away (RSS, log growth). Each restart is "
    "logged here.",
)
@click.option(
    "--ioc-restart-mb",
    type=click.IntRange(min=1),
    default=1536,
    show_default=True,
    metavar="MB",
    help="With --heal: restart the IOC between scans (no capture under way) "
    "once its RSS passes this many MB (PandABlocks-ioc 0.11 keeps ~24 MB and 3 "
    "threads per capture until Python's GC frees them, at ~1.3 GB measured).",
)
@click.option("--motors", "motors", cls=_SimulatorOption, metavar="JSON")
@click.option("--readout-time", "readout_time", cls=_SimulatorOption)
@click.option("--detector-ttlin", "detector_ttlin", cls=_SimulatorOption)
@click.option("--detector-ttlin-signal", "detector_ttlin_signal", cls=_SimulatorOption)
@click.option(
    "--detector2-readout-time", "detector2_readout_time", cls=_SimulatorOption
)
@click.option("--detector2-ttlin", "detector2_ttlin", cls=_SimulatorOption)
@click.option(
    "--detector2-ttlin-signal", "detector2_ttlin_signal", cls=_SimulatorOption
)
@click.option("--ring-current", "ring_current", cls=_SimulatorOption)
@click.pass_context
def sim(
    ctx: click.Context,
    env_file: Path | None,
    config_json: str | None,
    heal: bool,
    ioc_restart_mb: int,
    **options: Any,
) -> None:
    """Serve the simulated beamline: PandA, motors and area detectors.

    Starts the simulator on a free loopback address (127.0.0.N): the PandA,
    plus three motor records (PREFIX:M1, M2, M3, driving the PandA's INENC1,
    INENC2, INENC3) and two area detectors (PREFIX:DET:, triggered by TTLOUT1,
    and the slower PREFIX:DET2:, by TTLOUT2) served over Channel Access on a
    port of their own, all sharing one simulated world and clock, beside the
    storage ring's beam current PREFIX:RING:CURRENT (mA, writable: put 0 to
    trip a suspender; PREFIX:RING:DUMP 1/0 dumps and refills it). Then the
    real PandABlocks-ioc (from sim_ioc/.venv) on free CA/PVA ports. Waits until
    everything answers, then prints the environment a client needs
    (EPICS_CA_ADDR_LIST reaches both CA servers), for example:

    \b
      panda-flyscan sim --env-file sim.env
      set -a; . ./sim.env; set +a               # then, in another shell
      python -m p4p.client.cli get "${PANDA_PREFIX}PVI"
      caproto-get "${PANDA_PREFIX}PCAP:ACTIVE" "${MOTOR_PV}.RBV"
      caproto-get "${MOTOR_PV_Y}.RBV" "${MOTOR_PV_Z}.RBV"
      caproto-get "${DETECTOR_PREFIX}cam1:DetectorState_RBV"
      caproto-get "${DETECTOR2_PREFIX}cam1:ReadoutTime_RBV"

    See docs/simulated-beamline.md for the motors' and detectors' PVs.

    Runs in the foreground until Ctrl-C or SIGTERM, then stops everything it
    started. Logs go to a temporary directory, printed at start. With --heal
    (the default) an IOC that died or lost its PandA is restarted within a few
    seconds and the line "IOC restarted (...)" printed; a flyscan running at
    that moment fails with an error naming the IOC, the next one works.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..simulated.launcher import (
        BeamlineError,
        HealPolicy,
        IocRestart,
        SimulatedBeamline,
    )

    # Refused here, before anything starts, with the simulator's reason.
    config = _simulator_config(options, config_json)
    # SIGTERM (and a closed terminal) end the run as Ctrl-C does: through the
    # clean-up below, which stops every process started. SIGINT is set too, as
    # a shell starting us in the background would have it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)

    def restarted(restart: IocRestart) -> None:
        click.echo(restart.describe(), err=True)

    policy = HealPolicy(idle_restart_rss_bytes=ioc_restart_mb * 1024 * 1024)
    beamline = SimulatedBeamline(
        config.prefix,
        simulator=config,
        heal=policy if heal else None,
        on_restart=restarted,
    )
    click.echo(f"Starting the simulated beamline {config.prefix!r}...", err=True)
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


def _simulator_config(
    options: dict[str, Any], config_json: str | None = None
) -> SimulatorConfig:
    """The simulator's configuration from ``config_json`` (if given) and the
    options given over it; a usage error naming the option if it is invalid."""
    from pydantic import ValidationError

    from sim_ioc.config import (
        CONFIG_JSON_OPTION,
        SimulatorConfig,
        option_name,
        problems_by_field,
    )

    given = {name: v for name, v in options.items() if v is not None and v != ()}
    try:
        base = SimulatorConfig.model_validate_json(config_json or "{}")
    except ValidationError as exc:
        field, problem = next(iter(problems_by_field(exc).items()))
        where = f"{CONFIG_JSON_OPTION} ({field})" if field else CONFIG_JSON_OPTION
        raise click.BadParameter(problem, param_hint=where) from exc
    try:
        return base.override(given)
    except ValidationError as exc:
        field, problem = next(iter(problems_by_field(exc).items()))
        raise click.BadParameter(problem, param_hint=option_name(field)) from exc


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
