"""An I/O-free decoder for an HTTP/1.1 chunked request body (RFC 9112 §7.1).

httptools decodes the bodies of ordinary HTTP/1.1 requests. This decoder serves the one place
where a body must be collected after httptools has let go of the bytes: an ``Upgrade: h2c``
request with a chunked body, which the HTTP/2 wire buffers whole before it answers ``101``
and serves the request as stream 1. Feed it bytes; it returns the bytes after the body once
the body (and its trailer section) is complete, and raises ``ValueError`` on bad framing or a
body above its limit.
"""

from __future__ import annotations


class ChunkedBody:
    """Decodes a whole chunked body, collected up to ``limit`` bytes."""

    __slots__ = ("_buffer", "_remaining", "_state", "body", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.body = bytearray()
        self._buffer = bytearray()
        self._state = "size"
        self._remaining = 0

    def feed(self, data: bytes) -> bytes | None:
        """Add bytes; the bytes after the body once it is complete, else None (ValueError)."""
        self._buffer += data
        while True:
            if not self._step():
                return None
            if self._state == "done":
                return bytes(self._buffer)

    def _step(self) -> bool:
        """One step of the state machine; False when it needs more bytes."""
        state = self._state
        if state == "size":
            return self._step_size()
        if state == "data":
            return self._step_data()
        if state == "crlf":
            return self._step_crlf()
        return self._step_trailers()

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > 4096:
                raise ValueError("chunk line too long")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _step_size(self) -> bool:
        line = self._line()
        if line is None:
            return False
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size < 0 or len(self.body) + size > self.limit:
            raise ValueError("chunk too large")
        self._state, self._remaining = ("trailers", 0) if size == 0 else ("data", size)
        return True

    def _step_data(self) -> bool:
        take = min(self._remaining, len(self._buffer))
        self.body += self._buffer[:take]
        del self._buffer[:take]
        self._remaining -= take
        if self._remaining:
            return False
        self._state = "crlf"
        return True

    def _step_crlf(self) -> bool:
        if len(self._buffer) < 2:
            return False
        if self._buffer[:2] != b"\r\n":
            raise ValueError("missing CRLF after chunk")
        del self._buffer[:2]
        self._state = "size"
        return True

    def _step_trailers(self) -> bool:
        line = self._line()
        if line is None:
            return False
        if not line:
            self._state = "done"
        return True
