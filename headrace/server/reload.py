"""``--reload``: watch source files and tell the supervisor when they change.

Theory of operation
-------------------
A :class:`ChangeWatcher` runs on a daemon thread of the supervisor and calls ``on_change`` once
per batch of changes. With ``watchfiles`` installed (``headrace[reload]``) it blocks in
``watchfiles.watch`` (inotify on Linux: no polling); otherwise it polls modification times every
``interval`` seconds. Both honour the same :class:`PathFilter`: a change counts when the file name
matches an ``--reload-include`` glob (default ``*.py``) and no part of its path matches an
``--reload-exclude`` glob (default: hidden entries, ``__pycache__``, compiled files). The
supervisor turns ``on_change`` into a graceful reload of every worker; it never imports the
application itself, so the new workers import the new code.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

__all__ = ["ChangeWatcher", "PathFilter"]

logger = logging.getLogger("headrace.reload")

DEFAULT_INCLUDES = ("*.py",)
DEFAULT_EXCLUDES = (".*", "__pycache__", "*.py[cod]", "*~", "*.swp")


class PathFilter:
    """Which changed paths trigger a reload (see module docs)."""

    def __init__(self, includes: Sequence[str] = (), excludes: Sequence[str] = ()) -> None:
        self.includes = tuple(includes) or DEFAULT_INCLUDES
        self.excludes = tuple(excludes) or DEFAULT_EXCLUDES

    def __call__(self, path: str) -> bool:
        pure = Path(path)
        if any(fnmatch.fnmatch(part, pattern) for part in pure.parts for pattern in self.excludes):
            return False
        if any(fnmatch.fnmatch(path, pattern) for pattern in self.excludes):
            return False
        return any(fnmatch.fnmatch(pure.name, pattern) for pattern in self.includes)


class ChangeWatcher:
    """Calls ``on_change()`` from a daemon thread whenever a watched file changes."""

    def __init__(
        self,
        directories: Sequence[str],
        path_filter: PathFilter,
        on_change: Callable[[], None],
        interval: float = 0.5,
        use_watchfiles: bool = True,
    ) -> None:
        self.directories = [os.path.abspath(folder) for folder in directories or ["."]]
        self.path_filter = path_filter
        self.on_change = on_change
        self.interval = interval
        self.use_watchfiles = use_watchfiles and _watchfiles_available()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def mechanism(self) -> str:
        return "watchfiles" if self.use_watchfiles else "polling"

    def start(self) -> None:
        target = self._watch_with_watchfiles if self.use_watchfiles else self._poll
        self._thread = threading.Thread(target=target, name="headrace-reload", daemon=True)
        self._thread.start()
        logger.info("Watching %s for changes (%s)", ", ".join(self.directories), self.mechanism)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _watch_with_watchfiles(self) -> None:
        import watchfiles

        def accept(change: object, path: str) -> bool:
            return self.path_filter(path)

        for changes in watchfiles.watch(
            *self.directories,
            watch_filter=accept,
            stop_event=self._stop,
            yield_on_timeout=False,
            raise_interrupt=False,
        ):
            if changes:
                self._report(sorted(path for _, path in changes))

    def _poll(self) -> None:
        known = self._snapshot()
        while not self._stop.wait(self.interval):
            current = self._snapshot()
            if current != known:
                changed = {path for path in current.keys() ^ known.keys()}
                changed |= {
                    path for path in current.keys() & known.keys() if current[path] != known[path]
                }
                known = current
                self._report(sorted(changed))

    def _snapshot(self) -> dict[str, int]:
        mtimes: dict[str, int] = {}
        for path in self._files():
            try:
                mtimes[path] = os.stat(path).st_mtime_ns
            except OSError:
                continue
        return mtimes

    def _files(self) -> Iterator[str]:
        for directory in self.directories:
            for root, folders, files in os.walk(directory):
                folders[:] = [name for name in folders if self._folder_allowed(name)]
                for name in files:
                    path = os.path.join(root, name)
                    if self.path_filter(path):
                        yield path

    def _folder_allowed(self, name: str) -> bool:
        return not any(fnmatch.fnmatch(name, pattern) for pattern in self.path_filter.excludes)

    def _report(self, paths: list[str]) -> None:
        shown = ", ".join(os.path.relpath(path) for path in paths[:3])
        more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
        logger.warning("Detected changes in %s%s: reloading", shown, more)
        self.on_change()


def _watchfiles_available() -> bool:
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return False
    return True
