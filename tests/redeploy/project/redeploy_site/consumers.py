"""The code a redeploy changes: the tests rewrite ``VERSION`` before starting new workers.

A text message starting with ``all:`` goes to the ``room`` group (every socket that joined, on
every interface server); any other text is echoed to its sender. Replies carry ``VERSION`` so a
test sees which generation of workers answered.
"""

from __future__ import annotations

from headrace import Group
from headrace.message import Message

VERSION = "v1"
ROOM = "room"


def connect(message: Message) -> None:
    message.reply_channel.send({"accept": True})
    Group(ROOM).add(message.reply_channel)


def receive(message: Message) -> None:
    text = message.content["text"]
    if text.startswith("all:"):
        Group(ROOM).send({"text": f"{VERSION}:{text}"})
    else:
        message.reply_channel.send({"text": f"{VERSION}:{text}"})


def disconnect(message: Message) -> None:
    Group(ROOM).discard(message.reply_channel)


def version(message: Message) -> None:
    message.reply_channel.send(
        {"status": 200, "headers": [[b"content-type", b"text/plain"]], "content": VERSION.encode()}
    )
