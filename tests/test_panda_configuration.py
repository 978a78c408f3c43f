"""The wiring file of a saved PandA configuration, without a PandA: round trip
through YAML and the errors a hand-edited file gets (the PandA's own fields
are tested against the real IOC in
tests/sim_beamline/test_beamline_panda_configuration.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from ophyd_async.core import YamlSettingsProvider

from panda_flyscan.app.cli import main
from panda_flyscan.devices import (
    Capture,
    DetectorWiring,
    EncoderWiring,
    PandaConfigurationError,
    PandaWiring,
    configuration_files,
    parse_wiring_document,
    read_wiring,
    wiring_document,
)

WIRING = PandaWiring(
    detectors=(DetectorWiring("saxs", ttlout=1), DetectorWiring("waxs", ttlout=3)),
    encoders=(EncoderWiring("x", inenc=1), EncoderWiring("theta", inenc=4)),
    seq=2,
    pcomp=2,
    notes={"x": "sample stage, 1000 counts/mm"},
)
CAPTURES = (
    Capture("INENC1.VAL", "x"),
    Capture("INENC4.VAL", "theta", mode="Mean"),
    Capture("PCAP.TS_TRIG", "trigger_time"),
)


def _write(directory: Path, name: str, text: str) -> Path:
    path = configuration_files(directory, name)[1]
    path.write_text(text)
    return path


def test_wiring_and_captures_round_trip_through_yaml() -> None:
    text = yaml.safe_dump(wiring_document(WIRING, CAPTURES))
    assert parse_wiring_document(yaml.safe_load(text)) == (WIRING, CAPTURES)


def test_wiring_round_trips_through_the_settings_provider(tmp_path: Path) -> None:
    """Written as save_panda_configuration writes it (ophyd-async's
    YamlSettingsProvider), read back by read_wiring from the directory."""
    provider = YamlSettingsProvider(tmp_path)
    asyncio.run(provider.store("bl01.wiring", wiring_document(WIRING, CAPTURES)))
    path = configuration_files(tmp_path, "bl01")[1]
    assert path.name == "bl01.wiring.yaml"
    text = path.read_text()
    assert "ttlout: 3" in text and "field: INENC4.VAL" in text  # plain, editable
    assert asyncio.run(read_wiring(tmp_path, "bl01")) == (WIRING, CAPTURES)
    assert asyncio.run(read_wiring(provider, "bl01")) == (WIRING, CAPTURES)


def test_a_hand_written_file_needs_only_what_differs_from_the_defaults(
    tmp_path: Path,
) -> None:
    _write(
        tmp_path,
        "min",
        "wiring:\n  detectors:\n  - {detector: det, ttlout: 2}\n"
        "captures:\n- {field: PCAP.TS_TRIG, dataset: t}\n",
    )
    wiring, captures = asyncio.run(read_wiring(tmp_path, "min"))
    assert wiring == PandaWiring(detectors=(DetectorWiring("det", ttlout=2),))
    assert (wiring.seq, wiring.pcomp) == (1, 1)
    assert captures == (Capture("PCAP.TS_TRIG", "t", "Value"),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "wiring:\n  detectors:\n  - {detector: det, ttlout: 0}\n",
            "wiring.detectors[0]: DetectorWiring.ttlout: Input should be greater "
            "than or equal to 1 (got 0)",
        ),
        ("wiring:\n  encoder: []\n", "unknown key(s) encoder"),
        (
            "wiring:\n  encoders:\n  - {motor: x, inenc: 1, scale: 2}\n",
            "wiring.encoders[0]: unknown key(s) scale",
        ),
        ("wiring:\n  detectors:\n  - {detector: det}\n", "missing key(s) ttlout"),
        (
            "wiring:\n  detectors:\n  - {detector: a, ttlout: 1}\n"
            "  - {detector: b, ttlout: 1}\n",
            "TTLOUT[1] drive more than one detector",
        ),
        (
            "captures:\n- {field: INENC1.VAL, dataset: x, mode: Min Max}\n",
            "capture mode 'Min Max' is not supported",
        ),
        ("captures:\n- {field: INENC1, dataset: x}\n", "is not a PandA field"),
        ("captures: {field: INENC1.VAL}\n", "captures: expected a list"),
        ("version: 2\n", "version 2 is not supported"),
        ("just text\n", "expected a mapping"),
        ("wiring: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_bad_wiring_file_is_an_error_naming_the_file_and_the_entry(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _write(tmp_path, "bad", text)
    with pytest.raises(PandaConfigurationError) as err:
        asyncio.run(read_wiring(tmp_path, "bad"))
    assert str(err.value).startswith(f"{path}: ")
    assert expected in str(err.value)


def test_a_missing_file_names_it_and_lists_the_saved_ones(tmp_path: Path) -> None:
    _write(tmp_path, "day", "{}\n")
    (tmp_path / "day.yaml").write_text("{}\n")
    (tmp_path / "night.yaml").write_text("{}\n")
    with pytest.raises(PandaConfigurationError) as err:
        asyncio.run(read_wiring(tmp_path, "dusk"))
    assert str(err.value) == (
        f"{tmp_path / 'dusk.wiring.yaml'}: no such file; saved here: day, night"
    )
    with pytest.raises(PandaConfigurationError, match="directory does not exist"):
        asyncio.run(read_wiring(tmp_path / "nowhere", "day"))


def test_panda_command_explains_itself() -> None:
    runner = CliRunner()
    top = runner.invoke(main, ["--help"])
    assert top.exit_code == 0 and "panda save DIR" in top.output
    group = runner.invoke(main, ["panda", "--help"])
    assert group.exit_code == 0, group.output
    assert "restore" in group.output and "NAME.wiring.yaml" in group.output
    for command in ("save", "restore"):
        result = runner.invoke(main, ["panda", command, "--help"])
        assert result.exit_code == 0, result.output
        assert "--prefix" in result.output and "PANDA_PREFIX" in result.output


def test_panda_command_without_a_prefix_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PANDA_PREFIX", raising=False)
    result = CliRunner().invoke(main, ["panda", "save", str(tmp_path)])
    assert result.exit_code == 2
    assert "--prefix" in result.output


def test_save_with_a_bad_wiring_file_fails_before_connecting(tmp_path: Path) -> None:
    bad = tmp_path / "cabling.yaml"
    bad.write_text("wiring:\n  seq: 0\n")
    result = CliRunner().invoke(
        main,
        ["panda", "save", str(tmp_path), "--prefix", "NOWHERE:", "--wiring", str(bad)],
    )
    assert result.exit_code == 1
    assert (
        f"{bad}: wiring: PandaWiring.seq: Input should be greater than or equal to 1"
        in (result.output)
    )
