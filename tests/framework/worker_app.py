"""Application for the runworker test.

The in-memory layer lives inside the worker process, so the job is queued on the ``jobs``
channel when this module is imported (before the worker starts listening). The worker then
delivers it through the real listener -> router -> consumer path; the consumer prints and
stops the worker with SIGTERM, which ``Worker.run`` turns into a clean exit (status 0).
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from headrace.consumer import AsyncConsumer
from headrace.layers import get_channel_layer
from headrace.routing import ChannelNameRouter, ProtocolTypeRouter


class Jobs(AsyncConsumer):
    async def job_run(self, message: dict[str, Any]) -> None:
        print(f"job handled: {message['n']}", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)


async def _enqueue_first_job() -> None:
    layer = get_channel_layer()
    if layer is None:  # the settings without a layer: runworker must refuse to start
        return
    await layer.send("jobs", {"no": "type: logged and skipped"})
    await layer.send("jobs", {"type": "job.run", "n": 42})


asyncio.run(_enqueue_first_job())

application = ProtocolTypeRouter({"channel": ChannelNameRouter({"jobs": Jobs.as_asgi()})})
