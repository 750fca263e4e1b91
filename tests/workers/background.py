"""Web workers and a separately started background worker sharing one IPC hub.

``application`` (served by ``headrace --workers N``) answers ``/job?n=K`` by sending a job to the
``background-jobs`` channel with a process-local reply channel and returning the reply.
``python -m tests.workers.background`` runs a :class:`headrace.worker.Worker` on that channel
(what ``runworker background-jobs`` does in a Django project): it doubles ``n`` and answers with
its pid. Both sides use the IPC layer's default path (tests set ``HEADRACE_IPC_DIR``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any
from urllib.parse import parse_qs

from headrace._types import Receive, Scope, Send
from headrace.consumer import AsyncConsumer
from headrace.layers.ipc import IPCChannelLayer
from headrace.routing import ChannelNameRouter
from headrace.worker import Worker

CHANNEL = "background-jobs"
layer = IPCChannelLayer()


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    number = int(parse_qs(scope["query_string"].decode())["n"][0])
    reply_channel = await layer.new_channel()
    await layer.send(CHANNEL, {"type": "job.double", "n": number, "reply": reply_channel})
    answer = await asyncio.wait_for(layer.receive(reply_channel), 10)
    body = f"{answer['result']} from {answer['pid']} via {os.getpid()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


class DoublingConsumer(AsyncConsumer):
    async def job_double(self, message: dict[str, Any]) -> None:
        answer = {"type": "job.done", "result": message["n"] * 2, "pid": os.getpid()}
        await layer.send(message["reply"], answer)


if __name__ == "__main__":
    print("background worker ready", flush=True)
    router = ChannelNameRouter({CHANNEL: DoublingConsumer.as_asgi()})
    Worker(application=router, channels=[CHANNEL], channel_layer=layer).run()
