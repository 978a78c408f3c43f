"""The layering rule, checked on the source and on a core-only install.

* The library (``panda_flyscan.devices``, ``.plans``, ``.storage`` and the
  shared ``processes``, ``polling``, ``_compat`` modules) imports only its
  dependencies: never the simulator (``sim_ioc``), the application layer
  (``panda_flyscan.app``: command tree, demo, benchmarks, the simulated
  beamline's client side), nor a package only an extra installs.
* ``sim_ioc`` imports nothing of ``panda_flyscan``.
* A fresh environment with only the core install imports the library.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "panda_flyscan"
LIBRARY = ("devices", "plans", "storage", "_compat", "processes.py", "polling.py")
#: Distributions' import names that only the [sim], [bench] or [dev] extras
#: install (see pyproject.toml).
# pandablocks is a core dependency since the library streams SEQ tables
# through the PandA's control port (devices.table_stream).
EXTRAS_ONLY = ("caproto", "matplotlib", "ophyd", "pytest")


def _modules(paths: Iterator[Path], root: Path) -> Iterator[tuple[Path, str]]:
    for path in paths:
        if ".venv" in path.parts:
            continue
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield path, ".".join(parts)


def _imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports, relative imports made absolute."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:  # `from . import app` imports a module too
                yield node.lineno, f"{base}.{alias.name}"


def _violations(files: Iterator[tuple[Path, str]], forbidden: tuple[str, ...]):
    found = []
    for path, module in files:
        for line, name in _imports(path, module):
            if any(name == f or name.startswith(f"{f}.") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return found


def _library_files() -> Iterator[tuple[Path, str]]:
    for entry in LIBRARY:
        target = PACKAGE / entry
        paths = [target] if target.is_file() else sorted(target.rglob("*.py"))
        yield from _modules(iter(paths), PACKAGE.parent)
    yield from _modules(iter([PACKAGE / "__init__.py"]), PACKAGE.parent)


def test_the_rule_sees_imports() -> None:
    """The checker itself: it finds absolute, relative and from-imports."""
    app = PACKAGE / "app" / "demo.py"
    names = {name for _, name in _imports(app, "panda_flyscan.app.demo")}
    assert "panda_flyscan.plans" in names  # `from ..plans import ...`
    assert "panda_flyscan.app.simulated.launcher" in names  # `from .simulated...`


def test_library_imports_neither_simulator_nor_application() -> None:
    forbidden = ("sim_ioc", "panda_flyscan.app", "benchmarks", *EXTRAS_ONLY)
    assert _violations(_library_files(), forbidden) == []


def test_simulator_imports_no_panda_flyscan() -> None:
    files = _modules(iter(sorted((ROOT / "sim_ioc").rglob("*.py"))), ROOT)
    assert _violations(files, ("panda_flyscan",)) == []


def test_wheel_ships_no_generic_top_level_package() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert sorted(Path(p).name for p in packages) == ["panda_flyscan", "sim_ioc"]


_CORE_CHECK = textwrap.dedent(
    """
    import importlib.util, sys
    import panda_flyscan.devices, panda_flyscan.plans, panda_flyscan.storage
    from panda_flyscan.storage import TiledService, subscribe_tiled_writer
    from panda_flyscan.plans import time_scan, position_scan
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "sim_ioc"
                    or m.startswith("panda_flyscan.app"))
    assert not loaded, loaded
    extras = [m for m in {extras!r} if importlib.util.find_spec(m) is not None]
    assert not extras, f"core install brought in extras' packages: {{extras}}"
    print("CORE OK")
    """
)


@pytest.mark.install
def test_core_only_install_imports_the_library(tmp_path: Path) -> None:
    """``pip install .`` (no extras) into a fresh venv, then import the library.

    Slow (a minute or two from pip's cache): marked ``install``, outside the
    fast lane.
    """
    venv = tmp_path / "core"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    install = subprocess.run(
        [*pip, str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    check = subprocess.run(
        [str(python), "-c", _CORE_CHECK.format(extras=EXTRAS_ONLY)],
        cwd=tmp_path,  # not the repository: import the installed package
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip().endswith("CORE OK")
