"""Sphinx configuration of panda-flyscan's documentation site.

Built by ``./run docs`` and as a step of ``./run test`` with warnings as
errors. The Markdown pages are MyST (myst-parser); the tutorials in
``tutorials/`` are MyST-Markdown notebooks that myst-nb executes, each in a
fresh Jupyter kernel of this Python, against the simulated beamline, so a
broken tutorial fails the build. ``PANDA_DOCS_EXECUTE=0`` (``./run test
--fast``, ``./run docs --fast``) renders them without running them.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

import panda_flyscan

project = "panda-flyscan"
author = "panda-flyscan contributors"
copyright = "panda-flyscan contributors"
release = panda_flyscan.__version__
version = release

extensions = [
    "myst_nb",  # includes myst_parser: .md pages and .md notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

# _generated: tables other pages include (docs/faults.md), not pages.
exclude_patterns = [
    "_build",
    "_generated",
    "**/.ipynb_checkpoints",
    "**/__pycache__",
]
root_doc = "index"

# -- MyST ------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
# Anchors for headings, so pages can link to each other's sections
# (`storage.md#reading-back`), as they do on GitHub.
myst_heading_anchors = 3

# -- myst-nb: the executed tutorials ----------------------------------------
_execute = os.environ.get("PANDA_DOCS_EXECUTE", "1") != "0"
# "force": every build runs every tutorial (no cache: a change in the library
# that breaks a tutorial must fail the next build).
nb_execution_mode = "force" if _execute else "off"
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 300
# The tutorials' working directory is their own folder (tutorials/); each
# makes its data directories under a temporary directory of its own.
nb_execution_in_temp = False
# The kernel "python3" is this Python: its kernelspec first on Jupyter's path,
# ahead of any user's or system's own "python3" (jupyter_client runs a
# kernelspec whose argv starts with "python" with sys.executable).
os.environ["JUPYTER_PATH"] = os.pathsep.join(
    p
    for p in (str(Path(sys.prefix, "share", "jupyter")), os.environ.get("JUPYTER_PATH"))
    if p
)
nb_merge_streams = True
# stderr is noise on a page: Tiled's progress bars, pvxs' remote log lines,
# the IOC's warnings. Errors are error outputs, not stderr, and still fail
# the build (nb_execution_raise_on_error).
nb_output_stderr = "remove"

# -- autodoc ---------------------------------------------------------------
autodoc_default_options = {
    "members": True,
    "undoc-members": False,
    "show-inheritance": True,
}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
# Docstrings are RST with ``literals`` and :class: roles; Google-style
# sections where a module has them (napoleon).
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# -- HTML ------------------------------------------------------------------
html_theme = "furo"
html_title = f"panda-flyscan {release}"
html_static_path: list[str] = []


# -- checks after the build --------------------------------------------------
#: The executed tutorials and the number of plots each must embed.
TUTORIAL_PLOTS = {
    "tutorials/01-basics": 1,
    "tutorials/02-simulated-beamline": 1,
    "tutorials/03-plans": 2,
    "tutorials/04-data-management": 1,
}


def _check_tutorial_plots(app: Sphinx, exception: BaseException | None) -> None:
    """Fail the build if an executed tutorial's page lacks its plots (a
    tutorial that ran but whose figures were not embedded)."""
    if exception is not None or not _execute or app.builder.format != "html":
        return
    out = Path(app.outdir)
    missing = []
    for docname, plots in TUTORIAL_PLOTS.items():
        page = out / f"{docname}.html"
        sources = re.findall(
            r'<img[^>]+src="([^"]+\.png)"', page.read_text(encoding="utf-8")
        )
        embedded = [s for s in sources if (page.parent / s).resolve().is_file()]
        if len(embedded) < plots:
            missing.append(f"{docname}: {len(embedded)} of {plots} plot(s)")
    if missing:
        raise ExtensionError("tutorial plots not embedded: " + "; ".join(missing))


def setup(app: Sphinx) -> dict[str, bool]:
    app.connect("build-finished", _check_tutorial_plots)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
