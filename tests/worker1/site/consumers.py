"""Channels-1 consumers the worker tests drive (each answers on the channel in ``reply``)."""

import os
import threading
import time
from typing import Any

from headrace.channel import Channel
from headrace.handler import ViewConsumer
from headrace.message import Message


def _answer(message: Message, immediately: bool = False, **content: Any) -> None:
    Channel(message["reply"]).send({"pid": os.getpid(), **content}, immediately=immediately)


def _wait_for_release(message: Message) -> None:
    """Block until the test sends anything to the message's ``release`` channel."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        channel, _ = message.channel_layer.receive([message["release"]], block=True)
        if channel is not None:
            return
    raise RuntimeError("never released")


def echo(message: Message) -> None:
    _answer(message, channel=message.channel.name, value=message.get("value"))


def room(message: Message, room: str, number: str) -> None:
    _answer(message, room=room, number=number, path=message["path"])


def crash(message: Message) -> None:
    _answer(message, step="sent before the error")  # held; goes out anyway, as in 1.x
    raise RuntimeError("consumer broke on purpose")


def held(message: Message) -> None:
    _answer(message, step="held")
    _answer(message, immediately=True, step="immediate")
    _wait_for_release(message)


def rendezvous(message: Message) -> None:
    """Say which thread runs it, then wait: with two threads two of these run at once."""
    _answer(message, immediately=True, step="started", thread=threading.get_ident())
    _wait_for_release(message)
    _answer(message, step="finished", value=message.get("value"))


async def async_echo(message: Message) -> None:
    _answer(message, channel=message.channel.name, value=message.get("value"))


class ShortUploadWait(ViewConsumer):
    """The view consumer with a body wait short enough for a test."""

    def __init__(self) -> None:
        super().__init__()
        self.handler.request_class = type(
            "ShortWaitRequest", (self.handler.request_class,), {"body_receive_timeout": 2.0}
        )


short_upload_wait = ShortUploadWait()


def ws_connect(message: Message) -> None:
    message.reply_channel.send({"accept": True})


def ws_echo(message: Message, **kwargs: Any) -> None:
    if message.get("text") is not None:
        message.reply_channel.send({"text": "echo: " + message["text"]})
    else:
        message.reply_channel.send({"bytes": message["bytes"]})
