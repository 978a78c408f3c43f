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

Three motor records (``PREFIX:M1``..``M3``, :attr:`SimulatorConfig.motors`,
each on an INENC axis of its own) and two detectors (``PREFIX:DET:`` and the
slower ``PREFIX:DET2:``) share the PandA's world, beside the storage ring's
beam current ``PREFIX:RING:CURRENT`` (:mod:`sim_ioc.ring`). The flat fields
``motor_axis``, ``encoder_resolution`` and ``encoder_offset`` are M1's (the
first of ``motors``), kept for the callers that predate ``motors``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from .detector import DetectorConfig
    from .motor import MotorConfig
    from .panda.device import SimulatedPanda

__all__ = [
    "CONFIG_JSON_OPTION",
    "M1_FIELDS",
    "MotorSettings",
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


class MotorSettings(BaseModel):
    """One simulated motor record: the world axis it drives (the PandA INENC
    of the same name reads it), its encoder scale, speeds and soft limits.

    The defaults are those of :class:`sim_ioc.motor.MotorConfig`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    axis: str = Field(
        default="INENC1",
        min_length=1,
        description="The PandA INENC the motor's encoder is wired to.",
    )
    resolution: float = Field(
        default=1000.0, description="Encoder counts per mm (1000: 1 count/um)."
    )
    offset: float = Field(default=0.0, description="Encoder counts at dial 0.")
    velocity: float = Field(default=1.0, gt=0, description="VELO at start, mm/s.")
    max_velocity: float = Field(default=10.0, gt=0, description="VMAX, mm/s.")
    acceleration_time: float = Field(
        default=0.1, ge=0, description="ACCL, s from rest to VELO."
    )
    low_limit: float = Field(default=-100.0, description="DLLM, mm.")
    high_limit: float = Field(default=100.0, description="DHLM, mm.")

    @field_validator("resolution")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0:
            raise PydanticCustomError("nonzero", "encoder resolution must not be 0")
        return value

    @model_validator(mode="after")
    def _ordered_limits(self) -> MotorSettings:
        if self.low_limit > self.high_limit:
            raise PydanticCustomError(
                "limits", "low_limit must not be above high_limit"
            )
        return self


#: M1's flat fields of :class:`SimulatorConfig`, and the field of the first
#: :class:`MotorSettings` each stands for.
M1_FIELDS: dict[str, str] = {
    "motor_axis": "axis",
    "encoder_resolution": "resolution",
    "encoder_offset": "offset",
}


def _default_motors() -> tuple[MotorSettings, ...]:
    return tuple(MotorSettings(axis=f"INENC{n}") for n in (1, 2, 3))


class SimulatorConfig(BaseModel):
    """Everything ``python -m sim_ioc`` is built from: the PandA's address and
    ADC signals, the motors' encoder wiring, the detectors' cabling and timing.

    ``motor_axis``, ``encoder_resolution`` and ``encoder_offset`` are M1's
    (``motors[0]``): given, they override it; left out, they read it.

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
        description="Record prefix: PREFIX:M1..M3 (motors), PREFIX:DET: and "
        "PREFIX:DET2: (detectors, cam1:/HDF1: below); the launcher's IOC serves "
        "the PandA as PREFIX:PANDA:.",
    )
    control_port: int = Field(
        default=8888, ge=1, le=65535, description="The control port."
    )
    data_port: int = Field(default=8889, ge=1, le=65535, description="The data port.")
    motors: tuple[MotorSettings, ...] = Field(
        default_factory=_default_motors,
        min_length=1,
        max_length=3,
        description="The motor records PREFIX:M1, M2, M3 as a JSON list of "
        "objects (axis, resolution, offset, velocity, max_velocity, "
        "acceleration_time, low_limit, high_limit; an axis left out is "
        "INENC<n> for motor n, the rest default to 1000 counts/mm, 1 mm/s, "
        "VMAX 10 mm/s, ACCL 0.1 s, limits -100..100 mm).",
    )
    motor_axis: str = Field(
        default="INENC1",
        min_length=1,
        description="The PandA INENC M1's encoder is wired to.",
    )
    encoder_resolution: float = Field(
        default=1000.0, description="M1's encoder counts per mm (1000: 1 count/um)."
    )
    encoder_offset: float = Field(
        default=0.0, description="M1's encoder counts at dial 0."
    )
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
    detector2_ttlout: int = Field(
        default=2,
        ge=1,
        le=10,
        description="The PandA TTLOUT cabled to the second (slow) detector's "
        "trigger, PREFIX:DET2:.",
    )
    detector2_readout_time: float = Field(
        default=5e-3,
        ge=0,
        description="The second detector's dead time after each exposure, s.",
    )
    detector2_ttlin: int = Field(
        default=0,
        ge=0,
        le=6,
        description="The PandA TTLIN the second detector's exposure output is "
        "cabled to, 0: none.",
    )
    detector2_ttlin_signal: LevelSignal = Field(
        default="exposing",
        description="What the second detector's output shows (as "
        "--detector-ttlin-signal).",
    )
    ring_current: float = Field(
        default=300.0,
        ge=0,
        description="The storage ring's beam current at start-up, mA "
        "(PREFIX:RING:CURRENT; writable, and PREFIX:RING:DUMP=1 drops it to 0, "
        "=0 restores it).",
    )
    fmc_signals: tuple[str, ...] = Field(
        default=(),
        description="What an ACQ427 ADC channel sees (repeatable; default 0 V): "
        "constant, ramp, sine, noise or axis, e.g. 'FMC_IN1=sine amplitude=2 "
        "frequency=1000' (docs/simulator.md; also *SIM.SIGNAL.FMC_IN1=... at "
        "run time).",
    )
    log_level: str = Field(default="WARNING", description="The simulator's log level.")

    @model_validator(mode="before")
    @classmethod
    def _m1_flat_fields(cls, data: Any) -> Any:
        """``motors`` given as JSON text (a command line's), axes left out
        numbered, and M1's flat fields and ``motors[0]`` made one: the flat
        ones win where given."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        motors = data.get("motors")
        if isinstance(motors, str | bytes):
            try:
                motors = json.loads(motors)
            except ValueError:
                return data  # the field's validator says why
        if motors is None:
            motors = _default_motors()
        if not isinstance(motors, list | tuple) or not motors:
            return data  # the field's own validation says what is wrong
        listed: list[Any] = []
        for n, motor in enumerate(motors, start=1):
            if isinstance(motor, MotorSettings):
                motor = motor.model_dump()
            if isinstance(motor, Mapping):
                motor = {"axis": f"INENC{n}", **motor}
            listed.append(motor)
        first = listed[0]
        if isinstance(first, dict):
            for flat, field in M1_FIELDS.items():
                if flat in data:
                    first[field] = data[flat]
                elif field in first:
                    data[flat] = first[field]
        data["motors"] = listed
        return data

    @field_validator("encoder_resolution")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0:
            raise PydanticCustomError("nonzero", "encoder resolution must not be 0")
        return value

    @field_validator("motors", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        if isinstance(value, str | bytes):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise PydanticCustomError(
                    "json", "not a JSON list: {reason}", {"reason": str(exc)}
                ) from None
        return value

    @field_validator("motors")
    @classmethod
    def _one_axis_each(
        cls, value: tuple[MotorSettings, ...]
    ) -> tuple[MotorSettings, ...]:
        axes = [m.axis for m in value]
        if dupes := sorted({a for a in axes if axes.count(a) > 1}):
            raise PydanticCustomError(
                "axes", "{axes} driven by more than one motor", {"axes": dupes}
            )
        return value

    @field_validator("detector2_ttlin")
    @classmethod
    def _one_detector_per_ttlin(cls, value: int, info: ValidationInfo) -> int:
        # A field's own error, so a command line names the option at fault.
        if value and value == info.data.get("detector_ttlin"):
            raise PydanticCustomError(
                "ttlin",
                "the first detector's exposure output is on TTLIN{n} already",
                {"n": value},
            )
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
        """M1's configuration (its other fields at their defaults)."""
        return self.motor_configs()[0]

    def motor_configs(self) -> tuple[MotorConfig, ...]:
        """Each motor's configuration, M1 first (egu, precision and
        description at their defaults)."""
        from .motor import MotorConfig

        return tuple(
            MotorConfig(
                axis=m.axis,
                resolution=m.resolution,
                offset=m.offset,
                velocity=m.velocity,
                max_velocity=m.max_velocity,
                acceleration_time=m.acceleration_time,
                low_limit=m.low_limit,
                high_limit=m.high_limit,
            )
            for m in self.motors
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

    def detector2_config(self) -> DetectorConfig:
        """The second detector's configuration (``PREFIX:DET2:``)."""
        from .detector import DetectorConfig

        return DetectorConfig(
            ttlout=self.detector2_ttlout,
            readout_time=self.detector2_readout_time,
            ttlin=self.detector2_ttlin,
            ttlin_signal=self.detector2_ttlin_signal,
        )

    def override(self, given: Mapping[str, Any]) -> SimulatorConfig:
        """This configuration with the fields in ``given`` replaced (checked
        again). ``motors`` given without M1's flat fields replaces those too,
        rather than being overridden by this configuration's."""
        base = self.model_dump()
        if "motors" in given:
            for flat in M1_FIELDS:
                if flat not in given:
                    base.pop(flat)
        return SimulatorConfig.model_validate({**base, **given})


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
    if field == "motors":  # its description lists the defaults
        pass
    elif default != ():  # a repeatable option's description says what none means
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
        elif field == "motors":
            option = {"metavar": "JSON"}
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
            config = config.override(given)
    except ValidationError as exc:
        parser.error(
            "; ".join(
                f"{option_name(field) if field else CONFIG_JSON_OPTION}: {problem}"
                for field, problem in problems_by_field(exc).items()
            )
        )
    return config
