"""A PandA configuration saved to YAML and restored, on the simulated PandA
through the real IOC: the values come back (read through the IOC and on the
PandA's control port), the files are stable, a bad file writes nothing, and
the ``panda-flyscan panda`` command does the same."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from beamline_helpers import panda_get
from bluesky import RunEngine
from bluesky.run_engine import RunEngineResult, call_in_bluesky_event_loop
from ophyd_async.core import SignalRW
from ophyd_async.fastcs.panda import SeqTable, SeqTrigger

from panda_flyscan.app.simulated.launcher import SimulatedBeamline
from panda_flyscan.devices import (
    Capture,
    DetectorWiring,
    EncoderWiring,
    FlyscanPanda,
    PandaConfiguration,
    PandaConfigurationError,
    PandaWiring,
    RunFilePathProvider,
    configuration_files,
    restore_panda_configuration,
    save_panda_configuration,
)
from panda_flyscan.polling import poll_until

WIRING = PandaWiring(
    detectors=(DetectorWiring("det", ttlout=2),),
    encoders=(EncoderWiring("y", inenc=2),),
    seq=2,
    pcomp=2,
)
CAPTURES = (Capture("INENC2.VAL", "y", "Mean"), Capture("PCAP.TS_TRIG", "trigger_time"))
#: Two rows on SEQ2.
TABLE = SeqTable.row(repeats=3, trigger=SeqTrigger.BITA_1, time1=10, outa1=True)
TABLE = TABLE + SeqTable.row(repeats=1, time2=5)
EMPTY = SeqTable()  # type: ignore[call-arg]  # (pydantic defaults every column)


@pytest.fixture(scope="module")
def env(
    beamline: SimulatedBeamline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunEngine, FlyscanPanda]]:
    """A RunEngine and the PandA; the PandA's configuration as it was is put
    back at the end (the session's other tests share the PandA)."""
    RE = RunEngine({}, call_returns_result=True)
    panda = FlyscanPanda(
        beamline.panda_prefix,
        RunFilePathProvider(tmp_path_factory.mktemp("panda-data")),
        wiring=WIRING,
        captures=CAPTURES,
        name="panda",
    )
    call_in_bluesky_event_loop(panda.connect(timeout=20))
    before = tmp_path_factory.mktemp("before")
    RE(save_panda_configuration(before, "session", panda))
    try:
        yield RE, panda
    finally:
        RE(restore_panda_configuration(before, "session", panda))
        RE.loop.call_soon_threadsafe(RE.loop.stop)


def _result(RE: RunEngine, plan: Any) -> PandaConfiguration:
    result = RE(plan)
    assert isinstance(result, RunEngineResult)
    return result.plan_result


def _run(coro: Any) -> Any:
    return call_in_bluesky_event_loop(coro, timeout=30)


def _fields(panda: FlyscanPanda) -> dict[str, SignalRW[Any]]:
    """The fields the test changes, by their name in the saved file."""
    # Blocks are typed by what ophyd-async declares; the IOC's PVI adds more.
    inenc: Any = panda.inenc[2]  # type: ignore[attr-defined]
    pulse: Any = panda.pulse[2]
    seq: Any = panda.seq[2]
    return {
        "inenc.2.val_capture": inenc.val_capture,
        "inenc.2.val_dataset": inenc.val_dataset,
        "inenc.2.val_scale": inenc.val_scale,
        "inenc.2.val_offset": inenc.val_offset,
        "inenc.2.val_units": inenc.val_units,
        "pulse.2.width_units": pulse.width_units,
        "pulse.2.width": pulse.width,
        "pulse.2.trig": pulse.trig,
        "seq.2.prescale_units": seq.prescale_units,
        "seq.2.prescale": seq.prescale,
    }


#: What the test saves, and what it changes them to before restoring.
SAVED = {
    "inenc.2.val_capture": "Mean",
    "inenc.2.val_dataset": "y",
    "inenc.2.val_scale": 0.002,
    "inenc.2.val_offset": -1.5,
    "inenc.2.val_units": "mm",
    "pulse.2.width_units": "ms",
    "pulse.2.width": 2.5,
    "pulse.2.trig": "BITS.OUTB",
    "seq.2.prescale_units": "us",
    "seq.2.prescale": 7.0,
}
CHANGED = {
    "inenc.2.val_capture": "No",
    "inenc.2.val_dataset": "",
    "inenc.2.val_scale": 1.0,
    "inenc.2.val_offset": 0.0,
    "inenc.2.val_units": "",
    "pulse.2.width_units": "s",
    "pulse.2.width": 0.25,
    "pulse.2.trig": "ZERO",
    "seq.2.prescale_units": "s",
    "seq.2.prescale": 1.0,
}


def _set(panda: FlyscanPanda, values: dict[str, Any], table: SeqTable) -> None:
    async def put() -> None:
        fields = _fields(panda)
        for name, value in values.items():  # in order: units before values
            await fields[name].set(value)
        await panda.seq[2].table.set(table)  # type: ignore[attr-defined]

    _run(put())


def _read(panda: FlyscanPanda) -> dict[str, Any]:
    async def get() -> dict[str, Any]:
        fields = _fields(panda)
        values = await asyncio.gather(*(s.get_value() for s in fields.values()))
        return dict(zip(fields, values, strict=True))

    return _run(get())


def _wait_for(panda: FlyscanPanda, wanted: dict[str, Any]) -> None:
    """Until the IOC shows ``wanted`` (it polls the PandA every 0.1 s)."""
    poll_until(lambda: _read(panda) == wanted, timeout=5, interval=0.1)


def _table(panda: FlyscanPanda) -> dict[str, list[Any]]:
    """SEQ2's table as plain columns (tables of arrays do not compare with ==)."""
    table = _run(panda.seq[2].table.get_value())  # type: ignore[attr-defined]
    return _columns(table)


def _columns(table: SeqTable) -> dict[str, list[Any]]:
    return {name: list(column) for name, column in table.model_dump().items()}


def test_restore_puts_back_what_was_saved_and_the_files_are_stable(
    env: tuple[RunEngine, FlyscanPanda], beamline: SimulatedBeamline, tmp_path: Path
) -> None:
    RE, panda = env
    _set(panda, SAVED, TABLE)
    _wait_for(panda, SAVED)
    saved = _result(RE, save_panda_configuration(tmp_path, "bl", panda))
    fields_file, wiring_file = configuration_files(tmp_path, "bl")
    assert saved.source == str(fields_file)
    on_file = yaml.safe_load(fields_file.read_text())
    assert {k: on_file[k] for k in SAVED} == SAVED
    assert on_file["seq.2.table"]["repeats"] == [3, 1]
    assert on_file["seq.2.table"]["trigger"] == ["BITA=1", "Immediate"]
    assert not any(k == "pcap.arm" or k.startswith("data.") for k in on_file)
    assert yaml.safe_load(wiring_file.read_text())["wiring"]["encoders"] == [
        {"motor": "y", "inenc": 2}
    ]

    _set(panda, CHANGED, EMPTY)
    _wait_for(panda, CHANGED)
    panda.wiring, panda.captures = PandaWiring(), ()
    restored = _result(RE, restore_panda_configuration(tmp_path, "bl", panda))

    _wait_for(panda, SAVED)
    assert _table(panda) == _columns(TABLE)
    assert (panda.wiring, panda.captures) == (WIRING, CAPTURES)
    assert (restored.wiring, restored.captures) == (WIRING, CAPTURES)
    # On the PandA itself, not only in the IOC's records.
    assert asyncio.run(panda_get(beamline, "PULSE2.WIDTH.UNITS")) == "ms"
    assert float(asyncio.run(panda_get(beamline, "PULSE2.WIDTH"))) == 2.5
    assert asyncio.run(panda_get(beamline, "INENC2.VAL.CAPTURE")) == "Mean"
    assert float(asyncio.run(panda_get(beamline, "INENC2.VAL.SCALE"))) == 0.002
    assert asyncio.run(panda_get(beamline, "SEQ2.PRESCALE.UNITS")) == "us"

    RE(save_panda_configuration(tmp_path, "again", panda))
    again_fields, again_wiring = configuration_files(tmp_path, "again")
    assert again_fields.read_text() == fields_file.read_text()
    assert again_wiring.read_text() == wiring_file.read_text()


def _edited(tmp_path: Path, name: str, **changes: Any) -> Path:
    """Configuration ``name``: the PandA as it is, with ``changes`` made to the
    file, and PULSE2.WIDTH = 9 ms beside them (which must not be written)."""
    fields_file = configuration_files(tmp_path, name)[0]
    data = yaml.safe_load(fields_file.read_text())
    data.update({"pulse.2.width": 9.0, **changes})
    fields_file.write_text(yaml.safe_dump(data))
    return fields_file


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"pulse.9.width": 1.0}, "this PandA has no field(s) pulse.9.width"),
        ({"pulse.2.widht": 1.0}, "pulse.2.widht (did you mean pulse.2.width?)"),
        ({"pulse.2.width_units": "hours"}, "'hours' is not one of 'min', 's'"),
        ({"pulse.2.pulses": "many"}, "pulse.2.pulses: expected an integer"),
        ({"pulse.2.trig": "NOPE.OUT"}, "'NOPE.OUT' is not an output of this PandA"),
        ({"pulse.2.trig": "PULSE1.OUTT"}, "'PULSE1.OUTT' is not an output"),
        ({"seq.2.table": {"repeats": [1]}}, "seq.2.table: a table with columns"),
    ],
)
def test_a_bad_field_is_an_error_naming_the_file_and_nothing_is_written(
    env: tuple[RunEngine, FlyscanPanda],
    tmp_path: Path,
    changes: dict[str, Any],
    expected: str,
) -> None:
    RE, panda = env
    RE(save_panda_configuration(tmp_path, "bl", panda))
    width_before = _run(panda.pulse[2].width.get_value())  # type: ignore[attr-defined]
    fields_file = _edited(tmp_path, "bl", **changes)
    with pytest.raises(PandaConfigurationError) as err:
        RE(restore_panda_configuration(tmp_path, "bl", panda))
    assert str(err.value).startswith(f"{fields_file}: ")
    assert expected in str(err.value)
    assert _run(panda.pulse[2].width.get_value()) == width_before  # type: ignore[attr-defined]


def test_a_wiring_block_the_panda_lacks_is_an_error_before_any_write(
    env: tuple[RunEngine, FlyscanPanda], tmp_path: Path
) -> None:
    RE, panda = env
    RE(save_panda_configuration(tmp_path, "bl", panda))
    width_before = _run(panda.pulse[2].width.get_value())  # type: ignore[attr-defined]
    _edited(tmp_path, "bl")
    wiring_file = configuration_files(tmp_path, "bl")[1]
    doc = yaml.safe_load(wiring_file.read_text())
    doc["wiring"]["detectors"][0]["ttlout"] = 99
    wiring_file.write_text(yaml.safe_dump(doc))
    with pytest.raises(PandaConfigurationError) as err:
        RE(restore_panda_configuration(tmp_path, "bl", panda))
    assert str(err.value).startswith(f"{wiring_file}: detector 'det' is wired to ")
    assert "TTLOUT99, which this PandA does not have (it has TTLOUT1," in str(err.value)
    assert _run(panda.pulse[2].width.get_value()) == width_before  # type: ignore[attr-defined]
    # Nor is a wiring the PandA cannot honour saved.
    bad = PandaWiring(encoders=(EncoderWiring("y", inenc=9),))
    with pytest.raises(PandaConfigurationError, match="INENC9, which this PandA"):
        RE(save_panda_configuration(tmp_path, "other", panda, wiring=bad))
    assert not configuration_files(tmp_path, "other")[0].exists()
    # A divider block it lacks, likewise.
    divided = PandaWiring(detectors=(DetectorWiring("det", ttlout=1, divider=7),))
    with pytest.raises(PandaConfigurationError, match="divider is wired to DIV7"):
        RE(save_panda_configuration(tmp_path, "other", panda, wiring=divided))


def test_a_value_the_panda_refuses_is_reported(
    env: tuple[RunEngine, FlyscanPanda], tmp_path: Path
) -> None:
    """The PandA ignores a bus name it does not know, without an error: the
    restore reads the text fields back and says which did not take."""
    RE, panda = env
    RE(save_panda_configuration(tmp_path, "bl", panda))
    _edited(tmp_path, "bl", **{"pulse.2.trig": "bits.outa"})  # lower case
    with pytest.raises(PandaConfigurationError) as err:
        RE(restore_panda_configuration(tmp_path, "bl", panda))
    assert "the PandA refused 1 value(s)" in str(err.value)
    assert "pulse.2.trig: wrote 'bits.outa', reads" in str(err.value)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "panda_flyscan", "panda", *args],
        capture_output=True,
        text=True,
        env=os.environ,  # the session's EPICS client environment
        timeout=120,
    )


def test_panda_command_saves_checks_and_restores(
    env: tuple[RunEngine, FlyscanPanda], beamline: SimulatedBeamline, tmp_path: Path
) -> None:
    _, panda = env
    _set(panda, SAVED, TABLE)
    _wait_for(panda, SAVED)
    saved = _cli(
        "save", str(tmp_path), "--name", "cli", "--prefix", beamline.panda_prefix
    )
    assert saved.returncode == 0, saved.stderr
    fields_file, wiring_file = configuration_files(tmp_path, "cli")
    assert f"to {fields_file}" in saved.stdout
    # No wiring given or saved before: the captures are the PandA's own.
    wiring = yaml.safe_load(wiring_file.read_text())
    assert {"field": "INENC2.VAL", "dataset": "y", "mode": "Mean"} in wiring["captures"]
    assert yaml.safe_load(fields_file.read_text())["pulse.2.width"] == 2.5

    _set(panda, CHANGED, EMPTY)
    _wait_for(panda, CHANGED)
    checked = _cli(
        "restore", str(tmp_path), "--name", "cli", "--check"
    )  # $PANDA_PREFIX
    assert checked.returncode == 0, checked.stderr
    assert "checked (nothing written)" in checked.stdout
    assert _read(panda) == CHANGED

    restored = _cli("restore", str(tmp_path), "--name", "cli")
    assert restored.returncode == 0, restored.stderr
    _wait_for(panda, SAVED)
    assert _table(panda) == _columns(TABLE)

    missing = _cli("restore", str(tmp_path), "--name", "nope")
    assert missing.returncode == 1
    assert f"Error: {tmp_path / 'nope.yaml'}: no such file; saved here: cli" in (
        missing.stderr
    )
