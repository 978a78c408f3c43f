"""``python -m panda_flyscan``: the ``panda-flyscan`` command, for when only
the interpreter is at hand (:class:`~panda_flyscan.storage.TiledService` starts
its server this way)."""

from .app.cli import main

if __name__ == "__main__":
    main(prog_name="panda-flyscan")
