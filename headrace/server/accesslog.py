"""Daphne-format access log lines, written in batches.

Theory of operation
-------------------
One line per completed HTTP response and per WebSocket event, in the NCSA-like format Daphne
writes: ``host:port - - [dd/Mon/YYYY:HH:MM:SS] "METHOD URI" status size``. WebSocket events use
the pseudo-methods ``WSCONNECTING``, ``WSCONNECT``, ``WSREJECT`` and ``WSDISCONNECT`` with
``-`` for status and size.

The log is on by default (``-v 1``), so a line has to cost a small part of a request:

- The timestamp is formatted once per second, not once per line.
- A line is queued; the first line of a batch schedules :meth:`AccessLogger.flush` with
  ``loop.call_soon``, so every response of one event-loop iteration (often dozens under load)
  leaves in one batch. Lines are out within an iteration, not held until a buffer fills.
  Without a running loop (a caller outside the server) a line is written at once.
- A batch goes to the stream's file descriptor with ``write(2)`` calls of at most
  ``PIPE_BUF`` bytes, each ending at a line end (a longer line is written alone). POSIX makes
  such a write to a pipe atomic, so the workers of ``--workers`` sharing one stdout pipe never
  interleave inside a line; a file is opened for appending, where each write lands whole.
  A stream without a descriptor (``io.StringIO``) gets ``write`` + ``flush`` per batch.

What is still queued when the server stops is written by ``flush()``, which
:meth:`headrace.server.server.Server.serve` and :func:`headrace.server.server.run` call on
their way out. A failing write (the reader of the pipe is gone) is reported once on the
``headrace.server`` logger and the lines are dropped: the log never fails a request.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import select
import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from headrace.server.config import Config

logger = logging.getLogger("headrace.server")

LOG_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}

WEBSOCKET_ACTIONS = {
    "connecting": "WSCONNECTING",
    "connected": "WSCONNECT",
    "rejected": "WSREJECT",
    "disconnected": "WSDISCONNECT",
}

PIPE_BUF = select.PIPE_BUF
"""The largest write(2) POSIX keeps whole on a pipe shared by several writers."""


def format_client(client: tuple[str, int] | list[object] | None) -> str:
    if not client:
        return "-"
    host, port = client[0], client[1]
    return f"{host}:{port}" if port is not None else str(host)


class AccessLogger:
    """Queues access log lines and writes them once per event-loop iteration (module docs)."""

    __slots__ = ("_failed", "_fd", "_pending", "_second", "_stamp", "stream")

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._fd = _descriptor(stream)
        self._pending: list[str] = []
        self._second = -1
        self._stamp = ""
        self._failed = False

    def http(
        self,
        client: tuple[str, int] | list[object] | None,
        method: str,
        uri: str,
        status: int,
        size: int,
    ) -> None:
        self.write_entry(format_client(client), f"{method} {uri}", str(status), str(size or "-"))

    def websocket(
        self, action: str, client: tuple[str, int] | list[object] | None, path: str
    ) -> None:
        """Log a WebSocket event: action is connecting, connected, rejected or disconnected."""
        self.write_entry(format_client(client), f"{WEBSOCKET_ACTIONS[action]} {path}", "-", "-")

    def write_entry(self, host: str, request: str, status: str, size: str) -> None:
        self.queue(f'{host} - - [{self._timestamp()}] "{request}" {status} {size}\n')

    def _timestamp(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S", time.localtime(now))
        return self._stamp

    def queue(self, line: str) -> None:
        """Add one complete line (ending in a newline) to the current batch."""
        pending = self._pending
        pending.append(line)
        if len(pending) == 1:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
            else:
                loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every queued line now."""
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        try:
            if self._fd is None:
                self.stream.write(text)
                self.stream.flush()
            else:
                self.stream.flush()  # anything else written to the stream goes first
                write_lines(self._fd, text.encode("utf-8", "replace"))
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed
            if not self._failed:
                self._failed = True
                logger.error("cannot write the access log (%s); dropping its lines", exc)


def _descriptor(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def write_lines(fd: int, data: bytes) -> None:
    """Write ``data`` (whole lines) in pieces of at most ``PIPE_BUF`` bytes ending at a newline."""
    view = memoryview(data)
    start, total = 0, len(data)
    while start < total:
        end = start + PIPE_BUF
        if end < total:
            cut = data.rfind(b"\n", start, end)
            if cut >= 0:
                end = cut + 1
            else:  # one line longer than PIPE_BUF: it goes alone
                found = data.find(b"\n", end)
                end = total if found < 0 else found + 1
        else:
            end = total
        _write_all(fd, view[start:end])
        start = end


def _write_all(fd: int, piece: memoryview) -> None:
    while piece:
        try:
            written = os.write(fd, piece)
        except BlockingIOError:  # a non-blocking descriptor: wait until it takes more
            select.select([], [fd], [])
            continue
        piece = piece[written:]


def access_log_stream(config: Config) -> TextIO | None:
    """Daphne's rule: --access-log FILE or -, else stdout when verbosity >= 1."""
    if config.access_log == "-":
        return sys.stdout
    if config.access_log:
        return open(config.access_log, "a", buffering=1, encoding="utf-8")
    if config.verbosity >= 1:
        return sys.stdout
    return None


def setup_logging(config: Config) -> None:
    """The process-wide logging set-up for ``-v`` and ``--log-fmt``."""
    logging.basicConfig(level=LOG_LEVELS[config.verbosity], format=config.log_fmt)
