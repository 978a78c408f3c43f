"""NDAttributes: the per-frame values areaDetector stores beside each frame.

A driver or plugin's ``NDAttributesFile`` holds either a file name or, as
ophyd-async's ``setup_ndattributes`` writes it, the XML itself::

    <Attributes>
      <Attribute name="Exposure" type="PARAM" source="ACQ_TIME" datatype="DOUBLE"/>
      <Attribute name="Pos" type="EPICS_PV" source="SIM:M1.RBV" dbrtype="DBR_DOUBLE"/>
    </Attributes>

Parsing is pure; the numpy dtypes are the ones ophyd-async declares for the
datasets (``NDAttributeDataType`` / ``NDAttributePvDbrType``), so the file and
the StreamResource agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

__all__ = ["AttributeDef", "AttributesError", "parse_attributes"]

#: PARAM datatype -> numpy dtype string.
PARAM_DTYPES = {"INT": "<i4", "INT64": "<i8", "DOUBLE": "<f8", "STRING": "S40"}
#: EPICS_PV dbrtype -> numpy dtype string.
PV_DTYPES = {
    "DBR_SHORT": "<i2",
    "DBR_ENUM": "<i2",
    "DBR_INT": "<i4",
    "DBR_LONG": "<i4",
    "DBR_FLOAT": "<f4",
    "DBR_DOUBLE": "<f8",
    "DBR_STRING": "S40",
    "DBR_CHAR": "|i1",
    # As ADCore does for a PV's native type: stored as a double here.
    "DBR_NATIVE": "<f8",
}


class AttributesError(ValueError):
    """An NDAttributes definition that cannot be used."""


@dataclass(frozen=True)
class AttributeDef:
    """One ``<Attribute>``: where its value comes from and how it is stored."""

    name: str
    kind: str  # "PARAM", "EPICS_PV" or "FUNCT"
    source: str
    dtype: str


def parse_attributes(text: str) -> list[AttributeDef]:
    """The attributes an ``NDAttributesFile`` value defines ("" for none)."""
    text = text.strip()
    if not text:
        return []
    if "<Attributes>" not in text:
        try:
            text = Path(text).read_text()
        except OSError as exc:
            raise AttributesError(
                f"cannot read NDAttributes file {text}: {exc}"
            ) from exc
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise AttributesError(f"invalid NDAttributes XML: {exc}") from exc
    found: list[AttributeDef] = []
    for element in root:
        if element.tag != "Attribute":
            continue
        attrs = element.attrib
        name, kind = attrs.get("name", ""), attrs.get("type", "EPICS_PV")
        if not name:
            raise AttributesError("an <Attribute> has no name")
        if kind == "EPICS_PV":
            dbrtype = attrs.get("dbrtype", "DBR_NATIVE")
            if dbrtype not in PV_DTYPES:
                raise AttributesError(f"NDAttribute {name}: unknown dbrtype {dbrtype}")
            dtype = PV_DTYPES[dbrtype]
        else:
            datatype = attrs.get("datatype", "INT")
            if datatype not in PARAM_DTYPES:
                raise AttributesError(
                    f"NDAttribute {name}: unknown datatype {datatype}"
                )
            dtype = PARAM_DTYPES[datatype]
        found.append(AttributeDef(name, kind, attrs.get("source", ""), dtype))
    return found
