"""``*SIM.SIGNAL.FMC_IN<ch>=...``: choosing FMC_IN signals on the control port,
parsed and applied without sockets."""

from __future__ import annotations

import math

import pytest

from sim_ioc.panda.device import SimulatedPanda
from sim_ioc.panda.fields import FieldError
from sim_ioc.panda.models.fmc import (
    AxisSignal,
    Constant,
    FmcIn,
    Noise,
    Ramp,
    Sine,
)
from sim_ioc.panda.protocol.control import ControlParser, Session, respond
from sim_ioc.panda.world_control import fmc_channel, parse_signal
from sim_ioc.world import World


def send(panda: SimulatedPanda, line: str) -> str:
    """One control-port line, answered as the server would."""
    [request] = ControlParser().feed(f"{line}\n".encode())
    return respond(panda, Session(), request)


def fmc(panda: SimulatedPanda) -> FmcIn:
    block = panda.engine.blocks["FMC_IN"]
    assert isinstance(block, FmcIn)
    return block


WORLD = World()
WORLD.axis("INENC1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("constant", Constant(0.0)),
        ("constant 1.5", Constant(1.5)),
        ("CONSTANT value=-2e-3", Constant(-0.002)),
        ("sine", Sine(1.0, 1000.0, 0.0, 0.0)),
        ("sine 2 1000", Sine(2.0, 1000.0)),
        (
            "sine amplitude=2 frequency=1000 offset=0.5 phase=1",
            Sine(amplitude=2.0, frequency=1000.0, phase=1.0, offset=0.5),
        ),
        ("sine 3 frequency=50", Sine(3.0, 50.0)),
        ("noise sigma=0.1 seed=7", Noise(sigma=0.1, mean=0.0, seed=7)),
        ("noise 0.2 -1 3", Noise(0.2, -1.0, 3)),
        ("ramp start=1 slope=-2 t0=500", Ramp(1.0, -2.0, 500)),
        ("ramp -1 2000 0.001 0", Ramp(-1.0, 2000.0, 0, 0.001)),
    ],
)
def test_signals_parse_to_the_documented_models(text: str, expected: object) -> None:
    assert parse_signal(text, WORLD, now=1) == expected


def test_a_ramp_starts_on_the_first_conversion_after_the_command() -> None:
    # Conversions are on multiples of 125 ticks.
    assert parse_signal("ramp", WORLD, now=1001) == Ramp(0.0, 1.0, t0=1125)
    assert parse_signal("ramp", WORLD, now=1125) == Ramp(0.0, 1.0, t0=1125)
    assert parse_signal("ramp 0 1 t0=7", WORLD, now=1001) == Ramp(0.0, 1.0, t0=7)


def test_axis_signal_follows_the_named_axis() -> None:
    signal = parse_signal("axis INENC1 gain=0.001 offset=-1", WORLD, now=1)
    assert isinstance(signal, AxisSignal)
    assert signal.axis is WORLD.axes["INENC1"]
    assert (signal.gain, signal.offset, signal.func) == (0.001, -1.0, None)
    WORLD.axes["INENC1"].set_position(0, 2500.0)
    assert signal.volts(10) == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "needs a kind"),
        ("square 1", "Unknown signal 'square'"),
        ("sine freq=3", "no parameter 'freq'"),
        ("sine 1 2 3 4 5", "at most 4 values"),
        ("sine amplitude=1 2", "Positional value '2' after name=value"),
        ("sine 1 amplitude=2", "amplitude given twice"),
        ("sine amplitude=", "amplitude needs a value"),
        ("sine amplitude=two", "Number 'two' not valid"),
        ("constant nan", "finite"),
        ("constant inf", "finite"),
        ("noise sigma=-1", "sigma must not be negative"),
        ("noise seed=1.5", "seed must be an integer"),
        ("ramp period=0", "period must be positive"),
        ("ramp t0=-5", "t0 must not be negative"),
        ("ramp t0=1e3", "t0 must be an integer"),
        ("axis", "axis needs an axis name"),
        ("axis INENC9", "No such axis 'INENC9'"),
    ],
)
def test_bad_signals_are_refused_saying_why(text: str, message: str) -> None:
    with pytest.raises(FieldError, match=message):
        parse_signal(text, WORLD, now=1)


@pytest.mark.parametrize("name", ["FMC_IN0", "FMC_IN9", "FMC_IN", "FMC_INx", "INENC1"])
def test_only_the_eight_adc_channels_can_be_driven(name: str) -> None:
    with pytest.raises(FieldError, match=r"drives FMC_IN1\.\.FMC_IN8"):
        fmc_channel(name)


def test_the_control_port_sets_a_channel_and_the_adc_converts_it() -> None:
    panda = SimulatedPanda()
    panda.advance(1000)
    assert send(panda, "*SIM.SIGNAL.FMC_IN3=constant 1.25") == "OK\n"
    assert send(panda, "*SIM.SIGNAL.FMC_IN5=sine 2 1000 offset=0.5") == "OK\n"
    assert fmc(panda).signals[2] == Constant(1.25)
    assert fmc(panda).signals[4] == Sine(2.0, 1000.0, 0.0, 0.5)
    others = (*fmc(panda).signals[:2], *fmc(panda).signals[5:])
    assert set(others) == {Constant(0.0)}
    # The block is woken without any other event: the next conversion (tick
    # 1125) reads the new voltages, and FMC_IN.VAL3 reads back in volts.
    panda.advance(1250)
    full = 2**17
    code = math.floor(1.25 / 10 * full + 0.5)
    assert send(panda, "FMC_IN.VAL3?") == f"OK ={code * 2**14}\n"
    t = 1125 / 125e6
    sine = 0.5 + 2 * math.sin(2 * math.pi * 1000 * t)
    assert send(panda, "FMC_IN.VAL5?") == (
        f"OK ={math.floor(sine / 10 * full + 0.5) * 2**14}\n"
    )


def test_the_control_port_answers_err_and_changes_nothing() -> None:
    panda = SimulatedPanda()
    before = fmc(panda).signals
    for line, message in [
        ("*SIM.SIGNAL.FMC_IN1=sine freq=3", "no parameter 'freq'"),
        ("*SIM.SIGNAL.FMC_IN9=sine", "FMC_IN1..FMC_IN8"),
        ("*SIM.SIGNAL=sine", "needs a name, e.g. *SIM.SIGNAL.FMC_IN1"),
        ("*SIM.SIGNAL.FMC_IN2=", "needs a kind"),
        ("*SIM.WIGGLE.INENC1=3", "Unknown command *SIM.WIGGLE"),
    ]:
        reply = send(panda, line)
        assert reply.startswith("ERR ") and message in reply, (line, reply)
    assert fmc(panda).signals == before
    assert "WIGGLE" not in "".join(panda.world.axes)
    # The axis commands still work as before.
    assert send(panda, "*SIM.POSITION.INENC2=42") == "OK\n"
    panda.advance(panda.now + 10)
    assert send(panda, "INENC2.VAL?") == "OK =42\n"
