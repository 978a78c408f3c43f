"""Save a PandA's configuration to YAML and restore it, with ophyd-async's
settings machinery.

A configuration is two YAML files side by side, written through an ophyd-async
``SettingsProvider`` (by default ``YamlSettingsProvider(directory)``):

``NAME.yaml``
    Every field of the PandA the IOC lets us write, as ophyd-async stores
    settings (one ``block.N.field: value`` line each, sorted): the wiring of
    every block (``pulse.1.trig: BITS.OUTA``), timings and their units
    (``pulse.1.width: 2.5``, ``pulse.1.width_units: ms``), the sequencer
    tables, the encoder scaling (``inenc.1.val_scale``, ``_offset``,
    ``_units``) and the PCAP capture choices (``inenc.1.val_capture: Mean``,
    ``inenc.1.val_dataset: x``). Left out: :data:`RUN_TIME_FIELDS`, which the
    flyscan sets itself on every run.
``NAME.wiring.yaml``
    How the PandA is cabled to the beamline (:class:`PandaWiring`) and the
    default captures the plans apply (:class:`Capture`)::

        captures:
        - dataset: x
          field: INENC1.VAL
          mode: Value
        version: 1
        wiring:
          detectors:
          - detector: det
            ttlout: 1
          encoders:
          - inenc: 1
            motor: x
          notes: {}
          pcomp: 1
          seq: 1

Both are meant to be read and edited by hand. :func:`restore_panda_configuration`
checks everything against the connected PandA before it writes anything: a
missing or unreadable file, an unknown key, a field the PandA does not have, a
value of the wrong type or not among a field's choices, a wiring block the
PandA does not have, a capture it cannot make; then it applies the fields
with ``apply_panda_settings`` (units before the values they scale), checks
that the PandA took every wiring value (it ignores an unknown one without an
error) and sets the wiring and captures on the :class:`FlyscanPanda`.

>>> RE(save_panda_configuration("/config/panda", "bl01", bl.panda))
>>> RE(restore_panda_configuration("/config/panda", "bl01", bl.panda))

On the command line: ``panda-flyscan panda save DIR`` and ``panda-flyscan
panda restore DIR``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from bluesky.utils import MsgGenerator, plan
from ophyd_async.core import (
    Device,
    DeviceVector,
    Settings,
    SettingsProvider,
    Signal,
    SignalRW,
    Table,
    YamlSettingsProvider,
    walk_rw_signals,
)
from ophyd_async.fastcs.panda import HDFPanda, apply_panda_settings
from ophyd_async.plan_stubs import (
    apply_settings,
    apply_settings_if_different,
    get_current_settings,
    retrieve_settings,
)
from pydantic import ValidationError

from ._aio import wait_for_awaitable
from .capture import (
    Capture,
    CaptureError,
    capture_settings,
    check_captures,
    parse_field,
)
from .panda import FlyscanPanda
from .wiring import DetectorWiring, EncoderWiring, PandaWiring, WiringError

__all__ = [
    "RUN_TIME_FIELDS",
    "WIRING_FORMAT_VERSION",
    "PandaConfiguration",
    "PandaConfigurationError",
    "check_panda_configuration",
    "configuration_files",
    "current_captures",
    "parse_wiring_document",
    "read_wiring",
    "restore_panda_configuration",
    "save_panda_configuration",
    "wiring_document",
]

#: Fields neither saved nor restored: arming PCAP and the HDF5 writer's
#: per-run file, count and mode, which the flyscan sets on every run. (A file
#: written by ophyd-async's ``store_settings`` has them; they are ignored.)
RUN_TIME_FIELDS = ("pcap.arm", "data.*")
#: The ``version`` of ``NAME.wiring.yaml`` this code writes and reads.
WIRING_FORMAT_VERSION = 1
#: The settings name of the wiring file, after the PandA's own.
_WIRING_SUFFIX = ".wiring"
#: How long the PandA may take to show a written wiring value through the
#: IOC (it polls the PandA every 0.1 s).
_VERIFY_TIMEOUT = 2.0
#: A bit or position bus value: ``PULSE1.OUT``, ``INENC1.VAL``, ``BITS.OUTA``.
_BUS_VALUE = re.compile(r"^[A-Z][A-Z0-9_]*\.[A-Z][A-Z0-9_]*$")
#: String fields that are names, not wiring (the PandA takes any text).
_FREE_TEXT = re.compile(r"(_dataset|_units|label)$")
#: Problems listed in one error before "... and N more".
_MAX_LISTED = 12

SettingsLocation = Path | str | SettingsProvider
"""A directory (saved with ``YamlSettingsProvider``) or any ophyd-async
``SettingsProvider``."""


class PandaConfigurationError(ValueError):
    """A saved PandA configuration that cannot be saved or restored; the message
    names the file and what is wrong. Raised before anything is written to the
    PandA, except when the PandA refuses a value (the message then says so)."""


@dataclass(frozen=True)
class PandaConfiguration:
    """A configuration as saved, checked or restored.

    ``settings`` are the PandA's fields (ophyd-async ``Settings``),
    ``source`` where the PandA's file is (a path for a directory).
    """

    wiring: PandaWiring
    captures: tuple[Capture, ...]
    settings: Settings[HDFPanda]
    source: str


@dataclass(frozen=True)
class _Store:
    provider: SettingsProvider
    directory: Path | None

    def describe(self, name: str) -> str:
        if self.directory is not None:
            return str(self.directory / f"{name}.yaml")
        return f"settings {name!r} of {self.provider!r}"

    async def retrieve(self, name: str) -> Any:
        where = self.describe(name)
        try:
            return await self.provider.retrieve(name)
        except FileNotFoundError:
            raise PandaConfigurationError(
                f"{where}: no such file{self._saved_names()}"
            ) from None
        except yaml.YAMLError as err:
            raise PandaConfigurationError(f"{where}: not valid YAML: {err}") from None
        except OSError as err:
            raise PandaConfigurationError(f"{where}: cannot read: {err}") from None

    def _saved_names(self) -> str:
        if self.directory is None or not self.directory.is_dir():
            return " (the directory does not exist)" if self.directory else ""
        names = sorted(
            p.name.removesuffix(".yaml")
            for p in self.directory.glob("*.yaml")
            if not p.name.endswith(f"{_WIRING_SUFFIX}.yaml")
        )
        return f"; saved here: {', '.join(names)}" if names else "; none saved here"


def _store(where: SettingsLocation) -> _Store:
    if isinstance(where, SettingsProvider):
        return _Store(where, None)
    return _Store(YamlSettingsProvider(where), Path(where))


def configuration_files(directory: Path | str, name: str) -> tuple[Path, Path]:
    """The two files of configuration ``name`` in ``directory``: the PandA's
    fields and the wiring (``NAME.yaml``, ``NAME.wiring.yaml``)."""
    directory = Path(directory)
    return directory / f"{name}.yaml", directory / f"{name}{_WIRING_SUFFIX}.yaml"


def _is_run_time(name: str) -> bool:
    return name == "pcap.arm" or name.startswith("data.")


# --- The wiring file ---------------------------------------------------------


def wiring_document(wiring: PandaWiring, captures: Iterable[Capture]) -> dict[str, Any]:
    """The contents of ``NAME.wiring.yaml``: plain data, YAML-ready."""
    return {
        "version": WIRING_FORMAT_VERSION,
        "wiring": {
            "detectors": [dataclasses.asdict(d) for d in wiring.detectors],
            "encoders": [dataclasses.asdict(e) for e in wiring.encoders],
            "seq": wiring.seq,
            "pcomp": wiring.pcomp,
            "notes": dict(wiring.notes),
        },
        "captures": [dataclasses.asdict(c) for c in captures],
    }


def _fields(cls: type) -> tuple[set[str], set[str]]:
    """All and required field names of a dataclass."""
    fields = dataclasses.fields(cls)
    required = {
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    return {f.name for f in fields}, required


def _mapping(value: Any, where: str, cls: type | None = None) -> Mapping[str, Any]:
    """``value`` as a mapping with only (and all required) fields of ``cls``."""
    if not isinstance(value, Mapping):
        raise PandaConfigurationError(
            f"{where}: expected a mapping (key: value lines), got {value!r}"
        )
    if cls is not None:
        allowed, required = _fields(cls)
        if unknown := sorted(set(map(str, value)) - allowed):
            raise PandaConfigurationError(
                f"{where}: unknown key(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        if missing := sorted(required - set(value)):
            raise PandaConfigurationError(
                f"{where}: missing key(s) {', '.join(missing)}"
            )
    return value


_Built = TypeVar("_Built")


def _entry(cls: type[_Built], value: Any, where: str) -> _Built:
    """``cls(**value)``; a :class:`WiringError` names ``where``."""
    try:
        return cls(**_mapping(value, where, cls))
    except WiringError as err:
        raise PandaConfigurationError(f"{where}: {err}") from None


def _sequence(value: Any, where: str) -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise PandaConfigurationError(f"{where}: expected a list, got {value!r}")
    return value


def parse_wiring_document(
    data: Any, source: str = "wiring"
) -> tuple[PandaWiring, tuple[Capture, ...]]:
    """The wiring and captures in a ``NAME.wiring.yaml`` document.

    Checks everything that does not need the PandA (keys, types, block numbers
    at least 1, each device wired once, capture names and modes). Raises
    :class:`PandaConfigurationError` naming ``source`` and the bad entry.
    """
    top = _mapping(data, source)
    if unknown := sorted(set(map(str, top)) - {"version", "wiring", "captures"}):
        raise PandaConfigurationError(
            f"{source}: unknown key(s) {', '.join(unknown)}; allowed: captures, "
            "version, wiring"
        )
    version = top.get("version", WIRING_FORMAT_VERSION)
    if version != WIRING_FORMAT_VERSION:
        raise PandaConfigurationError(
            f"{source}: version {version!r} is not supported (this is version "
            f"{WIRING_FORMAT_VERSION})"
        )
    raw = dict(_mapping(top.get("wiring") or {}, f"{source}: wiring", PandaWiring))
    for key, cls in (("detectors", DetectorWiring), ("encoders", EncoderWiring)):
        where = f"{source}: wiring.{key}"
        raw[key] = tuple(
            _entry(cls, entry, f"{where}[{i}]")
            for i, entry in enumerate(_sequence(raw.get(key), where))
        )
    if raw.get("notes") is None:
        raw.pop("notes", None)
    wiring = _entry(PandaWiring, raw, f"{source}: wiring")
    captures: list[Capture] = []
    for i, c in enumerate(_sequence(top.get("captures"), f"{source}: captures")):
        entry = _mapping(c, f"{source}: captures[{i}]", Capture)
        if not all(isinstance(v, str) for v in entry.values()):
            raise PandaConfigurationError(
                f"{source}: captures[{i}]: field, dataset and mode are text, got "
                f"{dict(entry)!r}"
            )
        captures.append(Capture(**entry))
    if captures:
        try:
            check_captures(captures)
        except CaptureError as err:
            raise PandaConfigurationError(f"{source}: captures: {err}") from None
    return wiring, tuple(captures)


async def read_wiring(
    where: SettingsLocation, name: str
) -> tuple[PandaWiring, tuple[Capture, ...]]:
    """Read and check ``NAME.wiring.yaml`` (no PandA needed)."""
    store = _store(where)
    data = await store.retrieve(name + _WIRING_SUFFIX)
    return parse_wiring_document(data, store.describe(name + _WIRING_SUFFIX))


def _check_blocks(panda: HDFPanda, wiring: PandaWiring, source: str) -> None:
    """Every block the wiring names exists on this PandA."""
    wanted = [
        *(("ttlout", d.ttlout, f"detector {d.detector!r}") for d in wiring.detectors),
        *(("inenc", e.inenc, f"motor {e.motor!r}") for e in wiring.encoders),
        *(
            ("div", d.divider, f"detector {d.detector!r}'s divider")
            for d in wiring.detectors
            if d.divider is not None
        ),
        ("seq", wiring.seq, "seq"),
        ("pcomp", wiring.pcomp, "pcomp"),
    ]
    for block, number, what in wanted:
        vector = getattr(panda, block, None)
        have = sorted(vector) if isinstance(vector, DeviceVector) else []
        if number not in have:
            offered = ", ".join(f"{block.upper()}{n}" for n in have) or "none"
            raise PandaConfigurationError(
                f"{source}: {what} is wired to {block.upper()}{number}, which this "
                f"PandA does not have (it has {offered})"
            )


async def _check_wiring(
    panda: HDFPanda, wiring: PandaWiring, captures: Sequence[Capture], source: str
) -> None:
    _check_blocks(panda, wiring, source)
    if captures:
        try:
            await capture_settings(panda, captures)  # reads only
        except CaptureError as err:
            raise PandaConfigurationError(f"{source}: captures: {err}") from None


async def current_captures(panda: HDFPanda) -> tuple[Capture, ...]:
    """What the PandA is set to capture now: every field whose ``CAPTURE`` is not
    ``No`` and whose dataset is named, as :class:`Capture` declarations."""
    signals = walk_rw_signals(panda)
    pairs = [
        (path.removesuffix("_capture"), sig, signals[dataset])
        for path, sig in signals.items()
        if path.endswith("_capture")
        and (dataset := path.removesuffix("_capture") + "_dataset") in signals
    ]
    values = await asyncio.gather(
        *(asyncio.gather(c.get_value(), d.get_value()) for _, c, d in pairs)
    )
    captures = []
    for (path, _, _), (mode, dataset) in zip(pairs, values, strict=True):
        if mode != "No" and dataset:
            block, *number, field = path.split(".")
            captures.append(
                Capture(
                    f"{block.upper()}{''.join(number)}.{field.upper()}", dataset, mode
                )
            )
    return tuple(captures)


# --- The PandA's fields ------------------------------------------------------


class _CheckedProvider(SettingsProvider):
    """Hands ``retrieve_settings`` only names the PandA has, or says which it
    does not; leaves out the run-time fields."""

    def __init__(self, store: _Store, signals: Mapping[str, SignalRW[Any]]) -> None:
        self._store = store
        self._signals = signals

    async def store(self, name: str, data: dict[str, Any]) -> None:
        raise NotImplementedError  # only ever retrieved from

    async def retrieve(self, name: str) -> dict[str, Any]:
        where = self._store.describe(name)
        data = _mapping(await self._store.retrieve(name), where)
        fields = {str(k): v for k, v in data.items() if not _is_run_time(str(k))}
        if unknown := sorted(set(fields) - set(self._signals)):
            hints = [_unknown_field(n, self._signals) for n in unknown]
            raise PandaConfigurationError(
                f"{where}: this PandA has no field(s) {_listed(hints)}"
            )
        return fields


def _unknown_field(name: str, signals: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(signals), n=1, cutoff=0.8)
    return f"{name} (did you mean {close[0]}?)" if close else name


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return f"{shown}, ... and {more} more" if more > 0 else shown


def _bus_problem(panda: Device, value: str) -> str | None:
    """Why ``PULSE1.OUT``-like ``value`` names no output of this PandA, if so."""
    if value in ("ZERO", "ONE") or not _BUS_VALUE.match(value):
        return None  # anything else is left to the PandA (and checked after)
    try:
        ref = parse_field(value)
    except CaptureError:
        return f"{value!r} is not BLOCK[N].FIELD"
    block = getattr(panda, ref.block.lower(), None)
    if isinstance(block, DeviceVector):
        block = block.get(ref.number) if ref.number is not None else None
    elif ref.number is not None:
        block = None
    output = getattr(block, ref.name.lower(), None) if block is not None else None
    if not isinstance(output, Signal):
        return f"{value!r} is not an output of this PandA"
    return None


def _value_problem(
    panda: Device, name: str, signal: SignalRW[Any], value: Any, info: dict[str, Any]
) -> str | None:
    """Why ``value`` cannot be written to the field, if it cannot."""
    if value is None:
        return None  # apply_settings skips None
    dtype = info.get("dtype")
    if choices := info.get("choices"):
        if value not in choices:
            return f"{value!r} is not one of {', '.join(map(repr, choices))}"
        return None
    if dtype == "boolean" and not isinstance(value, bool):
        return f"expected true or false, got {value!r}"
    if dtype in ("integer", "number"):
        kinds = (int,) if dtype == "integer" else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            kind = "an integer" if dtype == "integer" else "a number"
            return f"expected {kind}, got {value!r}"
        limits = info.get("limits", {}).get("control", {})
        low, high = limits.get("low"), limits.get("high")
        if (
            low is not None
            and high is not None
            and low < high
            and not low <= value <= high
        ):
            return f"{value!r} is outside {low:g}..{high:g}"
        return None
    if dtype == "string":
        if not isinstance(value, str):
            return f"expected text, got {value!r}"
        return None if _FREE_TEXT.search(name) else _bus_problem(panda, value)
    if dtype == "array" and isinstance(value, Mapping):
        return _table_problem(signal, value, info)
    return None


def _table_problem(
    signal: SignalRW[Any], value: Mapping[str, Any], info: dict[str, Any]
) -> str | None:
    columns = info.get("dtype_numpy")
    if isinstance(columns, list):
        wanted = {str(c[0]) for c in columns}
        if set(value) != wanted:
            missing, extra = sorted(wanted - set(value)), sorted(set(value) - wanted)
            return (
                f"a table with columns {', '.join(sorted(wanted))}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(extra)}" if extra else "")
            )
    lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
    if -1 in lengths or len(lengths) > 1:
        return "a table's columns must be lists of the same length"
    datatype = signal.datatype
    if isinstance(datatype, type) and issubclass(datatype, Table):
        try:
            datatype(**value)
        except (ValidationError, ValueError, TypeError) as err:
            return f"not a valid {datatype.__name__}: {err}".splitlines()[0]
    return None


async def _check_values(settings: Settings[HDFPanda], source: str) -> None:
    names = {sig: name for name, sig in walk_rw_signals(settings.device).items()}
    items = list(settings.items())
    infos = await asyncio.gather(*(sig.describe() for sig, _ in items))
    problems = []
    for (signal, value), description in zip(items, infos, strict=True):
        info = dict(next(iter(description.values())))
        name = names[signal]
        if problem := _value_problem(settings.device, name, signal, value, info):
            problems.append(f"{name}: {problem}")
    if problems:
        raise PandaConfigurationError(f"{source}: {_listed(problems)}")


async def _verify_taken(settings: Settings[HDFPanda], source: str) -> None:
    """The PandA silently keeps its old value when a written bus name (e.g.
    ``PULSE1.TRIG``) is one it does not know: read the text fields back."""
    names = {sig: name for name, sig in walk_rw_signals(settings.device).items()}
    items = list(settings.items())
    infos = await asyncio.gather(*(sig.describe() for sig, _ in items))
    texts = [
        (sig, value)
        for (sig, value), description in zip(items, infos, strict=True)
        if isinstance(value, str)
        and next(iter(description.values())).get("dtype") == "string"
    ]
    deadline = time.monotonic() + _VERIFY_TIMEOUT
    while True:
        read = await asyncio.gather(*(sig.get_value() for sig, _ in texts))
        refused = [
            f"{names[sig]}: wrote {value!r}, reads {now!r}"
            for (sig, value), now in zip(texts, read, strict=True)
            if now != value
        ]
        if not refused:
            return
        if time.monotonic() > deadline:
            raise PandaConfigurationError(
                f"{source}: the PandA refused {len(refused)} value(s), which kept "
                f"their old value (the other fields were restored): {_listed(refused)}"
            )
        # The IOC shows a PandA value at its next poll (every 0.1 s).
        await asyncio.sleep(0.1)


# --- The plans ---------------------------------------------------------------


@plan
def save_panda_configuration(
    where: SettingsLocation,
    name: str,
    panda: HDFPanda,
    *,
    wiring: PandaWiring | None = None,
    captures: Sequence[Capture] | None = None,
) -> MsgGenerator[PandaConfiguration]:
    """Plan stub: save the PandA's fields and its wiring and captures as ``name``.

    Args:
        where: A directory (created if missing; ``NAME.yaml`` and
            ``NAME.wiring.yaml`` are written there) or a ``SettingsProvider``.
        name: The configuration's name.
        panda: The connected PandA.
        wiring: The cabling to save; default the :class:`FlyscanPanda`'s.
        captures: The default captures to save; default the
            :class:`FlyscanPanda`'s.

    Only reads the PandA. The wiring and captures are checked against it first
    (:class:`PandaConfigurationError`, nothing written).
    """
    store = _store(where)
    source = store.describe(name + _WIRING_SUFFIX)
    if wiring is None:
        wiring = panda.wiring if isinstance(panda, FlyscanPanda) else PandaWiring()
    if captures is None:
        captures = panda.captures if isinstance(panda, FlyscanPanda) else ()
    captures = tuple(captures)
    yield from wait_for_awaitable(_check_wiring(panda, wiring, captures, source))
    # store_settings cannot leave fields out: it is get + provider.store.
    current = yield from get_current_settings(panda)
    names = {sig: path for path, sig in walk_rw_signals(panda).items()}
    settings, _ = current.partition(lambda sig: not _is_run_time(names[sig]))
    if store.directory is not None:
        store.directory.mkdir(parents=True, exist_ok=True)
    fields = {names[sig]: value for sig, value in settings.items()}
    yield from wait_for_awaitable(store.provider.store(name, fields))
    yield from wait_for_awaitable(
        store.provider.store(name + _WIRING_SUFFIX, wiring_document(wiring, captures))
    )
    return PandaConfiguration(wiring, captures, settings, store.describe(name))


@plan
def check_panda_configuration(
    where: SettingsLocation, name: str, panda: HDFPanda
) -> MsgGenerator[PandaConfiguration]:
    """Plan stub: read configuration ``name`` and check it against the connected
    ``panda``, writing nothing. Raises :class:`PandaConfigurationError`."""
    store = _store(where)
    wiring_source = store.describe(name + _WIRING_SUFFIX)
    checked = _CheckedProvider(store, walk_rw_signals(panda))
    settings = yield from retrieve_settings(checked, name, panda)
    yield from wait_for_awaitable(_check_values(settings, store.describe(name)))
    wiring, captures = yield from wait_for_awaitable(read_wiring(where, name))
    yield from wait_for_awaitable(_check_wiring(panda, wiring, captures, wiring_source))
    return PandaConfiguration(wiring, captures, settings, store.describe(name))


@plan
def restore_panda_configuration(
    where: SettingsLocation, name: str, panda: HDFPanda
) -> MsgGenerator[PandaConfiguration]:
    """Plan stub: restore configuration ``name`` onto the connected ``panda``.

    Checks it first (:func:`check_panda_configuration`) and refuses while PCAP
    is armed, raising :class:`PandaConfigurationError` before any write; then
    applies the PandA's fields with ophyd-async's ``apply_panda_settings``
    (units first; tables only where they differ), checks the PandA took every
    text value, and sets the wiring and captures on ``panda`` if it is a
    :class:`FlyscanPanda`.
    """
    config = yield from check_panda_configuration(where, name, panda)
    armed = yield from wait_for_awaitable(panda.pcap.active.get_value())
    if armed:
        raise PandaConfigurationError(
            f"{config.source}: not restored: PCAP is armed (a capture is running); "
            "disarm it (panda.pcap.arm.set(False)) and restore again"
        )
    # Tables only if changed: the IOC warns on every write of an empty one.
    settings = config.settings
    tables, fields = settings.partition(lambda sig: isinstance(settings[sig], Mapping))
    yield from apply_panda_settings(fields)
    yield from apply_settings_if_different(tables, apply_settings)
    yield from wait_for_awaitable(_verify_taken(config.settings, config.source))
    if isinstance(panda, FlyscanPanda):
        panda.wiring = config.wiring
        panda.captures = config.captures
    return config
