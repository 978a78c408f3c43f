"""The block models reproduce the upstream tick-level timing vectors.

Vectors live in ``../shared/pandablocks-fpga/`` (reference data beside the
repository, never shipped with it); without that folder these tests skip.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sim_ioc.panda.conformance import Outcome, parse_vector_file, run_scenario
from sim_ioc.panda.models import MODELS

VECTORS = Path(__file__).resolve().parents[3] / "shared" / "pandablocks-fpga"

#: Blocks whose models this project claims to be faithful; every scenario of
#: their vectors must pass (or be listed in the model's UNMODELLED with a reason).
CLAIMED = {"PCAP", "SEQ", "PCOMP", "PULSE", "CLOCK", "COUNTER", "BITS"}


def _cases() -> list[object]:
    if not VECTORS.is_dir():
        return [
            pytest.param(
                None,
                None,
                marks=pytest.mark.skip(
                    reason=f"timing vectors not found at {VECTORS} "
                    "(../shared/pandablocks-fpga is reference data outside the repo)"
                ),
            )
        ]
    cases = []
    for path in sorted(VECTORS.glob("*.timing.ini")):
        vectors = parse_vector_file(path)
        if vectors.block not in MODELS and vectors.block not in CLAIMED:
            continue
        for scenario in vectors.scenarios:
            cases.append(
                pytest.param(vectors, scenario, id=f"{path.stem}:{scenario.name}")
            )
    return cases


@pytest.mark.parametrize(("vectors", "scenario"), _cases())
def test_timing_vector(vectors, scenario) -> None:  # type: ignore[no-untyped-def]
    # DMA table memory (<address>.txt), where shared/ carries it beside the vectors.
    result = run_scenario(vectors, scenario, tables=VECTORS)
    if result.outcome is Outcome.SKIPPED:
        assert vectors.block not in MODELS or "no model" not in result.detail
        if vectors.block in CLAIMED and vectors.block not in MODELS:
            pytest.fail(f"{vectors.block} is claimed but has no model")
        pytest.skip(result.detail)
    assert result.outcome is Outcome.PASSED, result.detail


def test_cli_runner_prints_total(capsys: pytest.CaptureFixture[str]) -> None:
    from sim_ioc.panda.conformance import main

    if not VECTORS.is_dir():
        pytest.skip(f"timing vectors not found at {VECTORS}")
    code = main([str(VECTORS / "bits.timing.ini")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    # The whole line: "N passed, 0 failed[, K skipped]" with N >= 1 (a suffix
    # test would also accept "10 failed").
    assert re.fullmatch(r"[1-9]\d* passed, 0 failed(, \d+ skipped)?", last), last
    assert code == 0
