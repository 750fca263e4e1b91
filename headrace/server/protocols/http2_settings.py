"""The settings of a server-side HTTP/2 connection (RFC 9113 §6.5.2), apart from the protocol.

:class:`H2Settings` is built once per server from its configuration
(:mod:`headrace.server.settings`), by every server that speaks HTTP/2, before any connection
arrives. It lives here, away from :mod:`headrace.server.protocols.http2` and its HPACK
dependency, so that starting a server loads the frame layer only when a client first speaks
HTTP/2 (see tests/server/test_startup_imports.py).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_WINDOW", "MAX_WINDOW", "H2Settings"]

DEFAULT_WINDOW = 65_535
MAX_WINDOW = 2**31 - 1

SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6
SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x8


@dataclass(frozen=True, slots=True)
class H2Settings:
    """Limits and advertised settings of one server-side HTTP/2 connection."""

    max_concurrent_streams: int = 100
    initial_window_size: int = 256 * 1024
    max_connection_window: int = 16 * 1024 * 1024
    max_frame_size: int = 16_384
    max_header_list_size: int = 64 * 1024
    header_table_size: int = 4096
    enable_connect_protocol: bool = True
    control_frame_burst: int = 1000
    control_frames_per_second: float = 200.0
    reset_burst: int = 200
    resets_per_second: float = 50.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_concurrent_streams <= MAX_WINDOW:
            raise ValueError("max_concurrent_streams must be between 1 and 2**31-1")
        if not 1 <= self.initial_window_size <= MAX_WINDOW:
            raise ValueError("initial_window_size must be between 1 and 2**31-1")
        if not 16_384 <= self.max_frame_size <= 2**24 - 1:
            raise ValueError("max_frame_size must be between 16384 and 2**24-1")

    @property
    def connection_window(self) -> int:
        """Receive window of the whole connection (every stream's window, capped)."""
        wanted = self.max_concurrent_streams * self.initial_window_size
        return max(DEFAULT_WINDOW, min(wanted, self.max_connection_window, MAX_WINDOW))

    def local_settings(self) -> dict[int, int]:
        values = {
            SETTINGS_HEADER_TABLE_SIZE: self.header_table_size,
            SETTINGS_ENABLE_PUSH: 0,
            SETTINGS_MAX_CONCURRENT_STREAMS: self.max_concurrent_streams,
            SETTINGS_INITIAL_WINDOW_SIZE: self.initial_window_size,
            SETTINGS_MAX_FRAME_SIZE: self.max_frame_size,
            SETTINGS_MAX_HEADER_LIST_SIZE: self.max_header_list_size,
        }
        if self.enable_connect_protocol:
            values[SETTINGS_ENABLE_CONNECT_PROTOCOL] = 1
        return values
