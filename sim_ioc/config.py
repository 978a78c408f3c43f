"""The simulator's options, defined once: :class:`SimulatorConfig`.

``python -m sim_ioc`` builds its devices from one :class:`SimulatorConfig`;
whoever starts it (``panda-flyscan sim``, the launcher) builds that model and
hands it over serialised (``--config-json``), and the command line's own
options (:func:`add_arguments`) are generated from the model's fields, so a
default or a constraint lives only here.

Importing this module is cheap (pydantic only; no caproto): a command line may
read the fields' descriptions and defaults for its ``--help`` without loading
the simulator. The defaults are those of :class:`sim_ioc.motor.MotorConfig`
and :class:`sim_ioc.detector.DetectorConfig`;
:meth:`SimulatorConfig.motor_config` and :meth:`SimulatorConfig.detector_config`
build those from it.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from .detector import DetectorConfig
    from .motor import MotorConfig
    from .panda.device import SimulatedPanda

__all__ = [
    "CONFIG_JSON_OPTION",
    "SimulatorConfig",
    "add_arguments",
    "choices",
    "config_from_arguments",
    "describe_field",
    "make_panda",
    "option_name",
    "problems_by_field",
]

#: The option that hands ``python -m sim_ioc`` a whole configuration as JSON.
CONFIG_JSON_OPTION = "--config-json"

#: What the detector's exposure output shows (``sim_ioc.detector.ttl``).
LevelSignal = Literal["exposing", "busy"]
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def make_panda(fmc_signals: Iterable[str] = ()) -> SimulatedPanda:
    """The simulated PandA, its FMC_IN channels fed ``FMC_IN<ch>=SIGNAL`` as
    ``*SIM.SIGNAL`` takes them; FieldError saying what is wrong with one."""
    # Imported here: building a PandA loads the catalog, --help should not.
    from .panda.device import SimulatedPanda
    from .panda.fields import FieldError
    from .panda.world_control import apply_sim_command

    panda = SimulatedPanda()
    for spec in fmc_signals:
        name, eq, value = spec.partition("=")
        if not eq:
            raise FieldError(f"{spec!r} is not FMC_IN<ch>=SIGNAL")
        apply_sim_command(panda, f"SIGNAL.{name.strip()}", value)
    return panda


class SimulatorConfig(BaseModel):
    """Everything ``python -m sim_ioc`` is built from: the PandA's address and
    ADC signals, the motor's encoder wiring, the detector's cabling and timing.

    Validated when made, so a bad value (an FMC signal the PandA would refuse
    included) is refused before anything starts. Immutable; JSON round-trips
    (:meth:`model_dump_json`, :meth:`model_validate_json`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    host: str = Field(
        default="127.0.0.1", min_length=1, description="The PandA's address (loopback)."
    )
    prefix: str = Field(
        default="SIM",
        min_length=1,
        description="Record prefix: PREFIX:M1 (motor), PREFIX:DET:cam1:/HDF1: "
        "(detector); the launcher's IOC serves the PandA as PREFIX:PANDA:.",
    )
    control_port: int = Field(
        default=8888, ge=1, le=65535, description="The control port."
    )
    data_port: int = Field(default=8889, ge=1, le=65535, description="The data port.")
    motor_axis: str = Field(
        default="INENC1",
        min_length=1,
        description="The PandA INENC the motor's encoder is wired to.",
    )
    encoder_resolution: float = Field(
        default=1000.0, description="Encoder counts per motor unit (1000: 1 count/um)."
    )
    encoder_offset: float = Field(default=0.0, description="Encoder counts at dial 0.")
    detector_ttlout: int = Field(
        default=1,
        ge=1,
        le=10,
        description="The PandA TTLOUT cabled to the detector's trigger.",
    )
    readout_time: float = Field(
        default=1e-3,
        ge=0,
        description="The detector's dead time after each exposure, s.",
    )
    detector_ttlin: int = Field(
        default=1,
        ge=0,
        le=6,
        description="The PandA TTLIN the detector's exposure output is cabled "
        "to, 0: none.",
    )
    detector_ttlin_signal: LevelSignal = Field(
        default="exposing",
        description="What that output shows: 'exposing' (high while exposing) "
        "or 'busy' (exposing or reading out).",
    )
    fmc_signals: tuple[str, ...] = Field(
        default=(),
        description="What an ACQ427 ADC channel sees (repeatable; default 0 V): "
        "constant, ramp, sine, noise or axis, e.g. 'FMC_IN1=sine amplitude=2 "
        "frequency=1000' (docs/simulator.md; also *SIM.SIGNAL.FMC_IN1=... at "
        "run time).",
    )
    log_level: str = Field(default="WARNING", description="The simulator's log level.")

    @field_validator("encoder_resolution")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0:
            raise PydanticCustomError("nonzero", "encoder resolution must not be 0")
        return value

    @field_validator("fmc_signals")
    @classmethod
    def _accepted_by_the_panda(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from .panda.fields import FieldError

        try:  # on a scratch PandA: the simulator's own reason, word for word
            make_panda(value)
        except FieldError as exc:
            raise PydanticCustomError(
                "fmc_signal", "{reason}", {"reason": str(exc)}
            ) from exc
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in _LOG_LEVELS:
            raise PydanticCustomError(
                "log_level",
                "must be one of {levels}",
                {"levels": ", ".join(_LOG_LEVELS)},
            )
        return value.upper()

    def motor_config(self) -> MotorConfig:
        """The motor's configuration (its other fields at their defaults)."""
        from .motor import MotorConfig

        return MotorConfig(
            axis=self.motor_axis,
            resolution=self.encoder_resolution,
            offset=self.encoder_offset,
        )

    def detector_config(self) -> DetectorConfig:
        """The detector's configuration (its other fields at their defaults)."""
        from .detector import DetectorConfig

        return DetectorConfig(
            ttlout=self.detector_ttlout,
            readout_time=self.readout_time,
            ttlin=self.detector_ttlin,
            ttlin_signal=self.detector_ttlin_signal,
        )


def option_name(field: str) -> str:
    """The command-line option of a field: ``--readout-time``; ``--fmc-signal``
    (given once per signal) for ``fmc_signals``."""
    if field == "fmc_signals":
        return "--fmc-signal"
    return "--" + field.replace("_", "-")


def describe_field(field: str) -> str:
    """A field's description, bounds and default, for a ``--help``."""
    info = SimulatorConfig.model_fields[field]
    default = info.get_default(call_default_factory=True)
    notes = [
        f">={bound.ge}" if isinstance(bound, annotated_types.Ge) else f"<={bound.le}"
        for bound in info.metadata
        if isinstance(bound, annotated_types.Ge | annotated_types.Le)
    ]
    if default != ():  # a repeatable option's description says what none means
        # 0.001, not 1e-03; 1000, not 1000.0
        notes.append(
            f"default: {default:g}"
            if isinstance(default, float)
            else f"default: {default}"
        )
    return (
        f"{info.description} [{'; '.join(notes)}]" if notes else f"{info.description}"
    )


def choices(field: str) -> tuple[str, ...]:
    """The values a field takes, if it is one of a few words (else ``()``)."""
    annotation = SimulatorConfig.model_fields[field].annotation
    return get_args(annotation) if get_origin(annotation) is Literal else ()


def problems_by_field(exc: ValidationError) -> dict[str, str]:
    """What is wrong, by field name (``""``: the input as a whole, e.g.
    malformed JSON): the first problem with each."""
    problems: dict[str, str] = {}
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        problems.setdefault(field, error["msg"])
    return problems


def add_arguments(
    parser: argparse.ArgumentParser, fields: Collection[str] | None = None
) -> None:
    """Add the options of ``fields`` (default: every field, and
    ``--config-json``) to ``parser``; :func:`config_from_arguments` reads them.

    Values reach the model as given (it converts and checks them), and an
    option not given leaves the model's default, so neither is restated here.
    """
    names = SimulatorConfig.model_fields if fields is None else fields
    if fields is None:
        parser.add_argument(
            CONFIG_JSON_OPTION,
            metavar="JSON",
            default=argparse.SUPPRESS,
            help="The whole configuration as JSON (as the launcher passes it); "
            "options given beside it override its values.",
        )
    for field in names:
        option: dict[str, Any] = {}
        if field == "fmc_signals":
            option = {"action": "append", "metavar": "FMC_IN<ch>=SIGNAL"}
        elif words := choices(field):
            option = {"metavar": "{" + ",".join(words) + "}"}
        parser.add_argument(
            option_name(field),
            dest=field,
            default=argparse.SUPPRESS,
            # argparse expands % in help: a literal one is doubled.
            help=describe_field(field).replace("%", "%%"),
            **option,
        )


def config_from_arguments(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> SimulatorConfig:
    """The configuration ``args`` (parsed by ``parser``, set up by
    :func:`add_arguments`) describe; a usage error (exit 2) if it is invalid."""
    given = dict(vars(args))
    base = given.pop(CONFIG_JSON_OPTION.lstrip("-").replace("-", "_"), None)
    try:
        config = (
            SimulatorConfig.model_validate_json(base)
            if base is not None
            else SimulatorConfig()
        )
        if given:
            config = SimulatorConfig.model_validate({**config.model_dump(), **given})
    except ValidationError as exc:
        parser.error(
            "; ".join(
                f"{option_name(field) if field else CONFIG_JSON_OPTION}: {problem}"
                for field, problem in problems_by_field(exc).items()
            )
        )
    return config
