"""Daphne-format access log lines.

One line per completed HTTP response and per WebSocket event, in the NCSA-like format Daphne
writes: ``host:port - - [dd/Mon/YYYY:HH:MM:SS] "METHOD URI" status size``. WebSocket events use
the pseudo-methods ``WSCONNECTING``, ``WSCONNECT``, ``WSREJECT`` and ``WSDISCONNECT`` with
``-`` for status and size.
"""

from __future__ import annotations

import datetime
from typing import TextIO

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
