"""The blocks of a standard PandABox with the ACQ427 FMC card.

:func:`load_catalog` reads ``pandabox_acq427.toml`` (shipped with the package,
never the firmware sources) into typed definitions, and assigns every
``bit_out`` and ``pos_out`` its index on the system buses.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

CATALOG = Path(__file__).with_name("pandabox_acq427.toml")

#: Labels every bit_mux / pos_mux offers besides the bus entries.
BIT_CONSTANTS = ("ZERO", "ONE")
POS_CONSTANTS = ("ZERO",)


@dataclass(frozen=True)
class TableColumn:
    """One column of a table field: bits ``low..high`` of each row."""

    name: str
    high: int
    low: int
    subtype: str  # uint, int or enum
    description: str
    labels: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FieldDef:
    """A field of a block type, as ``BLOCK.*?`` and friends describe it."""

    name: str
    type: str
    subtype: str | None
    description: str
    index: int
    max: int | None = None
    labels: dict[int, str] = field(default_factory=dict)
    scale: float = 1.0
    offset: float = 0.0
    units: str = ""
    quadrant: int | None = None
    words: int = 0
    columns: tuple[TableColumn, ...] = ()

    @property
    def type_line(self) -> str:
        return f"{self.type} {self.subtype}" if self.subtype else self.type


@dataclass(frozen=True)
class BlockDef:
    """A block type and how many instances the PandA carries."""

    name: str
    number: int
    description: str
    fields: dict[str, FieldDef]

    def instance_names(self) -> list[str]:
        """``PCAP`` for a single block, ``SEQ1``, ``SEQ2`` otherwise."""
        if self.number == 1:
            return [self.name]
        return [f"{self.name}{i}" for i in range(1, self.number + 1)]


@dataclass(frozen=True)
class Catalog:
    """Every block, and the bus layout derived from them."""

    blocks: dict[str, BlockDef]
    #: ``"TTLIN1.VAL"`` -> bit bus index, in bus order.
    bit_bus: dict[str, int]
    #: ``"INENC1.VAL"`` -> pos bus index, in bus order.
    pos_bus: dict[str, int]

    def instances(self) -> list[tuple[str, BlockDef, int]]:
        """(instance name, block, instance number from 1) for every instance."""
        return [
            (name, block, i)
            for block in self.blocks.values()
            for i, name in enumerate(block.instance_names(), start=1)
        ]

    def block_of(self, name: str) -> BlockDef | None:
        """The block type of ``SEQ`` or an instance name like ``SEQ1``."""
        if name in self.blocks:
            return self.blocks[name]
        return self.blocks.get(name.rstrip("0123456789"))

    @property
    def bit_labels(self) -> list[str]:
        """The enum labels of every bit_mux: constants then the bus."""
        return [*BIT_CONSTANTS, *self.bit_bus]

    @property
    def pos_labels(self) -> list[str]:
        return [*POS_CONSTANTS, *self.pos_bus]


def _field(name: str, index: int, raw: dict) -> FieldDef:
    columns = tuple(
        TableColumn(
            name=c["name"],
            high=int(c["bits"].split(":")[0]),
            low=int(c["bits"].split(":")[1]),
            subtype=c["subtype"],
            description=c["description"],
            labels={int(i): label for i, label in c.get("labels", [])},
        )
        for c in raw.get("columns", [])
    )
    return FieldDef(
        name=name,
        type=raw["type"],
        subtype=raw.get("subtype"),
        description=raw.get("description", ""),
        index=index,
        max=raw.get("max"),
        labels={int(i): label for i, label in raw.get("labels", [])},
        scale=float(raw.get("scale", 1.0)),
        offset=float(raw.get("offset", 0.0)),
        units=raw.get("units", ""),
        quadrant=raw.get("quadrant"),
        words=raw.get("words", 0),
        columns=columns,
    )


@cache
def load_catalog(path: Path = CATALOG) -> Catalog:
    """Load the catalog and lay out the buses in block/instance/field order."""
    data = tomllib.loads(path.read_text())
    blocks: dict[str, BlockDef] = {}
    for name, raw in data["block"].items():
        fields = {
            f["name"]: _field(f["name"], i, f) for i, f in enumerate(raw["field"])
        }
        blocks[name] = BlockDef(name, raw["number"], raw["description"], fields)
    bit_bus: dict[str, int] = {}
    pos_bus: dict[str, int] = {}
    for block in blocks.values():
        for inst in block.instance_names():
            for f in block.fields.values():
                if f.type == "bit_out":
                    bit_bus[f"{inst}.{f.name}"] = len(bit_bus)
                elif f.type == "pos_out":
                    pos_bus[f"{inst}.{f.name}"] = len(pos_bus)
    return Catalog(blocks, bit_bus, pos_bus)
