"""Django views behind a Channels-1 layer: ``http.request`` messages in, ``http.response`` out.

Theory of operation
-------------------
In the decoupled (Channels 1.x) mode an interface server turns every HTTP request into one
``http.request`` message on the channel layer, and a worker answers it on the message's
``reply_channel``. This module is the worker side for Django views:

* :class:`AsgiRequest` is a Django ``HttpRequest`` built from the message: ``method``,
  ``path`` (split into ``SCRIPT_NAME`` / ``PATH_INFO`` by ``root_path``), ``query_string``,
  ``headers`` (into ``META`` the way a WSGI server would put them), ``client`` / ``server``
  and the body. A body over the message limit arrives partly in ``body`` and the rest as
  ``{content, more_content, closed}`` chunks on ``body_channel``, read here through the layer
  with a bounded wait (:attr:`AsgiRequest.body_receive_timeout`): chunks that stop coming
  raise :class:`RequestTimeout` (answered 408), a client that went away raises
  :class:`RequestAborted` (nothing to answer). The body is spooled to a temporary file past
  ``FILE_UPLOAD_MAX_MEMORY_SIZE``, so a large upload does not sit in memory twice.
* :class:`AsgiHandler` is a Django ``BaseHandler``: it loads the project's middleware once and
  runs the URLconf for each message, sending ``request_started`` (and, through
  ``response.close()``, ``request_finished``), so database connections are recycled as Django
  does per request. Calling it with a message yields the reply messages:
  ``{status, headers, content, more_content}`` first, then ``{content, more_content}`` chunks
  of at most :attr:`AsgiHandler.chunk_size` bytes (512 KiB, as Channels 1.x). Streaming
  responses and ``FileResponse`` go out chunk by chunk as the iterator yields them. Errors in
  a view become Django's 500 response; an error while a streaming body is produced ends the
  body (the status line is gone already) and is logged.
* :class:`ViewConsumer` is the 1.x consumer for ``http.request``: it sends every reply
  message at once (``immediately=True``, so a streaming body is not held until the view ends),
  waiting out a full reply channel for at most :attr:`ViewConsumer.reply_timeout` seconds. The
  one exception is a response that is whole in its first message (most views): that message
  is sent the ordinary way, held until the consumer returns, which is right after it. In the
  worker the held send leaves from the worker's own loop with its next receive, one write on
  its connection, instead of a hand-off to the layer's sync portal thread and a round trip of
  its own; outside a worker it is sent at once, as before. Such a reply goes to a fresh reply
  channel that nothing else writes to, so it cannot find it full.
  The 1.x worker routes any ``http.request`` with no route of its own here.

Django is imported at module level: this module is only reached from Django projects.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import Any

from django import http
from django.conf import settings
from django.core import signals
from django.core.handlers import base
from django.urls import set_script_prefix

from headrace.exceptions import RequestAborted, RequestTimeout

__all__ = [
    "AsgiHandler",
    "AsgiRequest",
    "RequestAborted",
    "RequestTimeout",
    "ResponseLater",
    "ViewConsumer",
]

logger = logging.getLogger("headrace.request")

ResponseMessage = dict[str, Any]


class ResponseLater(Exception):  # the Channels 1.x name
    """Raised by a view that leaves the answer to another consumer (HTTP long-poll)."""


def _header_name_to_meta(name: str) -> str:
    key = name.upper().replace("-", "_")
    if key in ("CONTENT_LENGTH", "CONTENT_TYPE"):
        return key
    return f"HTTP_{key}"


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _headers_to_meta(headers: Iterable[Any]) -> dict[str, str]:
    """HTTP headers as WSGI ``META`` keys; repeated headers joined with commas (cookies: ``;``)."""
    meta: dict[str, str] = {}
    for name, value in headers:
        key = _header_name_to_meta(_text(name))
        text = _text(value)
        if key in meta:
            separator = "; " if key == "HTTP_COOKIE" else ","
            text = meta[key] + separator + text
        meta[key] = text
    return meta


class AsgiRequest(http.HttpRequest):  # type: ignore[misc]  # Django is untyped here
    """A Django request decoded from a Channels-1 ``http.request`` message.

    ``message`` is the 1.x message object (``.content``, ``.reply_channel``,
    ``.channel_layer``); ``reply_channel`` is exposed as an attribute, as in Channels 1.x."""

    body_receive_timeout: float = 60.0
    """Seconds to wait for the next body chunk before giving up with :class:`RequestTimeout`."""

    ResponseLater: type[Exception]
    """Raise from a view to answer the request later from another consumer (long-poll)."""

    def __init__(self, message: Any) -> None:
        self.message = message
        self.reply_channel = message.reply_channel
        content: dict[str, Any] = message.content
        self._content_length = 0
        self._post_parse_error = False
        self._read_started = False
        self.resolver_match = None
        self.script_name = content.get("root_path") or settings.FORCE_SCRIPT_NAME or ""
        full_path = content["path"]
        if isinstance(full_path, bytes):
            full_path = full_path.decode("utf-8")
        if self.script_name and full_path.startswith(self.script_name):
            self.path_info = full_path[len(self.script_name) :] or "/"
        else:
            self.path_info = full_path
        self.path = self.script_name.rstrip("/") + self.path_info
        self.method = str(content["method"]).upper()
        self._scheme = str(content.get("scheme") or "http")
        self.META = self._build_meta(content)
        self._content_length = self._declared_length()
        self._set_content_type_params(self.META)
        self._stream = self._read_body(content)

    def _get_scheme(self) -> str:
        return self._scheme

    def _build_meta(self, content: dict[str, Any]) -> dict[str, Any]:
        query = content.get("query_string") or b""
        meta: dict[str, Any] = {
            "REQUEST_METHOD": self.method,
            "QUERY_STRING": _text(query),
            "SCRIPT_NAME": self.script_name,
            "PATH_INFO": self.path_info,
            "SERVER_PROTOCOL": f"HTTP/{content.get('http_version') or '1.1'}",
            "wsgi.url_scheme": self._scheme,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
        }
        client = content.get("client")
        if client:
            meta["REMOTE_ADDR"] = str(client[0])
            meta["REMOTE_HOST"] = str(client[0])
            meta["REMOTE_PORT"] = int(client[1])
        server = content.get("server")
        if server:
            meta["SERVER_NAME"] = str(server[0])
            meta["SERVER_PORT"] = str(server[1])
        else:
            meta["SERVER_NAME"] = "unknown"
            meta["SERVER_PORT"] = "0"
        meta.update(_headers_to_meta(content.get("headers") or ()))
        return meta

    def _declared_length(self) -> int:
        try:
            return max(int(self.META.get("CONTENT_LENGTH") or 0), 0)
        except ValueError:
            return 0

    def _read_body(self, content: dict[str, Any]) -> Any:
        """The whole body in a spooled file: ``body`` plus every chunk on ``body_channel``."""
        spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115  # the request owns it
            max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b"
        )
        try:
            spool.write(content.get("body") or b"")
            body_channel = content.get("body_channel")
            if body_channel:
                self._read_body_channel(body_channel, spool)
        except BaseException:
            spool.close()
            raise
        if not self._content_length:
            self._content_length = spool.tell()
        spool.seek(0)
        return spool

    def _read_body_channel(self, body_channel: str, spool: Any) -> None:
        layer = self.message.channel_layer
        deadline = time.monotonic() + self.body_receive_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestTimeout(
                    f"No body chunk on {body_channel!r} for {self.body_receive_timeout:g} s"
                )
            chunk = _receive_one(layer, body_channel)
            if chunk is None:
                continue
            if chunk.get("closed"):
                raise RequestAborted("Client closed the request while sending its body")
            spool.write(chunk.get("content") or b"")
            if not chunk.get("more_content", False):
                return
            deadline = time.monotonic() + self.body_receive_timeout

    @cached_property
    def GET(self) -> http.QueryDict:  # Django's attribute name
        return http.QueryDict(self.META["QUERY_STRING"])

    def _get_post(self) -> Any:
        if not hasattr(self, "_post"):
            self._load_post_and_files()
        return self._post

    def _set_post(self, post: Any) -> None:
        self._post = post

    def _get_files(self) -> Any:
        if not hasattr(self, "_files"):
            self._load_post_and_files()
        return self._files

    POST = property(_get_post, _set_post)
    FILES = property(_get_files)

    @cached_property
    def COOKIES(self) -> dict[str, str]:  # Django's attribute name
        cookies: dict[str, str] = http.parse_cookie(self.META.get("HTTP_COOKIE", ""))
        return cookies


AsgiRequest.ResponseLater = ResponseLater


def _receive_one(layer: Any, channel: str) -> dict[str, Any] | None:
    """The next message on ``channel``, or ``None`` after the layer's blocking timeout."""
    message: dict[str, Any] | None = layer.receive([channel], block=True)[1]
    return message


def _chunks(data: bytes, size: int) -> Iterator[tuple[bytes, bool]]:
    """``data`` in pieces of at most ``size`` bytes, each with "is it the last one"."""
    if not data:
        yield b"", True
        return
    for start in range(0, len(data), size):
        yield data[start : start + size], start + size >= len(data)


class AsgiHandler(base.BaseHandler):  # type: ignore[misc]  # Django is untyped here
    """Runs Django's middleware and URLconf for ``http.request`` messages.

    ``AsgiHandler()(message)`` yields the reply messages for one request;
    :meth:`encode_response` turns any Django response into reply messages."""

    request_class = AsgiRequest
    chunk_size: int = 512 * 1024

    def __init__(self) -> None:
        super().__init__()
        self.load_middleware()

    def __call__(self, message: Any) -> Iterator[ResponseMessage]:
        content = message.content
        set_script_prefix(content.get("root_path") or settings.FORCE_SCRIPT_NAME or "")
        signals.request_started.send(sender=self.__class__, message=message)
        response = self._response_for(message)
        if response is None:
            signals.request_finished.send(sender=self.__class__)
            return
        try:
            yield from self.encode_response(response)
        finally:
            response.close()

    def _response_for(self, message: Any) -> Any:
        try:
            request = self.request_class(message)
        except UnicodeDecodeError:
            logger.warning("Bad request (undecodable path or headers)", exc_info=True)
            return http.HttpResponseBadRequest()
        except RequestTimeout as exc:
            logger.warning("Request body timed out: %s", exc)
            return http.HttpResponse("408 Request Timeout (upload too slow)", status=408)
        except RequestAborted:
            return None
        except Exception:
            logger.exception("Bad request message")
            return http.HttpResponseBadRequest()
        try:
            response = self.get_response(request)
        except ResponseLater:
            return None
        if isinstance(response, http.FileResponse):
            response.block_size = self.chunk_size
        return response

    @classmethod
    def response_headers(cls, response: Any) -> list[list[bytes]]:
        headers = [
            [str(name).encode("latin-1"), str(value).encode("latin-1")]
            for name, value in response.items()
        ]
        for cookie in response.cookies.values():
            headers.append([b"Set-Cookie", cookie.output(header="").strip().encode("latin-1")])
        return headers

    @classmethod
    def encode_response(cls, response: Any) -> Iterator[ResponseMessage]:
        """Reply messages for ``response``: the head with the first chunk, then the rest."""
        head: ResponseMessage = {
            "status": response.status_code,
            "headers": cls.response_headers(response),
        }
        if not response.streaming:
            yield from cls._chunked(head, response.content)
            return
        pending: ResponseMessage = head
        try:
            for part in response:
                if not part:
                    continue
                for chunk, _ in _chunks(bytes(part), cls.chunk_size):
                    yield {**pending, "content": chunk, "more_content": True}
                    pending = {}
        except Exception:
            logger.exception("Error while streaming the response body")
            if "status" in pending:
                pending = {
                    "status": 500,
                    "headers": [[b"Content-Type", b"text/plain"]],
                    "content": b"Internal Server Error",
                }
        yield {"content": b"", **pending, "more_content": False}

    @classmethod
    def _chunked(cls, head: ResponseMessage, body: bytes) -> Iterator[ResponseMessage]:
        message = head
        for chunk, last in _chunks(body, cls.chunk_size):
            yield {**message, "content": chunk, "more_content": not last}
            message = {}


class ViewConsumer:
    """The 1.x consumer that serves ``http.request`` messages with Django views."""

    handler_class: type[AsgiHandler] = AsgiHandler
    reply_timeout: float = 60.0
    """Seconds to keep retrying a reply to a full reply channel before dropping the request."""

    def __init__(self) -> None:
        self.handler = self.handler_class()

    def __call__(self, message: Any, **kwargs: Any) -> None:
        replies = self.handler(message)
        first = True
        try:
            for reply in replies:
                if first and not reply.get("more_content", False):
                    message.reply_channel.send(reply)  # the whole response (see module docs)
                elif not self._send_reply(message, reply):
                    return
                first = False
        finally:
            close = getattr(replies, "close", None)
            if close is not None:
                close()

    def _send_reply(self, message: Any, reply: ResponseMessage) -> bool:
        full = getattr(message.channel_layer, "ChannelFull", None)
        deadline = time.monotonic() + self.reply_timeout
        while True:
            try:
                message.reply_channel.send(reply, immediately=True)
                return True
            except Exception as exc:
                if full is None or not isinstance(exc, full):
                    raise
                if time.monotonic() >= deadline:
                    logger.error(
                        "Reply channel %s stayed full for %g s; dropping the response",
                        message.reply_channel,
                        self.reply_timeout,
                    )
                    return False
                time.sleep(0.05)
