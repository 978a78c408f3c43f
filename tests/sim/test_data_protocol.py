"""The data protocol, without sockets: options, header, frames, END.

The encoded bytes are parsed back with the real client's sans-IO
``pandablocks.connections.DataConnection``, so both sides of the wire agree.
"""

from __future__ import annotations

import numpy as np
import pytest
from pandablocks.connections import DataConnection
from pandablocks.responses import EndData, FrameData, ReadyData, StartData

from sim_ioc.panda import capture
from sim_ioc.panda.device import SimulatedPanda
from sim_ioc.panda.protocol.control import ControlParser, Session, respond
from sim_ioc.panda.protocol.data import (
    Options,
    OptionsError,
    encode_frames,
    end,
    header,
)


def test_options() -> None:
    assert Options.parse("XML FRAMED RAW") == Options(scaled=False)
    assert Options.parse("XML FRAMED SCALED ONE_SHOT") == Options(True, True)
    with pytest.raises(OptionsError, match="Unknown data option"):
        Options.parse("XML FRAMED FAST")
    with pytest.raises(OptionsError, match="not supported"):
        Options.parse("ASCII")


def acquire(commands: str, ticks: int) -> list[capture.Event]:
    """Configure, arm and run a simulated PandA; return its capture events."""
    panda = SimulatedPanda()
    events: list[capture.Event] = []
    panda.subscribe(events.append)
    session, parser = Session(), ControlParser()
    for request in parser.feed(commands.encode()):
        assert respond(panda, session, request) == "OK\n", request
    panda.advance(100)
    panda.arm()
    panda.advance(ticks)
    return events


def decode(events: list[capture.Event], scaled: bool) -> list[object]:
    """Encode events as the server would, then parse with the real client."""
    options = Options(scaled=scaled)
    conn = DataConnection()
    conn.connect(scaled)
    wire = b"OK\n"
    plan = None
    for e in events:
        if isinstance(e, capture.Start):
            plan = e.plan
            wire += header(e.plan, options, e.arm_time)
        elif isinstance(e, capture.Frames):
            assert plan is not None
            wire += encode_frames(plan, options, e.frames)
        else:
            wire += end(e.samples, e.reason)
    return list(conn.receive_bytes(wire))


# CLOCK1 every 1000 ticks, 500 high; COUNTER1 counts its edges; PCAP captures
# on each rising edge and gates on the high half.
RAMP = (
    "CLOCK1.PERIOD.UNITS=s\nCLOCK1.PERIOD=8e-06\nCLOCK1.WIDTH=4e-06\n"
    "CLOCK1.ENABLE=PCAP.ACTIVE\nCOUNTER1.ENABLE=PCAP.ACTIVE\nCOUNTER1.TRIG=CLOCK1.OUT\n"
    "COUNTER1.OUT.SCALE=0.5\nCOUNTER1.OUT.OFFSET=10\nCOUNTER1.OUT.UNITS=mm\n"
    "PCAP.ENABLE=ONE\nPCAP.GATE=CLOCK1.OUT\nPCAP.TRIG=CLOCK1.OUT\n"
    "PCAP.TS_TRIG.CAPTURE=Value\nCOUNTER1.OUT.CAPTURE=Min Max Mean\n"
)


@pytest.mark.parametrize("scaled", [False, True])
def test_frames_decode_with_the_real_client(scaled: bool) -> None:
    events = acquire(RAMP, 10_500)
    decoded = decode(events, scaled)
    assert isinstance(decoded[0], ReadyData)
    start = decoded[1]
    assert isinstance(start, StartData)
    names = [f"{f.name}.{f.capture}" for f in start.fields]
    assert "PCAP.TS_TRIG.Value" in names
    assert {"COUNTER1.OUT.Min", "COUNTER1.OUT.Max", "COUNTER1.OUT.Mean"} <= set(names)
    frames = np.concatenate([d.data for d in decoded if isinstance(d, FrameData)])
    # Clock edges at ticks 3, 1003, ... 10003: eleven captures.
    assert len(frames) == 11
    ts = frames["PCAP.TS_TRIG.Value"]
    lo, hi = frames["COUNTER1.OUT.Min"], frames["COUNTER1.OUT.Max"]
    mean = frames["COUNTER1.OUT.Mean"]
    j = np.arange(1, 11)
    # Window j is the gated half-period after edge j-1: the counter reads j-1
    # for one tick (it sees the edge a tick after PCAP's gate), then j.
    if scaled:
        np.testing.assert_allclose(np.diff(ts), 8e-6, rtol=0, atol=1e-12)
        np.testing.assert_allclose(lo[1:], (j - 1) * 0.5 + 10)
        np.testing.assert_allclose(hi[1:], j * 0.5 + 10)
        np.testing.assert_allclose(mean[1:], ((j - 1) + 499 * j) / 500 * 0.5 + 10)
        assert np.isnan(mean[0])  # nothing gated before the first edge
        assert start.fields[names.index("COUNTER1.OUT.Mean")].units == "mm"
    else:
        np.testing.assert_array_equal(np.diff(ts), 1000)
        np.testing.assert_array_equal(lo[1:], j - 1)
        np.testing.assert_array_equal(hi[1:], j)
        # Raw Mean is the sum over gated ticks; the hidden sample count the
        # client divides by arrives as PCAP.SAMPLES.
        np.testing.assert_array_equal(mean[1:], (j - 1) + 499 * j)
        np.testing.assert_array_equal(frames["PCAP.SAMPLES.Value"][1:], 500)
        assert (lo[0], hi[0]) == (2**31 - 1, -(2**31))  # empty window


def test_end_reports_samples_and_reason() -> None:
    events = acquire(RAMP, 10_500)
    assert not isinstance(events[-1], capture.End)  # still armed
    assert end(10, "Disarmed") == b"END 10 Disarmed\n"
    decoded = decode([*events, capture.End(10, "Disarmed")], scaled=True)
    last = decoded[-1]
    assert isinstance(last, EndData)
    assert last.samples == 10
    assert last.reason.value == "Disarmed"
