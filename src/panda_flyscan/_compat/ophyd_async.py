"""ophyd-async's private API: the data logics of a ``StandardDetector``.

Candidate upstream issue: ``StandardDetector.add_detector_logics`` keeps the
``DetectorDataLogic`` objects (the HDF5 writer, its path provider) in
``_data_logics``, with no public way to read them back. The plans need them
to ask each writer, before the run opens, whether it can write where its
path provider points (the question ``prepare`` asks once the run is open).
A public read-only ``StandardDetector.data_logics``, or a public hook on
``DetectorDataLogic`` that checks the data directory without preparing,
would remove the need.
"""

from __future__ import annotations

from collections.abc import Sequence

from ophyd_async.core import DetectorDataLogic, StandardDetector

from . import require

require("ophyd-async", "~=0.21.3", uses="StandardDetector._data_logics")

__all__ = ["detector_data_logics"]


def detector_data_logics(detector: StandardDetector) -> Sequence[DetectorDataLogic]:
    """The data logics added to ``detector`` (``add_detector_logics``), in order.

    Would be unnecessary with a public ``StandardDetector.data_logics``.
    """
    return tuple(detector._data_logics)
