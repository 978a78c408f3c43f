"""What a message on the bus holds, and what the writer does with it: pure
logic, no sockets.

:func:`parse_message` turns a message's bytes into a (name, document) pair
or raises :class:`Malformed` with the reason (the service then quarantines
it). :class:`Router` knows which run each document belongs to, as the
RunRouter does, so the service can skip runs already complete in Tiled and
recognise a document that belongs to no run it knows.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DOCUMENT_NAMES", "Malformed", "Router", "parse_message"]

#: The documents a RunEngine emits, and the key each is routed by.
_ROUTE_KEY: dict[str, str | None] = {
    "start": None,
    "stop": "run_start",
    "descriptor": "run_start",
    "event": "descriptor",
    "event_page": "descriptor",
    "resource": "run_start",
    "stream_resource": "run_start",
    "datum": "resource",
    "datum_page": "resource",
    "stream_datum": "stream_resource",
}
DOCUMENT_NAMES = frozenset(_ROUTE_KEY)


class Malformed(ValueError):
    """A message the writer cannot use; the text says why."""


def parse_message(data: bytes, *, validate: bool = True) -> tuple[str, dict[str, Any]]:
    """The (name, document) of a message, or :class:`Malformed`.

    Checks what routing needs (JSON object with a known ``name`` and a
    ``doc`` object, with the keys the document is routed by), then, with
    ``validate``, the document against event-model's schema: a document
    TiledWriter would reject is refused here, alone, rather than failing its
    whole run there.
    """
    try:
        item = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Malformed(f"not JSON: {err}") from err
    if not isinstance(item, dict) or "name" not in item or "doc" not in item:
        raise Malformed("not a {'name': ..., 'doc': ...} object")
    name, doc = item["name"], item["doc"]
    if name not in _ROUTE_KEY:
        raise Malformed(f"unknown document name {name!r}")
    if not isinstance(doc, dict):
        raise Malformed(f"{name} document is not an object")
    needed = ["uid"] if name in ("start", "descriptor", "resource") else []
    if name == "stream_resource":
        needed = ["uid"]
    key = _ROUTE_KEY[name]
    if key is not None and name not in ("resource", "stream_resource"):
        needed.append(key)
    missing = [k for k in needed if not isinstance(doc.get(k), str)]
    if missing:
        raise Malformed(f"{name} document without {', '.join(missing)}")
    if validate:
        _validate(name, doc)
    return name, doc


def _validate(name: str, doc: dict[str, Any]) -> None:
    from event_model import DocumentNames, schema_validators

    try:
        schema_validators[DocumentNames[name]].validate(doc)
    except Exception as err:  # jsonschema's ValidationError, whatever its version
        message = getattr(err, "message", None) or str(err).splitlines()[0]
        raise Malformed(f"invalid {name} document: {message}") from err


class Router:
    """Which run (start uid) each document belongs to."""

    def __init__(self) -> None:
        self._owner: dict[str, str] = {}  # descriptor/resource uid -> run uid
        self._runs: set[str] = set()
        self._last: str | None = None

    def route(self, name: str, doc: dict[str, Any]) -> str | None:
        """The run of a document (registering what later ones refer to);
        None if it belongs to no run this router has seen start."""
        if name == "start":
            uid = doc["uid"]
            self._runs.add(uid)
            self._last = uid
            return uid
        key = _ROUTE_KEY.get(name)
        if name in ("resource", "stream_resource"):
            # run_start is optional in these; the RunEngine's own run otherwise.
            run = doc.get("run_start") or self._last
        elif key in ("run_start",):
            run = doc.get(key)
        else:
            run = self._owner.get(doc.get(key or "", ""))
        if run is None or run not in self._runs:
            return None
        if name in ("descriptor", "resource", "stream_resource"):
            self._owner[doc["uid"]] = run
        return run

    def close(self, run: str) -> None:
        """Forget a run after its stop document."""
        self._runs.discard(run)
        self._owner = {k: v for k, v in self._owner.items() if v != run}
        if self._last == run:
            self._last = None
