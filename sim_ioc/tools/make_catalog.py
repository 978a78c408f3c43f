"""Developer tool: write our block catalog from a PandABlocks-FPGA checkout.

The simulator never reads firmware files at run time; it ships its own
description of the blocks (``sim_ioc/panda/catalog/pandabox_acq427.toml``).
This script records the firmware's interface facts (names, counts, types,
enum labels, units, table layouts) in that format. Run it by hand when the
firmware interface changes::

    python sim_ioc/tools/make_catalog.py ../shared/pandablocks-fpga > \
        sim_ioc/panda/catalog/pandabox_acq427.toml
"""

from __future__ import annotations

import configparser
import json
import re
import sys
from pathlib import Path

# Block order of the standard PandABox + ACQ427 application: carrier blocks,
# then the soft blocks, then the FMC and SFP modules.
APP = "pandabox-fmc-acq427.app.ini"


def read_ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def q(text: str) -> str:
    return json.dumps(text)


def field_toml(block: str, name: str, sec: configparser.SectionProxy) -> list[str]:
    kind = sec.get("type", "").split()
    if not kind or kind[0] == "extension_write":
        return []
    typ, rest = kind[0], kind[1:]
    lines = ["", f"[[block.{block}.field]]", f"name = {q(name)}"]
    subtype = rest[0] if rest else None
    if typ in ("param", "read", "write") and subtype is None:
        subtype = "uint"
    lines.append(f"type = {q(typ)}")
    if subtype:
        lines.append(f"subtype = {q(subtype)}")
    if subtype == "uint" and len(rest) > 1:
        lines.append(f"max = {int(rest[1])}")
    if typ == "ext_out" and subtype == "bits":
        lines.append(f"quadrant = {int(rest[1])}")
    desc = " ".join(sec.get("description", "").split())
    lines.append(f"description = {q(desc)}")
    for key in ("scale", "offset", "units"):
        if key in sec:
            value = sec[key].strip()
            lines.append(f"{key} = {value if key != 'units' else q(value)}")
    labels = [(int(k), v.strip()) for k, v in sec.items() if k.isdigit()]
    if labels and typ != "table":
        lines.append(
            "labels = [" + ", ".join(f"[{i}, {q(v)}]" for i, v in labels) + "]"
        )
    if typ == "table":
        cols = parse_table_columns(sec)
        # One 32-bit word per row unless the layout says otherwise.
        top = max(int(c["bits"].split(":")[0]) for c in cols)
        lines.append(f"words = {int(sec.get('words', top // 32 + 1))}")
        lines.append("columns = [")
        for c in cols:
            parts = [
                f"bits = {q(c['bits'])}",
                f"name = {q(c['name'])}",
                f"subtype = {q(c['subtype'])}",
                f"description = {q(c['description'])}",
            ]
            if c["labels"]:
                parts.append(
                    "labels = ["
                    + ", ".join(f"[{i}, {q(v)}]" for i, v in c["labels"])
                    + "]"
                )
            lines.append("    { " + ", ".join(parts) + " },")
        lines.append("]")
    return lines


def parse_table_columns(sec: configparser.SectionProxy) -> list[dict]:
    # configparser folds the indented lines into the value of "hi:lo NAME"
    # keys; re-read the raw text instead.
    raw = sec.parser._table_raw[sec.name]  # type: ignore[attr-defined]
    cols: list[dict] = []
    for line in raw:
        m = re.match(r"^(\d+):(\d*)\s+(\w+)\s*(\w*)\s*$", line)
        if m:
            hi, lo, name, sub = m.groups()
            lo = lo or hi
            cols.append(
                {
                    "bits": f"{hi}:{lo}",
                    "name": name,
                    "subtype": sub or "uint",
                    "description": "",
                    "labels": [],
                }
            )
            continue
        m = re.match(r"^\s+(\d+)\s+(.+)$", line)
        if m and cols and cols[-1]["subtype"] == "enum":
            cols[-1]["labels"].append((int(m.group(1)), m.group(2).strip()))
            continue
        if line.startswith((" ", "\t")) and cols:
            text = line.strip()
            cols[-1]["description"] = (cols[-1]["description"] + " " + text).strip()
    # Sort the way the server lists them: by low bit.
    return cols


def read_block_ini(path: Path) -> configparser.ConfigParser:
    parser = read_ini(path)
    # Keep the raw lines of table sections for parse_table_columns.
    raw: dict[str, list[str]] = {}
    section = None
    for line in path.read_text().splitlines():
        m = re.match(r"^\[(.+)\]\s*$", line)
        if m:
            section = m.group(1)
            raw[section] = []
        elif section:
            raw[section].append(line)
    parser._table_raw = raw  # type: ignore[attr-defined]
    return parser


def block_toml(
    name: str, number: int, ini: configparser.ConfigParser, suffix: str | None
) -> list[str]:
    top = ini["."]
    desc = " ".join(top.get("description", "").split())
    lines = ["", f"[block.{name}]", f"number = {number}", f"description = {q(desc)}"]
    for sec_name in ini.sections():
        if sec_name == ".":
            continue
        field = sec_name
        if suffix is not None:
            if not sec_name.startswith(suffix + "."):
                continue
            field = sec_name[len(suffix) + 1 :]
        lines += field_toml(name, field, ini[sec_name])
    return lines


def main(src: Path) -> None:
    out = [
        "# Blocks of a standard PandABox with the D-TACQ ACQ427 FMC card and the",
        "# PandA synchroniser on SFP3: the firmware's interface facts in our format.",
        "# Written by sim_ioc/tools/make_catalog.py; edit by hand only with care.",
        "# Each [block.NAME] has `number` instances and [[block.NAME.field]] entries",
        "# in server order: name, type, subtype, description, and per type: max",
        "# (uint), labels ([value, label] pairs of enums), scale/offset/units",
        "# (scalar), quadrant (PCAP BITSn), words and columns (tables).",
    ]
    target = read_ini(src / "pandabox.target.ini")
    soft = read_ini(src / "common_soft_blocks.include.ini")
    app = read_ini(src / APP)
    for conf in (target, soft):
        for sec in conf.sections():
            if sec == ".":
                continue
            ini = read_block_ini(src / f"{sec.lower()}.block.ini")
            out += block_toml(sec, int(conf[sec]["number"]), ini, None)
    for sec in app.sections():
        if sec == ".":
            continue
        module = app[sec]["module"]
        ini = read_block_ini(src / f"{module}.block.ini")
        for suffix in ini["."].get("block_suffixes", "").split():
            out += block_toml(f"{sec}_{suffix}", 1, ini, suffix)
    print("\n".join(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
