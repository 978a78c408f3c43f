"""The plans the queue server offers: the library's, with JSON arguments.

A queue-server client sends a plan as its name and JSON parameters. Devices
travel as their names (``"panda"``, ``"x"``, ``["det"]``): each device
parameter is annotated (bluesky-queueserver's ``parameter_annotation_decorator``)
with the names of this beamline's devices of its kind, so the queue server
refuses any other name at submission and replaces each name by its device
before the plan runs. The type hints (bluesky's ``Readable``, ``Movable``)
say the same for a reader and for a beamline without such devices. A scanspec spec
travels serialised (``Spec.serialize()``, a dict, or that dict as a JSON
string) with motor names as its axes; :func:`deserialize_spec` turns it back
into a spec over this beamline's motors.

No ``from __future__ import annotations`` here: the queue server reads the
annotations with ``inspect.signature`` and needs them as objects, not strings.
"""

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bluesky.protocols import Movable, Readable
from bluesky.utils import MsgGenerator
from bluesky_queueserver import parameter_annotation_decorator
from ophyd_async.core import StandardDetector
from pydantic import ValidationError
from scanspec.specs import Spec

from ... import plans
from ...devices import Beamline, FlyscanPanda, PandaControl
from ...plans import PlanArgumentError

__all__ = ["deserialize_spec", "queue_plans"]


def deserialize_spec(spec: Mapping[str, Any] | str, motors: Mapping[str, Any]) -> Spec:
    """A serialised scanspec spec over motor names -> the spec over ``motors``.

    ``spec`` is what ``Spec.serialize()`` returns (or that as JSON), its axes
    the motors' names, e.g. from
    ``Fly(0.01 @ (Line("y", 0, 1, 3) * ~Line("x", 0, 2, 5))).serialize()``.
    Raises :class:`PlanArgumentError` naming what is wrong: not JSON, not a
    spec, or an axis that is not one of ``motors``.
    """
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as err:
            raise PlanArgumentError(f"spec is not JSON: {err}") from err
    if not isinstance(spec, Mapping):
        raise PlanArgumentError(
            f"spec must be a serialised scanspec Spec (a dict), not {spec!r}"
        )
    try:
        named = Spec.deserialize(dict(spec))
    except (ValidationError, TypeError, ValueError) as err:
        raise PlanArgumentError(f"spec is not a scanspec Spec: {err}") from err
    unknown = [axis for axis in named.axes() if axis not in motors]
    if unknown:
        raise PlanArgumentError(
            f"spec axes {unknown} are not motors of this beamline "
            f"(it has {sorted(motors)})"
        )
    # Validated over names; the same dict again with each axis name replaced by
    # its motor (scanspec's axes are of any type).
    return Spec.deserialize(_with_motors(dict(spec), motors))


def _with_motors(value: Any, motors: Mapping[str, Any]) -> Any:
    if isinstance(value, dict):
        return {
            key: motors[item]
            if key.endswith("axis") and isinstance(item, str)
            else _with_motors(item, motors)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_with_motors(item, motors) for item in value]
    return value


def _panda(device: Any) -> FlyscanPanda:
    if not isinstance(device, FlyscanPanda):
        raise PlanArgumentError(f"panda must be the PandA, not {device!r}")
    return device


def _detectors(devices: Sequence[Any]) -> list[StandardDetector]:
    wrong = [d for d in devices if not isinstance(d, StandardDetector)]
    if wrong:
        raise PlanArgumentError(f"not area detectors: {wrong!r}")
    return list(devices)


Plan = Callable[..., MsgGenerator[Any]]


def _device_annotations(beamline: Beamline) -> Callable[..., Callable[[Plan], Plan]]:
    """A decorator factory: ``annotate("panda", "detectors")`` gives those
    parameters the names of the beamline's PandA / detectors (motors for
    ``motor``; ``optional motor``: a motor or None) as their only values."""
    kinds = {
        "panda": ("PandA", [beamline.panda.name]),
        "motor": ("Motor", sorted(beamline.motors)),
        "detectors": ("Detector", sorted(beamline.detectors)),
    }
    types = {"panda": "{}", "motor": "{}", "detectors": "typing.List[{}]"}

    def annotate(*names: str) -> Callable[[Plan], Plan]:
        parameters: dict[str, Any] = {}
        for entry in names:
            optional, _, name = entry.rpartition(" ")
            kind, devices = kinds[name]
            if not devices:  # no such devices: the type hint stands
                continue
            hint = types[name].format(kind)
            parameters[name] = {
                "annotation": f"typing.Optional[{hint}]" if optional else hint,
                "devices": {kind: devices},
            }
        return parameter_annotation_decorator({"parameters": parameters})

    return annotate


def queue_plans(beamline: Beamline) -> dict[str, Plan]:
    """The plans for ``beamline``'s queue-server session, by name.

    ``spec_scan``, ``time_scan``, ``position_scan`` and ``async_scan``: the
    library's plans (:mod:`panda_flyscan.plans`) with the beamline's wiring
    and default captures; their devices by name, ``spec_scan``'s spec
    serialised over the motors' names. ``spec_scan`` streams its SEQ table
    through ``beamline.control`` when there is one (pausable; its
    ``streamed`` parameter).
    """
    motors = dict(beamline.motors)
    annotate = _device_annotations(beamline)

    def _control(streamed: bool | None) -> PandaControl | None:
        """spec_scan's ``control=`` for ``streamed`` (see its docstring)."""
        if streamed is not None and not isinstance(streamed, bool):
            raise PlanArgumentError(
                f"streamed must be true, false or null, not {streamed!r}"
            )
        if streamed is False:
            return None
        if streamed and beamline.control is None:
            raise PlanArgumentError(
                "streamed=True needs a control connection to the PandA (port "
                "8888), and this beamline has none: give it one "
                "(Beamline.control = PandaControl(host); the simulated beamline "
                "takes $PANDA_HOST), or submit the scan with streamed=False or "
                "without streamed for one fixed table"
            )
        return beamline.control

    # numpydoc sections: the queue server lists the summary (the first
    # paragraph) and each parameter's description to its clients.
    @annotate("panda", "detectors")
    def spec_scan(
        panda: Readable,
        spec: dict[str, Any] | str,
        *,
        detectors: Sequence[Readable] = (),
        divisors: dict[str, int] | None = None,
        exposure: float | None = None,
        streamed: bool | None = None,
        md: dict[str, Any] | None = None,
    ) -> MsgGenerator[str]:
        """Fly a scanspec path in one run (panda_flyscan.plans.spec_scan);
        streamed, it can be paused (re_pause) and resumed (re_resume).

        Parameters
        ----------
        panda
            The PandA, by name.
        spec
            A serialised scanspec Spec (``Spec.serialize()``, or that as a
            JSON string) whose axes are motor names, with a duration per
            frame, e.g. ``Fly(0.01 @ (Line("y", 0, 1, 3) * ~Line("x", 0, 2,
            5))).serialize()``.
        detectors
            Area detectors, by name.
        divisors
            Detector name -> trigger it every k-th frame.
        exposure
            Seconds (default: half of each frame).
        streamed
            Stream the SEQ table over the PandA's control port: a path of
            any length, and the scan can be paused and resumed. None (the
            default): streamed when this beamline has a control connection
            to its PandA, else one fixed table; True: streamed, and an error
            before anything is armed if the beamline has none; False: one
            fixed table (at most 4096 lines). A streamed scan pauses at a
            frame boundary on the RE Manager's ``re_pause`` (``immediate``:
            at once, mid-line; ``deferred``: at the next line or point), and
            ``re_resume`` carries on from the first frame not taken: the run
            has every planned frame once, and its stop document's ``reason``
            says how often it was paused (``paused 1 times, ...``).
            ``re_stop`` or ``re_abort`` while paused close the run with the
            frames taken so far (exit status ``success`` or ``abort``). A
            fixed-table scan has nothing to resume from: an immediate pause
            aborts it.
        md
            Metadata for the start document.

        Returns
        -------
        str
            The run uid.
        """
        control = _control(streamed)
        path = deserialize_spec(spec, motors)
        flyscan_panda, dets = _panda(panda), _detectors(detectors)
        return (
            yield from plans.spec_scan(
                flyscan_panda,
                path,
                detectors=dets,
                divisors=divisors,
                exposure=exposure,
                md=md,
                control=control,
            )
        )

    @annotate("panda", "detectors")
    def time_scan(
        panda: Readable,
        frames: int,
        period: float,
        exposure: float | None = None,
        *,
        detectors: Sequence[Readable] = (),
        md: dict[str, Any] | None = None,
    ) -> MsgGenerator[str]:
        """Time-based flyscan (panda_flyscan.plans.time_scan): ``frames``
        frames every ``period`` seconds, each exposed ``exposure`` seconds
        (default: half the period); ``detectors`` by name. Returns the run
        uid."""
        return (
            yield from plans.time_scan(
                _panda(panda),
                frames,
                period,
                exposure,
                detectors=_detectors(detectors),
                md=md,
            )
        )

    @annotate("panda", "motor", "detectors")
    def position_scan(
        panda: Readable,
        motor: Movable,
        start: float,
        stop: float,
        num: int,
        *,
        velocity: float | None = None,
        exposure: float | None = None,
        detectors: Sequence[Readable] = (),
        md: dict[str, Any] | None = None,
    ) -> MsgGenerator[str]:
        """Position-based flyscan (panda_flyscan.plans.position_scan): ``num``
        points from ``start`` to ``stop`` on ``motor`` (by name), flown at
        ``velocity`` (default: its own), triggered by the PandA's PCOMP.
        Returns the run uid."""
        return (
            yield from plans.position_scan(
                _panda(panda),
                motor,
                start,
                stop,
                num,
                velocity=velocity,
                exposure=exposure,
                detectors=_detectors(detectors),
                md=md,
            )
        )

    @annotate("panda", "optional motor", "detectors")
    def async_scan(
        panda: Readable,
        duration: float | None = None,
        *,
        sample_period: float = 1e-3,
        motor: Movable | None = None,
        start: float | None = None,
        stop: float | None = None,
        velocity: float | None = None,
        detectors: Sequence[Readable] = (),
        frame_period: float | None = None,
        exposure: float | None = None,
        md: dict[str, Any] | None = None,
    ) -> MsgGenerator[str]:
        """Asynchronous flyscan (panda_flyscan.plans.async_scan): the PandA
        samples every ``sample_period`` seconds for ``duration`` seconds
        while ``motor`` (by name) flies from ``start`` to ``stop``, detectors
        free-running every ``frame_period``. Returns the run uid."""
        return (
            yield from plans.async_scan(
                _panda(panda),
                duration,
                sample_period=sample_period,
                motor=motor,
                start=start,
                stop=stop,
                velocity=velocity,
                detectors=_detectors(detectors),
                frame_period=frame_period,
                exposure=exposure,
                md=md,
            )
        )

    return {
        "spec_scan": spec_scan,
        "time_scan": time_scan,
        "position_scan": position_scan,
        "async_scan": async_scan,
    }
