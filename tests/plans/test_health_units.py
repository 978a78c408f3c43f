"""The health judge (pure: samples in, the first fault out), without IOCs."""

from __future__ import annotations

import pytest

from panda_flyscan.plans.errors import (
    CaptureStalled,
    DetectorStalled,
    DiskFull,
    HealthError,
    MotorFault,
    PandaLinkLost,
    WriterFailed,
)
from panda_flyscan.plans.health import (
    DETECTOR_STALL_AFTER,
    LINK_LOST_AFTER,
    MIN_FREE_BYTES,
    MOTOR_STALL_AFTER,
    MSTA_MINUS_LS,
    MSTA_SLIP_STALL,
    ROW_STALL_MARGIN,
    WRITER_STALL_AFTER,
    DetectorSample,
    HealthJudge,
    MotorSample,
    Sample,
)

IOC = "TEST:PANDA"


def judge(**kwargs: object) -> HealthJudge:
    return HealthJudge(IOC, data_directory="/data", frames=100, **kwargs)  # type: ignore[arg-type]


def healthy(t: float, captured: int, **kwargs: object) -> Sample:
    return Sample(
        t,
        ioc_status="CONNECTED",
        writer_status="Capturing",
        received=captured,
        captured=captured,
        free_bytes=10 * MIN_FREE_BYTES,
        **kwargs,  # type: ignore[arg-type]
    )


def first_fault(j: HealthJudge, samples: list[Sample]) -> HealthError | None:
    for s in samples:
        if (fault := j.observe(s)) is not None:
            return fault
    return None


def test_a_healthy_scan_shows_no_fault() -> None:
    j = judge(max_row_gap=0.01)
    j.kicked_off(0.0)
    samples = [healthy(t * 0.5, t * 5) for t in range(21)]
    assert first_fault(j, samples) is None


def test_an_ioc_that_stops_answering_is_lost_after_the_bound() -> None:
    j = judge()
    j.observe(healthy(0.0, 3))
    silent = [Sample(1.0 + 0.5 * i, ioc_answered=False) for i in range(10)]
    fault = None
    for s in silent:
        fault = j.observe(s)
        if fault is not None:
            break
        assert s.t - 1.0 < LINK_LOST_AFTER
    assert isinstance(fault, PandaLinkLost) and not fault.ioc_answers
    assert fault.component == f"{IOC} (IOC)"
    assert "Restart the IOC" in str(fault) and "at least 3" in str(fault)


def test_one_unanswered_read_is_forgiven() -> None:
    j = judge()
    assert j.observe(Sample(0.0, ioc_answered=False)) is None
    assert j.observe(healthy(0.5, 1)) is None
    assert j.observe(Sample(1.0 + LINK_LOST_AFTER - 0.1, ioc_answered=False)) is None


def test_an_ioc_that_lost_its_panda_is_named_at_once() -> None:
    fault = judge().observe(Sample(0.0, ioc_status="DISCONNECTED"))
    assert isinstance(fault, PandaLinkLost) and fault.ioc_answers
    assert "DISCONNECTED" in str(fault) and "(IOC to PandA link)" in fault.component


@pytest.mark.parametrize("status", ["unexpected exception", "Mismatched StartData"])
def test_a_writer_that_gave_up_is_named(status: str) -> None:
    s = healthy(0.0, 5)
    fault = judge().observe(Sample(0.0, writer_status=f"... {status} ...", captured=5))
    assert isinstance(fault, WriterFailed) and status in str(fault)
    assert judge().observe(s) is None


def test_free_space_below_the_floor_stops_the_scan() -> None:
    fault = judge().observe(Sample(0.0, free_bytes=MIN_FREE_BYTES - 1))
    assert isinstance(fault, DiskFull)
    assert "/data" in str(fault) and "Free space" in str(fault)


def test_rows_received_but_not_written_mean_a_dead_writer() -> None:
    j = judge()
    t, fault = 0.0, None
    j.observe(Sample(t, received=10, captured=10))
    while fault is None and t < 10:
        t += 0.5
        fault = j.observe(Sample(t, received=10 + int(t * 10), captured=10))
    assert isinstance(fault, WriterFailed)
    assert WRITER_STALL_AFTER <= t <= WRITER_STALL_AFTER + 0.5
    # Nothing pending: not the writer's fault, however long it stands.
    j2 = judge()
    assert (
        first_fault(j2, [Sample(i, received=10, captured=10) for i in range(9)]) is None
    )


def test_rows_pending_after_a_long_quiet_spell_are_not_a_dead_writer() -> None:
    """A pause (or a gap in the triggers) of 8 s, then rows received a
    moment before they are written: the writer is judged from when they
    were first seen waiting, not from its last write before the pause."""
    j = judge()
    j.kicked_off(0.0)
    quiet = [healthy(0.5 * i, 40) for i in range(17)]  # 0 .. 8 s, all written
    assert first_fault(j, quiet) is None
    # Resumed: 3 rows in, not yet written; written 0.5 s later.
    assert j.observe(Sample(8.5, received=43, captured=40)) is None
    assert j.observe(Sample(9.0, received=50, captured=43)) is None
    # Still the same rows waiting 3 s on, with no write: a dead writer.
    fault = first_fault(
        j, [Sample(9.0 + 0.5 * i, received=50, captured=43) for i in range(1, 8)]
    )
    assert isinstance(fault, WriterFailed)
    assert "7 received rows wait" in str(fault)


@pytest.mark.parametrize(
    ("motor", "words"),
    [
        (MotorSample(done=False, readback=2.5, high_limit_switch=True), "high limit"),
        (MotorSample(done=False, readback=-1, msta=MSTA_MINUS_LS), "low limit"),
        (MotorSample(done=True, readback=0, msta=MSTA_SLIP_STALL), "slip/stall"),
    ],
)
def test_a_motor_at_a_limit_or_in_fault_is_named(
    motor: MotorSample, words: str
) -> None:
    fault = judge().observe(Sample(0.0, motors={"x": motor}))
    assert isinstance(fault, MotorFault) and fault.component == "motor x"
    assert words in str(fault)


def test_a_motor_told_to_move_that_stands_still_has_stalled() -> None:
    j = judge()
    moving = [
        Sample(0.5 * i, motors={"x": MotorSample(done=False, readback=0.1 * i)})
        for i in range(10)
    ]
    assert first_fault(j, moving) is None
    stuck = [
        Sample(5 + 0.5 * i, motors={"x": MotorSample(done=False, readback=0.9)})
        for i in range(10)
    ]
    fault = first_fault(j, stuck)
    assert isinstance(fault, MotorFault) and "stalled" in str(fault)
    assert f"{MOTOR_STALL_AFTER:.1f} s" in str(fault)
    # Standing still while done (between lines) is not a stall.
    idle = [
        Sample(0.5 * i, motors={"x": MotorSample(done=True, readback=1)})
        for i in range(20)
    ]
    assert first_fault(judge(), idle) is None


def test_a_detector_behind_the_panda_with_no_new_frame_has_stopped() -> None:
    j = judge()
    j.kicked_off(0.0)
    period = 0.1
    keeping_up = [
        healthy(0.5 * i, 5 * i, detectors={"det": DetectorSample(5 * i, period)})
        for i in range(6)
    ]
    assert first_fault(j, keeping_up) is None
    stopped = [
        healthy(3 + 0.5 * i, 30 + 5 * i, detectors={"det": DetectorSample(25, period)})
        for i in range(12)
    ]
    t, fault = 3.0, None
    for s in stopped:
        t = s.t
        if (fault := j.observe(s)) is not None:
            break
    assert isinstance(fault, DetectorStalled) and "wrote 25" in str(fault)
    # From its last frame (t=2.5) the allowance, within one sample.
    allowed = DETECTOR_STALL_AFTER + 2 * period
    assert 2.5 + allowed <= t < 2.5 + allowed + 0.5
    assert fault.component == "detector det"


def test_no_row_for_longer_than_the_plan_allows_is_a_stall() -> None:
    j = judge(max_row_gap=1.0)
    j.observe(healthy(0.0, 0))
    j.kicked_off(0.0)
    limit = 1.0 + ROW_STALL_MARGIN
    t, fault = 0.0, None
    while fault is None and t < 10:
        t += 0.5
        fault = j.observe(healthy(t, 0))
    assert isinstance(fault, CaptureStalled) and "0 of 100" in str(fault)
    assert limit <= t < limit + 0.5
    # Before kickoff, or with every frame in, silence is expected.
    early = judge(max_row_gap=1.0)
    assert first_fault(early, [healthy(i, 0) for i in range(10)]) is None
    done = judge(max_row_gap=1.0)
    done.kicked_off(0.0)
    assert first_fault(done, [healthy(i, 100) for i in range(10)]) is None


def test_an_ioc_restarted_mid_scan_is_named_even_when_it_answers_again() -> None:
    # The supervisor's restart (~3.5 s) can beat the link's bound: the new
    # IOC answers, its writer not capturing, its counter back at 0.
    j = judge(max_row_gap=0.01)
    j.observe(healthy(0.0, 0, capturing=True))
    j.kicked_off(0.0)
    assert j.observe(healthy(0.5, 40, capturing=True)) is None
    assert j.observe(Sample(1.0, ioc_answered=False)) is None
    fault = j.observe(healthy(2.5, 0, capturing=False))
    assert isinstance(fault, PandaLinkLost) and fault.ioc_answers
    assert "restarted during the scan" in str(fault) and "at least 40" in str(fault)


def test_an_ioc_restarted_so_fast_that_no_read_failed_is_named() -> None:
    # PVA reads wait for the new IOC: no unanswered sample, but the count
    # that rose during this scan is back at 0 with rows pending.
    j = judge(max_row_gap=0.01)
    j.kicked_off(0.0)
    assert j.observe(healthy(0.5, 10)) is None
    assert j.observe(healthy(1.0, 334)) is None
    fault = j.observe(Sample(4.0, ioc_status="CONNECTED", received=334, captured=0))
    assert isinstance(fault, PandaLinkLost) and fault.restarted
    assert "counts rows from 0 again" in str(fault) and "at least 334" in str(fault)


def test_a_stale_count_dropping_as_the_capture_starts_is_fine() -> None:
    j = judge()
    j.kicked_off(0.0)
    # The previous scan's count, then this capture's reset to 0.
    assert j.observe(healthy(0.5, 5000)) is None
    assert j.observe(healthy(1.0, 0)) is None
    assert j.observe(healthy(1.5, 20)) is None
    assert j.observe(healthy(2.0, 30)) is None


def test_a_writer_that_stops_capturing_after_the_last_row_is_fine() -> None:
    j = judge()
    j.observe(healthy(0.0, 0, capturing=True))
    j.kicked_off(0.0)
    assert j.observe(healthy(0.5, 100, capturing=True)) is None
    assert j.observe(healthy(1.0, 100, capturing=False)) is None
