"""Every bad argument is a clear error raised before anything is written,
armed or moved: no run, no file, PCAP disarmed, the PandA's wiring untouched,
the motor where it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ophyd_async.core import (
    DetectorDataLogic,
    DetectorTriggerLogic,
    SignalDict,
    StandardDetector,
    TriggerInfo,
)

from panda_flyscan.devices import Capture, CaptureError, PandaWiring, capture_settings
from panda_flyscan.plans import (
    MAX_FRAMES,
    PlanArgumentError,
    async_scan,
    position_scan,
    time_scan,
)

pytestmark = pytest.mark.ioc


class _EdgeTriggerLogic(DetectorTriggerLogic):
    """Edge triggering with a 1 ms dead time; arming it fails the test."""

    def get_deadtime(self, config_values: SignalDict) -> float:
        return 1e-3

    async def prepare_edge(self, num: int, livetime: float):
        raise AssertionError("the detector was armed")


class _InternalOnlyLogic(DetectorTriggerLogic):
    async def prepare_internal(self, num: int, livetime: float, deadtime: float):
        raise AssertionError("the detector was armed")

    async def default_trigger_info(self) -> TriggerInfo:
        return TriggerInfo()


class _NoData(DetectorDataLogic):
    pass


class _Detector(StandardDetector):
    """Only what the plans' checks read (triggers, dead time); never armed."""

    def __init__(self, logic: DetectorTriggerLogic, name: str) -> None:
        self.add_detector_logics(logic, _NoData())
        super().__init__(name=name)


SLOW_DET = _Detector(_EdgeTriggerLogic(), "slowdet")
INTERNAL_DET = _Detector(_InternalOnlyLogic(), "freedet")


def _wired(*names: str) -> PandaWiring:
    from panda_flyscan.devices import DetectorWiring, EncoderWiring

    return PandaWiring(
        detectors=tuple(DetectorWiring(n, ttlout=i + 1) for i, n in enumerate(names)),
        encoders=(EncoderWiring("x", inenc=1),),
    )


PlanFactory = Callable[[Any], Any]

CASES: dict[str, tuple[PlanFactory, str]] = {
    # time-based
    "period < exposure": (
        lambda bl: time_scan(bl.panda, 10, 1e-3, 2e-3),
        r"period 0.001 s is not longer than exposure 0.002 s",
    ),
    "period == exposure": (
        lambda bl: time_scan(bl.panda, 10, 1e-3, 1e-3),
        r"at least one 8 ns tick of dead time",
    ),
    "period < exposure + detector dead time": (
        lambda bl: time_scan(
            bl.panda, 10, 1e-3, 0.5e-3, detectors=[SLOW_DET], wiring=_wired("slowdet")
        ),
        r"period 0.001 s is shorter than exposure 0.0005 s \+ detector slowdet "
        r"dead time 0.001 s",
    ),
    "zero frames": (
        lambda bl: time_scan(bl.panda, 0, 1e-3),
        r"frames must be at least 1",
    ),
    "negative frames": (
        lambda bl: time_scan(bl.panda, -5, 1e-3),
        r"frames must be at least 1, got -5",
    ),
    "fractional frames": (
        lambda bl: time_scan(bl.panda, 2.5, 1e-3),  # type: ignore[arg-type]
        r"frames must be a whole number",
    ),
    "negative period": (
        lambda bl: time_scan(bl.panda, 5, -1.0),
        r"period must be positive",
    ),
    "more frames than the SEQ table": (
        lambda bl: time_scan(bl.panda, MAX_FRAMES + 1, 1e-3),
        r"more than one SEQ table can time",
    ),
    "detector not wired": (
        lambda bl: time_scan(bl.panda, 10, 1e-3, detectors=[SLOW_DET]),
        r"detector 'slowdet' is not in the PandA wiring",
    ),
    "detector without external trigger": (
        lambda bl: time_scan(
            bl.panda, 10, 1e-3, detectors=[INTERNAL_DET], wiring=_wired("freedet")
        ),
        r"freedet supports \['INTERNAL'\]; this plan needs EXTERNAL_LEVEL or",
    ),
    # position-based
    "start == stop": (
        lambda bl: position_scan(bl.panda, bl.motor("x"), 1.0, 1.0, 11),
        r"start and stop are both 1.0",
    ),
    "zero points": (
        lambda bl: position_scan(bl.panda, bl.motor("x"), 0, 1, 0),
        r"num must be at least 1",
    ),
    "one point": (
        lambda bl: position_scan(bl.panda, bl.motor("x"), 0, 1, 1),
        r"num must be at least 2",
    ),
    "velocity above maximum": (
        lambda bl: position_scan(bl.panda, bl.motor("x"), 0, 1, 11, velocity=100),
        r"velocity 100 mm/s is above x's maximum 50 mm/s",
    ),
    "more points than PCOMP can take": (
        lambda bl: position_scan(bl.panda, bl.motor("x"), 0, 0.01, 11),
        r"PCOMP needs at least 2 counts between points: at most 6 points",
    ),
    "points not whole counts apart": (
        lambda bl: position_scan(bl.panda, bl.motor("x"), 0, 1, 4),
        r"333.333 encoder counts apart .* \(e.g. stop=0.999\)",
    ),
    "exposure longer than the point spacing": (
        lambda bl: position_scan(
            bl.panda, bl.motor("x"), 0, 1, 11, velocity=10, exposure=0.02
        ),
        r"exposure 0.02 s is not shorter than the 0.01 s between points",
    ),
    "motor without encoder": (
        lambda bl: position_scan(
            bl.panda, bl.motor("x"), 0, 1, 11, wiring=PandaWiring()
        ),
        r"motor 'x' has no encoder in the PandA wiring",
    ),
    # asynchronous
    "no duration and no motor": (lambda bl: async_scan(bl.panda), r"pass duration="),
    "duration shorter than the motion": (
        lambda bl: async_scan(
            bl.panda, 1.0, motor=bl.motor("x"), start=0, stop=10, velocity=1
        ),
        r"duration 1 s is shorter than the motion \(10.2 s",
    ),
    "async start == stop": (
        lambda bl: async_scan(bl.panda, 1.0, motor=bl.motor("x"), start=2, stop=2),
        r"start and stop are both 2.0",
    ),
    "free-running detector without frame period": (
        lambda bl: async_scan(bl.panda, 1.0, detectors=[INTERNAL_DET]),
        r"pass their frame_period=",
    ),
    # captures
    "invalid capture mode": (
        lambda bl: time_scan(
            bl.panda, 10, 1e-3, captures=[Capture("INENC1.VAL", "x", "Min Max")]
        ),
        r"capture mode 'Min Max' is not supported .* use one of Value, Diff",
    ),
    "mode the field does not offer": (
        lambda bl: time_scan(
            bl.panda, 10, 1e-3, captures=[Capture("PCAP.TS_TRIG", "t", "Mean")]
        ),
        r"PCAP.TS_TRIG cannot be captured as 'Mean'; it offers Value",
    ),
    "unknown block": (
        lambda bl: time_scan(bl.panda, 10, 1e-3, captures=[Capture("INENC9.VAL", "y")]),
        r"INENC 9 does not exist: this PandA has INENC1, INENC2, INENC3, INENC4",
    ),
    "unknown field": (
        lambda bl: time_scan(
            bl.panda, 10, 1e-3, captures=[Capture("COUNTER1.NOPE", "n")]
        ),
        r"COUNTER1 has no capturable field NOPE; its capturable fields are OUT",
    ),
    "no dataset name": (
        lambda bl: time_scan(bl.panda, 10, 1e-3, captures=[Capture("INENC1.VAL", "")]),
        r"dataset name '' is not valid",
    ),
    "dataset name Tiled would hide": (
        lambda bl: time_scan(
            bl.panda, 10, 1e-3, captures=[Capture("INENC1.VAL", "ts_x")]
        ),
        r"reads data keys starting with 'ts_' as timestamps",
    ),
}


def _state(env: Any) -> dict[str, Any]:
    bl = env.beamline
    panda = bl.panda
    return {
        "pcap": env.run(panda.pcap.arm.get_value()),
        "pcap.trig": env.run(panda.pcap.trig.get_value()),
        "seq1": env.run(panda.seq[1].enable.get_value()),
        "pcomp1": env.run(panda.pcomp[1].enable.get_value()),
        "inenc2 capture": env.run(panda.inenc[2].val_capture.get_value()),
        "x": env.run(bl.motor("x").user_readback.get_value()),
    }


@pytest.fixture
def untouched(flyscan):
    """Sentinels the plans would change if they wrote anything; compared after."""
    panda = flyscan.beamline.panda
    flyscan.set(panda.pcap.trig, "BITS.OUTD")
    flyscan.set(panda.inenc[2].val_capture, "Max")
    before = (_state(flyscan), flyscan.files())
    yield flyscan
    assert (_state(flyscan), flyscan.files()) == before
    assert before[0]["pcap"] is False
    assert flyscan.of("start") == []
    flyscan.set(panda.inenc[2].val_capture, "No")


@pytest.mark.parametrize("case", list(CASES))
def test_bad_argument_is_refused_before_anything_happens(untouched, case) -> None:
    make_plan, message = CASES[case]
    with pytest.raises(PlanArgumentError, match=message):
        untouched.RE(make_plan(untouched.beamline))


def test_capture_api_refuses_an_empty_declaration(flyscan) -> None:
    with pytest.raises(CaptureError, match="nothing to capture"):
        flyscan.run(capture_settings(flyscan.beamline.panda, []))


def test_run_up_outside_the_motor_limits_is_refused(untouched) -> None:
    x = untouched.beamline.motor("x")
    untouched.set(x.low_limit_travel, -1.0)
    untouched.set(x.high_limit_travel, 10.0)
    try:
        # The run-down of a flight to 10 mm at 20 mm/s ends at 11 mm.
        with pytest.raises(PlanArgumentError, match=r"x cannot fly from 0.0 to 10.0"):
            untouched.RE(
                position_scan(untouched.beamline.panda, x, 0, 10, 11, velocity=20)
            )
    finally:
        untouched.set(x.low_limit_travel, 0.0)
        untouched.set(x.high_limit_travel, 0.0)
