"""``panda-flyscan panda``: save a PandA's configuration to YAML, restore it.

The command line of :mod:`panda_flyscan.devices.settings`; the file format is
described there and in docs/devices.md.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ...devices import Capture, PandaConfiguration, PandaWiring

#: Where the prefix comes from when --prefix is not given.
PREFIX_ENV = "PANDA_PREFIX"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def panda() -> None:
    """Save the PandA's configuration to YAML, and restore it.

    A configuration is two files in DIRECTORY: NAME.yaml, every field of the
    PandA (block wiring, timings and units, sequencer tables, encoder scale,
    offset and units, PCAP capture choices and dataset names), and
    NAME.wiring.yaml, how the PandA is cabled to the beamline (which TTLOUT
    triggers which detector, which INENC reads which motor, the SEQ and PCOMP
    the plans use) and the default captures. Both can be edited by hand;
    restore checks everything against the PandA before it writes anything.

    \b
    panda-flyscan panda save DIR [--name NAME]      save the PandA as NAME
    panda-flyscan panda restore DIR [--name NAME]   put it back
    panda-flyscan panda restore DIR --check         check only, write nothing

    The PandA is reached through its IOC by PV prefix (--prefix, default
    $PANDA_PREFIX, which `panda-flyscan sim --env-file` writes).
    """


def _common(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.argument("directory", type=click.Path(file_okay=False, path_type=Path)),
        click.option(
            "--name",
            default="panda",
            show_default=True,
            help="Configuration name: the files are NAME.yaml and NAME.wiring.yaml.",
        ),
        click.option(
            "--prefix",
            envvar=PREFIX_ENV,
            required=True,
            help=f"PV prefix of the PandA's IOC, e.g. BL01I-EA-PANDA-01: "
            f"(default: ${PREFIX_ENV}).",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=10.0,
            show_default=True,
            help="Seconds to wait for the IOC when connecting.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@contextlib.contextmanager
def _connected(prefix: str, directory: Path, timeout: float) -> Iterator[Any]:
    """A RunEngine and the PandA connected in its loop; plan failures become
    click errors (the RunEngine's own traceback log is silenced)."""
    from bluesky import RunEngine
    from bluesky.run_engine import RunEngineResult, call_in_bluesky_event_loop
    from ophyd_async.core import NotConnectedError

    from ...devices import FlyscanPanda, PandaConfigurationError, RunFilePathProvider

    logging.getLogger("bluesky").setLevel(logging.CRITICAL)
    RE = RunEngine({}, call_returns_result=True)
    # Nothing is acquired: the path provider is never asked for a file.
    device = FlyscanPanda(
        prefix, RunFilePathProvider(directory.resolve()), name="panda"
    )
    try:
        call_in_bluesky_event_loop(device.connect(timeout=timeout), timeout + 30)
    except NotConnectedError as err:
        raise click.ClickException(
            f"cannot connect to the PandA at prefix {prefix!r} within {timeout:g} s "
            f"(is its IOC running, and EPICS_PVA_ADDR_LIST set?): {err}"
        ) from None

    def run(plan: Any) -> PandaConfiguration:
        try:
            result = RE(plan)
        except PandaConfigurationError as err:
            raise click.ClickException(str(err)) from None
        assert isinstance(result, RunEngineResult)  # call_returns_result=True
        return result.plan_result

    try:
        yield device, run
    finally:
        RE.loop.call_soon_threadsafe(RE.loop.stop)


def _summary(wiring: PandaWiring, captures: tuple[Capture, ...]) -> str:
    cables = [f"{d.detector}<-TTLOUT{d.ttlout}" for d in wiring.detectors] + [
        f"{e.motor}<-INENC{e.inenc}" for e in wiring.encoders
    ]
    wired = ", ".join(cables) or "no detectors or encoders"
    caught = ", ".join(f"{c.field} as {c.dataset}" for c in captures) or "none"
    return f"wiring: {wired}; SEQ{wiring.seq}, PCOMP{wiring.pcomp}\ncaptures: {caught}"


def _wiring_to_save(
    wiring_file: Path | None, directory: Path, name: str
) -> tuple[PandaWiring, tuple[Capture, ...]] | None:
    """The wiring and captures of --wiring, else of the configuration already
    saved as NAME (re-saving keeps the cabling), else None."""
    import yaml

    from ...devices import PandaConfigurationError, configuration_files
    from ...devices import parse_wiring_document as parse

    source = wiring_file or configuration_files(directory, name)[1]
    if wiring_file is None and not source.exists():
        return None
    try:
        return parse(yaml.safe_load(source.read_text()), str(source))
    except (OSError, yaml.YAMLError) as err:
        raise click.ClickException(f"{source}: cannot read: {err}") from None
    except PandaConfigurationError as err:
        raise click.ClickException(str(err)) from None


@panda.command()
@_common
@click.option(
    "--wiring",
    "wiring_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Save this wiring and captures (a file in the NAME.wiring.yaml format). "
    "Default: those already saved as NAME in DIRECTORY, if any; else no "
    "wiring, and the captures the PandA is set to now.",
)
def save(
    directory: Path, name: str, prefix: str, timeout: float, wiring_file: Path | None
) -> None:
    """Save the PandA's fields, wiring and captures to DIRECTORY as NAME.

    Only reads the PandA. Overwrites NAME.yaml and NAME.wiring.yaml. Not
    saved: PCAP.ARM and the DATA block (file name, directory, capture count),
    which every flyscan sets itself.
    """
    from ...devices import PandaWiring, current_captures, save_panda_configuration

    known = _wiring_to_save(wiring_file, directory, name)
    with _connected(prefix, directory, timeout) as (device, run):
        if known is None:
            from bluesky.run_engine import call_in_bluesky_event_loop

            known = (
                PandaWiring(),
                call_in_bluesky_event_loop(current_captures(device)),
            )
        wiring, captures = known
        config = run(
            save_panda_configuration(
                directory, name, device, wiring=wiring, captures=captures
            )
        )
    click.echo(f"saved {len(config.settings)} fields of {prefix} to {config.source}")
    click.echo(_summary(config.wiring, config.captures))


@panda.command()
@_common
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Only check the files against the PandA; write nothing.",
)
def restore(
    directory: Path, name: str, prefix: str, timeout: float, check_only: bool
) -> None:
    """Restore configuration NAME from DIRECTORY onto the PandA.

    Checks both files against the PandA first (unknown fields, values it does
    not accept, wiring blocks it does not have) and refuses while PCAP is
    armed: on any problem nothing is written and the command says what and
    where. Then writes every field, units before the values they scale, and
    checks the PandA took each.
    """
    from ...devices import check_panda_configuration, restore_panda_configuration

    plan = check_panda_configuration if check_only else restore_panda_configuration
    with _connected(prefix, directory, timeout) as (device, run):
        config = run(plan(directory, name, device))
    done = "checked (nothing written)" if check_only else "restored"
    click.echo(f"{done} {len(config.settings)} fields of {prefix} from {config.source}")
    click.echo(_summary(config.wiring, config.captures))
