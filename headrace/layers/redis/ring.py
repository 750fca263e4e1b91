"""Consistent hashing of channel and group names onto shards.

Each shard owns ``POINTS`` pseudo-random points on a 32-bit ring; a name belongs to the shard
owning the first point at or after the name's hash. Adding a shard moves only about
``1/shards`` of the names, which keeps most queues where their receivers look during a
resize. Process-local channels (``specific.abc!xyz``) are hashed by their non-local part
(``specific.abc!``), so every channel of one process lives on the shard that process reads:
channels_redis hashes the whole name there and loses messages with two hosts (its #221).
"""

from __future__ import annotations

import bisect
import hashlib

__all__ = ["HashRing", "shard_name"]

POINTS = 160


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


def shard_name(channel: str) -> str:
    """The part of a channel name that decides its shard: up to and including ``!``."""
    bang = channel.find("!")
    return channel if bang < 0 else channel[: bang + 1]


class HashRing:
    """Maps names to ``0 .. size-1`` by consistent hashing."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a hash ring needs at least one shard")
        self.size = size
        points = sorted(
            (_hash(f"shard-{shard}-{point}"), shard)
            for shard in range(size)
            for point in range(POINTS)
        )
        self._keys = [key for key, _ in points]
        self._shards = [shard for _, shard in points]

    def index(self, name: str) -> int:
        """The shard of ``name``."""
        if self.size == 1:
            return 0
        position = bisect.bisect_left(self._keys, _hash(name))
        return self._shards[position % len(self._shards)]
