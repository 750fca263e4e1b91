"""The server's permessage-deflate preferences (RFC 7692), apart from the WebSocket protocol.

:class:`DeflateConfig` is part of the settings every server builds at start
(:mod:`headrace.server.settings`); it lives here so that building them does not load
:mod:`headrace.server.protocols.websocket` and the ``websockets`` C helper it uses: those load
with the first WebSocket connection (see tests/server/test_startup_imports.py).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DeflateConfig"]


@dataclass(slots=True, frozen=True)
class DeflateConfig:
    """Server preferences. Window bits 9..15 (zlib cannot deflate with 8)."""

    enabled: bool = True
    server_max_window_bits: int = 12
    client_max_window_bits: int = 12
    memory_level: int = 5
    compression_level: int = 6
    compress_min_size: int = 128
