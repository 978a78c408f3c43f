"""Pure, tick-exact models of the PandABox firmware blocks.

:data:`MODELS` maps a firmware block name to its model class. Blocks without a
model still exist in the simulator (fields, values, protocol) with outputs held
at their reset values.
"""

from __future__ import annotations

from typing import TypeVar

from .base import Block, Bus, TableMemory

MODELS: dict[str, type[Block]] = {}


_B = TypeVar("_B", bound=type[Block])


def register(cls: _B) -> _B:
    """Class decorator adding a model to :data:`MODELS`."""
    MODELS[cls.NAME] = cls
    return cls


def _load_all() -> None:
    # Import for the side effect of registration; a missing module is a model
    # not written yet, not an error.
    import importlib

    for name in (
        "bits",
        "calc",
        "clock",
        "counter",
        "div",
        "filter",
        "fmc",
        "io",
        "lut",
        "misc",
        "pcap",
        "pcomp",
        "pgen",
        "pulse",
        "seq",
        "srgate",
    ):
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise


_load_all()

__all__ = ["MODELS", "Block", "Bus", "TableMemory", "register"]
