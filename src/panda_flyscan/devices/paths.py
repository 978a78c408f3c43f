"""Where the PandA and the detectors write: a new file for every run."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import PurePath

from ophyd_async.core import PathInfo, PathProvider

__all__ = ["RunFilePathProvider"]


class RunFilePathProvider(PathProvider):
    """Give every acquisition its own file under ``root``.

    Each call (ophyd-async calls it once per device per ``prepare``, so once per
    run) answers ``<root>/<YYYY-MM-DD>/<device>-<HHMMSS>-<8 hex digits>``
    (the writer adds ``.h5``). The writer creates the date directory
    (``create_dir_depth=-1``), so the provider also works for an IOC on another
    host; ``root`` is then the path as that host sees it and ``root_uri`` how
    readers (Tiled) reach the same directory.

    >>> provider = RunFilePathProvider("/data/panda")
    >>> info = provider("panda")  # /data/panda/2025-01-31/panda-142501-1a2b3c4d
    """

    def __init__(
        self,
        root: PurePath | str,
        *,
        root_uri: str | None = None,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.root = PurePath(root)
        if not self.root.is_absolute():
            raise ValueError(f"root must be an absolute path, got {str(root)!r}")
        self._root_uri = root_uri.rstrip("/") if root_uri else None
        self._clock = clock
        #: The last PathInfo handed to each device, by device (data key) name.
        self.last: dict[str, PathInfo] = {}

    def __call__(self, datakey_name: str | None = None) -> PathInfo:
        now = self._clock()
        day = now.strftime("%Y-%m-%d")
        device = datakey_name or "data"
        filename = f"{device}-{now.strftime('%H%M%S')}-{uuid.uuid4().hex[:8]}"
        kwargs = {}
        if self._root_uri is not None:
            kwargs["directory_uri"] = f"{self._root_uri}/{day}/"
        info = PathInfo(
            directory_path=self.root / day,
            filename=filename,
            create_dir_depth=-1,
            **kwargs,
        )
        self.last[device] = info
        return info
