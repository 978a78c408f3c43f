"""Every use of a dependency's private API, one module per dependency.

Each module checks, when imported, that the installed version is one it was
written for, and fails loudly naming both otherwise: a private API can change
in any release, and a clear ImportError at start-up beats a wrong result
mid-scan. Each function's docstring says which public API would make it
unnecessary (a candidate upstream issue).
"""

from __future__ import annotations

from importlib.metadata import version

from packaging.specifiers import SpecifierSet
from packaging.version import Version

__all__ = ["require"]


def require(distribution: str, supported: str, *, uses: str) -> None:
    """Raise ImportError unless ``distribution``'s version is in ``supported``.

    Args:
        distribution: The installed distribution's name, e.g. ``"bluesky"``.
        supported: A version specifier, e.g. ``"~=1.15"``.
        uses: What private API the caller relies on (for the message).
    """
    installed = version(distribution)
    if Version(installed) not in SpecifierSet(supported):
        raise ImportError(
            f"panda_flyscan uses {uses}, a private API of {distribution}, written "
            f"for {distribution}{supported}; {installed} is installed. Install a "
            f"supported version (pip install '{distribution}{supported}') or "
            "update panda_flyscan._compat for it."
        )
