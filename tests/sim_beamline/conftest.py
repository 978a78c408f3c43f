"""Fixtures of the simulated-beamline tests (the beamline itself is the
session's ``beamline`` fixture, from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from beamline_helpers import connect_motor, panda_send
from ophyd_async.epics.motor import Motor

from panda_flyscan.app.simulated.launcher import SimulatedBeamline


@pytest.fixture
async def motor(beamline: SimulatedBeamline) -> AsyncIterator[Motor]:
    """The stock ophyd-async ``Motor`` on ``<prefix>:M1``, at rest at 0 with
    VELO 5 mm/s, ACCL 0.05 s and limits -100..100 mm, whatever an earlier
    test left."""
    yield await connect_motor(beamline)


@pytest.fixture
async def quiet_ttl(beamline: SimulatedBeamline) -> AsyncIterator[None]:
    """Leave the detector's trigger cable (TTLOUT1) low after the test."""
    yield
    await panda_send(beamline, "TTLOUT1.VAL=ZERO", "BITS.A=0")
