"""Daphne-format access log lines.

One line per completed HTTP response and per WebSocket event, in the NCSA-like format Daphne
writes: ``host:port - - [dd/Mon/YYYY:HH:MM:SS] "METHOD URI" status size``. WebSocket events use
the pseudo-methods ``WSCONNECTING``, ``WSCONNECT``, ``WSREJECT`` and ``WSDISCONNECT`` with
``-`` for status and size.
"""

from __future__ import annotations

import datetime
import logging
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from headrace.server.config import Config

LOG_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}

WEBSOCKET_ACTIONS = {
    "connecting": "WSCONNECTING",
    "connected": "WSCONNECT",
    "rejected": "WSREJECT",
    "disconnected": "WSDISCONNECT",
}


def format_client(client: tuple[str, int] | list[object] | None) -> str:
    if not client:
        return "-"
    host, port = client[0], client[1]
    return f"{host}:{port}" if port is not None else str(host)


class AccessLogger:
    """Writes access log lines to a text stream (flushed per line)."""

    __slots__ = ("stream",)

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

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
        stamp = datetime.datetime.now().strftime("%d/%b/%Y:%H:%M:%S")
        self.stream.write(f'{host} - - [{stamp}] "{request}" {status} {size}\n')
        self.stream.flush()


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
