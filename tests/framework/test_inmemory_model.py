"""Property test: InMemoryChannelLayer behaves like a plain model of queues and sets.

Hypothesis drives random sequences of send / receive / group_add / group_discard / group_send /
flush against the layer and against a dict-of-deques model; every result must agree
(delivery order, ChannelFull exactly when the model is at capacity, group fan-out).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from headrace.exceptions import ChannelFull
from headrace.layers import InMemoryChannelLayer

CAPACITY = 3
CHANNELS = st.sampled_from(["a", "b", "c!x", "d!y"])
GROUPS = st.sampled_from(["g1", "g2"])


class LayerAgainstModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.layer = InMemoryChannelLayer(capacity=CAPACITY)
        self.queues: dict[str, deque[int]] = {}
        self.groups: dict[str, set[str]] = {}
        self.counter = 0

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(awaitable, 1))

    def teardown(self) -> None:
        self.loop.close()

    def next_value(self) -> int:
        self.counter += 1
        return self.counter

    def model_deliver(self, channel: str, value: int) -> bool:
        queue = self.queues.setdefault(channel, deque())
        if len(queue) >= CAPACITY:
            return False
        queue.append(value)
        return True

    @rule(channel=CHANNELS)
    def send(self, channel: str) -> None:
        value = self.next_value()
        accepted = self.model_deliver(channel, value)
        try:
            self.run(self.layer.send(channel, {"type": "m", "v": value}))
        except ChannelFull:
            assert not accepted
        else:
            assert accepted

    @rule(channel=CHANNELS)
    def receive(self, channel: str) -> None:
        queue = self.queues.get(channel)
        if not queue:
            return
        message = self.run(self.layer.receive(channel))
        assert message == {"type": "m", "v": queue.popleft()}

    @rule(group=GROUPS, channel=CHANNELS)
    def group_add(self, group: str, channel: str) -> None:
        self.groups.setdefault(group, set()).add(channel)
        self.run(self.layer.group_add(group, channel))

    @rule(group=GROUPS, channel=CHANNELS)
    def group_discard(self, group: str, channel: str) -> None:
        self.groups.get(group, set()).discard(channel)
        self.run(self.layer.group_discard(group, channel))

    @rule(group=GROUPS)
    def group_send(self, group: str) -> None:
        value = self.next_value()
        for channel in self.groups.get(group, set()):
            self.model_deliver(channel, value)
        self.run(self.layer.group_send(group, {"type": "m", "v": value}))

    @rule()
    def flush(self) -> None:
        self.queues.clear()
        self.groups.clear()
        self.run(self.layer.flush())

    @invariant()
    def same_pending_counts(self) -> None:
        for channel, queue in self.queues.items():
            pending = self.layer.channels.get(channel)
            assert (len(pending.entries) if pending else 0) == len(queue)


LayerAgainstModel.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
TestLayerAgainstModel = LayerAgainstModel.TestCase
