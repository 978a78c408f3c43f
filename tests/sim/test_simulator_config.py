"""The simulator's configuration with three motors and two detectors: JSON
round trips, M1's flat fields, and the command lines that build it (no
servers started)."""

from __future__ import annotations

import argparse

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from panda_flyscan.app.cli import main
from panda_flyscan.app.cli.sim import _simulator_config
from sim_ioc.config import (
    MotorSettings,
    SimulatorConfig,
    add_arguments,
    config_from_arguments,
)
from sim_ioc.detector import DetectorConfig
from sim_ioc.motor import MotorConfig


def test_three_motors_and_two_detectors_by_default() -> None:
    config = SimulatorConfig()
    assert [m.axis for m in config.motors] == ["INENC1", "INENC2", "INENC3"]
    assert config.motor_configs() == tuple(
        MotorConfig(axis=f"INENC{n}") for n in (1, 2, 3)
    )
    assert config.motor_config() == config.motor_configs()[0] == MotorConfig()
    assert config.detector_config() == DetectorConfig()
    assert config.detector2_config() == DetectorConfig(
        ttlout=2, readout_time=5e-3, ttlin=0
    )


def test_a_custom_configuration_round_trips_as_json() -> None:
    config = SimulatorConfig(
        motors=(
            MotorSettings(resolution=2000.0, offset=12.0),
            MotorSettings(axis="INENC2", velocity=0.5, low_limit=-3, high_limit=4),
            MotorSettings(axis="INENC4", max_velocity=2.0, acceleration_time=0.2),
        ),
        detector2_readout_time=0.02,
        detector2_ttlin=3,
        detector2_ttlin_signal="busy",
    )
    again = SimulatorConfig.model_validate_json(config.model_dump_json())
    assert again == config
    # The flat fields read M1.
    assert (again.motor_axis, again.encoder_resolution, again.encoder_offset) == (
        "INENC1",
        2000.0,
        12.0,
    )
    y, z = again.motor_configs()[1:]
    assert (y.velocity, y.low_limit, y.high_limit) == (0.5, -3.0, 4.0)
    assert (z.axis, z.max_velocity, z.acceleration_time) == ("INENC4", 2.0, 0.2)
    det2 = again.detector2_config()
    assert (det2.readout_time, det2.ttlin, det2.ttlin_signal) == (0.02, 3, "busy")


def test_m1_flat_fields_override_the_first_motor() -> None:
    config = SimulatorConfig(encoder_resolution=500.0, motor_axis="INENC4")
    assert config.motors[0].resolution == 500.0 and config.motors[0].axis == "INENC4"
    assert config.motor_config() == MotorConfig(axis="INENC4", resolution=500.0)
    # Overriding a configuration: a new `motors` replaces M1's flat fields too,
    # a flat field given with it wins.
    custom = config.override({"motors": '[{"resolution": 250}, {}]'})
    assert custom.encoder_resolution == 250.0 and len(custom.motors) == 2
    assert custom.motors[1].axis == "INENC2"  # an axis left out is numbered
    flat = custom.override({"encoder_offset": 7.0})
    assert flat.motors[0].offset == 7.0 and flat.motors[0].resolution == 250.0


@pytest.mark.parametrize(
    ("given", "field", "why"),
    [
        ({"motors": [{"axis": "INENC1"}, {"axis": "INENC1"}]}, "motors", "INENC1"),
        ({"motors": [{"resolution": 0}]}, "motors", "must not be 0"),
        ({"motors": [{"low_limit": 2, "high_limit": 1}]}, "motors", "low_limit"),
        ({"motors": "[{"}, "motors", "not a JSON list"),
        ({"motors": []}, "motors", "at least 1"),
        ({"detector2_ttlin": 1}, "detector2_ttlin", "TTLIN1 already"),
        ({"detector2_ttlout": 11}, "detector2_ttlout", "less than or equal"),
    ],
)
def test_bad_motor_or_detector_settings_are_refused(
    given: dict[str, object], field: str, why: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        SimulatorConfig.model_validate(given)
    (error, *_) = caught.value.errors()
    assert error["loc"][0] == field
    assert why in str(caught.value)


def test_python_m_sim_ioc_reaches_nested_settings_through_its_options() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = SimulatorConfig(motors=(MotorSettings(velocity=3.0),))
    args = parser.parse_args(
        [
            "--config-json",
            base.model_dump_json(),
            "--encoder-resolution",
            "400",
            "--detector2-readout-time",
            "0.01",
        ]
    )
    config = config_from_arguments(parser, args)
    assert config.motors[0].velocity == 3.0  # from the JSON
    assert config.motors[0].resolution == 400.0  # the flat option over it
    assert config.detector2_readout_time == 0.01
    args = parser.parse_args(["--motors", '[{"high_limit": 9}, {"axis": "INENC3"}]'])
    config = config_from_arguments(parser, args)
    assert [m.axis for m in config.motors] == ["INENC1", "INENC3"]
    assert config.motors[0].high_limit == 9.0


def test_panda_flyscan_sim_shows_and_checks_the_new_options() -> None:
    result = CliRunner().invoke(main, ["sim", "--help"])
    assert result.exit_code == 0
    for option in (
        "--config-json",
        "--motors",
        "--detector2-readout-time",
        "--detector2-ttlin",
        "--detector2-ttlin-signal",
    ):
        assert option in result.output
    assert "PREFIX:M1, M2, M3" in result.output and "PREFIX:DET2:" in result.output
    # Refused before anything starts, naming the option.
    bad = '[{"axis": "INENC2"}, {"axis": "INENC2"}]'
    result = CliRunner().invoke(main, ["sim", "--motors", bad])
    assert result.exit_code == 2
    assert "--motors" in result.output and "INENC2" in result.output
    assert "Starting" not in result.output
    result = CliRunner().invoke(main, ["sim", "--config-json", '{"motors": 3}'])
    assert result.exit_code == 2 and "--config-json (motors)" in result.output


def test_panda_flyscan_sim_builds_the_config_from_json_and_options() -> None:
    json_text = SimulatorConfig(
        motors=(MotorSettings(), MotorSettings(axis="INENC2", high_limit=2.0))
    ).model_dump_json()
    config = _simulator_config({"detector2_readout_time": "0.002"}, json_text)
    assert config.motors[1].high_limit == 2.0
    assert config.detector2_readout_time == 0.002
