"""Comparisons shared by the storage tests."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import xarray as xr

#: Key of the test servers (alphanumeric, as Tiled requires).
API_KEY = "storagetests"


class DocCollector:
    """Subscribe to a RunEngine to keep every document emitted."""

    def __init__(self) -> None:
        self.docs: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self.docs.append((name, doc))

    def of(self, name: str) -> list[dict[str, Any]]:
        return [doc for n, doc in self.docs if n == name]

    def event_values(self, descriptor_name: str = "primary") -> dict[str, np.ndarray]:
        """Values of every event data key of a stream, in seq_num order."""
        descriptors = {
            d["uid"] for d in self.of("descriptor") if d["name"] == descriptor_name
        }
        events = sorted(
            (e for e in self.of("event") if e["descriptor"] in descriptors),
            key=lambda e: e["seq_num"],
        )
        values: dict[str, list[Any]] = defaultdict(list)
        for event in events:
            for key, value in event["data"].items():
                values[key].append(value)
        return {key: np.asarray(v) for key, v in values.items()}


def assert_runs_equal(run_a: Any, run_b: Any) -> None:
    """Two runs in Tiled hold the same metadata, streams and data."""
    assert dict(run_a.metadata) == dict(run_b.metadata)
    assert sorted(run_a) == sorted(run_b)
    for stream in run_a:
        node_a, node_b = run_a[stream], run_b[stream]
        assert dict(node_a.metadata) == dict(node_b.metadata), stream
        assert sorted(node_a) == sorted(node_b), stream
        xr.testing.assert_identical(node_a.read(), node_b.read())
