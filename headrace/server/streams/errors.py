"""The answers the server gives itself, written once for every wire.

Theory of operation
-------------------
Some requests never reach an application, or the application cannot answer them: a malformed
request (``400``), a method or protocol the server does not serve (``405``, ``501``, ``505``),
a body or head over the limits (``413``, ``431``), ``--limit-concurrency`` (``503``), an
application that failed or returned without a response (``500``), ``-t/--http-timeout``
(``503``), an invalid WebSocket handshake (``400``/``426``). Each is a small plain-text
response, and :func:`server_answer` is the one place that makes it: the status, the
``content-type`` field and the body (the detail given, else the status's text, and a newline).

A wire only frames an :class:`Answer`, with the one function it uses for every response of
its kind: HTTP/1.1 :func:`headrace.server.protocols.http11.complete_response` (also the
WebSocket-over-HTTP/1.1 denials), an HTTP/2 or WebSocket-over-HTTP/2 stream ``HEADERS`` +
``DATA`` through its sink, and :meth:`HTTPStream.send_error
<headrace.server.streams.http.HTTPStream.send_error>` for the answers made while a stream
exists. The one exception is the HTTP/2 protocol layer's ``431`` for an oversized header list,
made below the stream layer before any stream exists (it uses the same text).
"""

from __future__ import annotations

from dataclasses import dataclass

from headrace.server.protocols.http11 import reason_phrase

PLAIN_TEXT = (b"content-type", b"text/plain; charset=utf-8")

TEXTS = {
    413: "Content Too Large",  # RFC 9110 §15.5.14 (Python 3.11 still says "Request Entity")
    431: "Request Header Fields Too Large",
}
"""Texts that differ from Python's reason phrases."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A response the server makes itself: framed by the wire, decided by the stream layer."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def status_text(status: int) -> str:
    """The text of a server-made answer with no more specific detail."""
    return TEXTS.get(status) or reason_phrase(status)


def server_answer(
    status: int, detail: str | None = None, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> Answer:
    """The plain-text answer for ``status``: ``detail`` (or the status text) as its body.

    ``headers``: fields the answer needs besides ``content-type`` (``Sec-WebSocket-Version``
    on a ``426``)."""
    text = detail or status_text(status)
    return Answer(status, [*headers, PLAIN_TEXT], (text + "\n").encode("utf-8", "replace"))
