"""What the server fuzz harnesses (http11.py, http2.py) share: the finding they raise, an
in-memory transport that a connection writes to, and a log handler that records errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["ErrorRecorder", "FindingError", "MemoryTransport"]


class FindingError(AssertionError):
    """An input made the server misbehave."""


class MemoryTransport(asyncio.Transport):
    """Collects writes; reading and closing only flip flags. ``half_close`` says whether the
    transport can send EOF (plain TCP can; TLS cannot, so a lingering close only reads)."""

    def __init__(self, half_close: bool = True) -> None:
        super().__init__()
        self.output = bytearray()
        self.closed = False
        self.eof_written = False
        self.paused = False
        self.half_close = half_close

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed or self.eof_written:
            raise FindingError("write after close")
        self.output += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        return self.half_close

    def write_eof(self) -> None:
        self.eof_written = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_write_buffer_size(self) -> int:
        return 0


class ErrorRecorder(logging.Handler):
    """Keeps every record logged at ERROR or above."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
