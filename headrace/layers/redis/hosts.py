"""The ``hosts`` option: every shape channels_redis accepts, checked at construction.

Accepted entries (``hosts`` is a list of them; ``None`` means ``redis://localhost:6379``):

* a URL string: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) or
  ``unix:///path/to/redis.sock[?db=N]``;
* a ``(host, port)`` tuple or list;
* a dict with ``address`` (a URL or a ``(host, port)`` pair) plus redis-py connection options
  (``password``, ``db``, ``ssl_cert_reqs``, ``socket_connect_timeout``, ...);
* a Sentinel dict: ``master_name``, ``sentinels`` (list of ``(host, port)``), optional
  ``sentinel_kwargs`` (options for the Sentinel connections) plus options for the master
  connections;
* a Cluster dict (headrace only): ``{"cluster": True, "address": URL}`` or
  ``{"cluster": True, "startup_nodes": [(host, port), ...]}`` plus connection options. A
  cluster must be the only entry: the cluster shards itself.

Each entry becomes a :class:`HostSpec`, which knows how to build a fresh client. Clients are
built per event loop by :mod:`headrace.layers.redis.connections` (redis-py connections belong to
the loop that opened them). A wrong shape raises :class:`InvalidChannelLayerError` naming the
entry, before any connection is attempted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlparse

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from headrace.exceptions import InvalidChannelLayerError

__all__ = ["AnyRedis", "HostSpec", "decode_hosts"]

AnyRedis = aioredis.Redis | RedisCluster
Kind = Literal["url", "params", "sentinel", "cluster"]

URL_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_HOST = "redis://localhost:6379"
POOL_OPTIONS = frozenset({"max_connections", "connection_class", "ssl"})


def _no_retry() -> Retry:
    """The layer retries itself (with backoff and duplicate protection): redis-py must not."""
    return Retry(NoBackoff(), 0)


@dataclass(frozen=True)
class HostSpec:
    """One configured Redis endpoint (a server, a Sentinel-managed master or a cluster)."""

    kind: Kind
    description: str
    url: str | None = None
    nodes: tuple[tuple[str, int], ...] = ()
    master_name: str | None = None
    sentinel_kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def make_client(self) -> AnyRedis:
        """A new client with its own pool; call it inside the event loop that will use it."""
        options = {"retry": _no_retry(), **self.options}
        if self.kind == "url":
            assert self.url is not None
            return aioredis.Redis.from_url(self.url, **options)
        if self.kind == "params":
            host, port = self.nodes[0]
            return aioredis.Redis(host=host, port=port, **options)
        if self.kind == "sentinel":
            assert self.master_name is not None
            sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
                list(self.nodes), sentinel_kwargs=dict(self.sentinel_kwargs) or None, **options
            )
            client: aioredis.Redis = sentinel.master_for(self.master_name)
            return client
        return self._make_cluster(options)

    def pubsub_node(self, address: tuple[str, int] | None = None) -> HostSpec:
        """A plain-server spec for one node of this cluster (pub/sub is cluster-wide): the
        configured address (or first startup node), or ``address`` with the same options."""
        if address is not None:
            host, port = address
            return HostSpec("params", f"{host}:{port}", nodes=(address,), options=self.options)
        if self.url is not None:
            return HostSpec("url", self.url, url=self.url, options=self.options)
        return HostSpec("params", self.description, nodes=self.nodes[:1], options=self.options)

    def _make_cluster(self, options: dict[str, Any]) -> RedisCluster:
        options.pop("retry")
        if self.url is not None:
            return RedisCluster.from_url(self.url, **options)
        startup = [ClusterNode(host, port) for host, port in self.nodes]
        return RedisCluster(startup_nodes=startup, **options)


def _fail(index: int, entry: object, why: str) -> InvalidChannelLayerError:
    return InvalidChannelLayerError(f"hosts[{index}] = {entry!r}: {why}")


def _check_url(index: int, entry: object, url: str) -> str:
    scheme = urlparse(url).scheme
    if scheme not in URL_SCHEMES:
        raise _fail(index, entry, f"URL scheme must be one of {URL_SCHEMES}, not {scheme!r}")
    return url


def _check_pair(index: int, entry: object, pair: object) -> tuple[str, int]:
    if (
        isinstance(pair, tuple | list)
        and len(pair) == 2
        and isinstance(pair[0], str)
        and isinstance(pair[1], int)
    ):
        return pair[0], pair[1]
    raise _fail(index, entry, "expected a (host, port) pair with a str host and an int port")


def _check_options(index: int, entry: object, options: Mapping[str, Any]) -> None:
    """Build (without connecting) a connection with these options so typos fail now."""
    checked = {
        key: value
        for key, value in options.items()
        if not key.startswith("ssl") and key not in POOL_OPTIONS
    }
    try:
        aioredis.Connection(**checked)
    except TypeError as exc:
        raise _fail(index, entry, f"unknown connection option: {exc}") from None


def _decode_dict(index: int, entry: Mapping[str, Any]) -> HostSpec:
    options = dict(entry)
    if options.pop("cluster", False):
        return _decode_cluster(index, entry, options)
    if "master_name" in options:
        return _decode_sentinel(index, entry, options)
    if "address" not in options:
        raise _fail(
            index, entry, "a dict needs 'address', 'master_name' + 'sentinels', or 'cluster': True"
        )
    address = options.pop("address")
    _check_options(index, entry, options)
    if isinstance(address, str):
        url = _check_url(index, entry, address)
        return HostSpec("url", url, url=url, options=options)
    host, port = _check_pair(index, entry, address)
    return HostSpec("params", f"{host}:{port}", nodes=((host, port),), options=options)


def _decode_sentinel(index: int, entry: object, options: dict[str, Any]) -> HostSpec:
    master_name = options.pop("master_name")
    if not isinstance(master_name, str) or not master_name:
        raise _fail(index, entry, "'master_name' must be a non-empty str")
    sentinels = options.pop("sentinels", None)
    if not isinstance(sentinels, list | tuple) or not sentinels:
        raise _fail(index, entry, "'sentinels' must be a non-empty list of (host, port) pairs")
    nodes = tuple(_check_pair(index, entry, pair) for pair in sentinels)
    sentinel_kwargs = options.pop("sentinel_kwargs", None) or {}
    if not isinstance(sentinel_kwargs, Mapping):
        raise _fail(index, entry, "'sentinel_kwargs' must be a dict")
    _check_options(index, entry, options)
    return HostSpec(
        "sentinel",
        f"sentinel master {master_name!r}",
        nodes=nodes,
        master_name=master_name,
        sentinel_kwargs=dict(sentinel_kwargs),
        options=options,
    )


def _decode_cluster(index: int, entry: object, options: dict[str, Any]) -> HostSpec:
    if "address" in options:
        url = _check_url(index, entry, options.pop("address"))
        return HostSpec("cluster", f"cluster {url}", url=url, options=options)
    startup = options.pop("startup_nodes", None)
    if not isinstance(startup, list | tuple) or not startup:
        raise _fail(index, entry, "a cluster needs 'address' or a list of 'startup_nodes'")
    nodes = tuple(_check_pair(index, entry, pair) for pair in startup)
    return HostSpec("cluster", f"cluster {nodes[0]}", nodes=nodes, options=options)


def _decode_entry(index: int, entry: object) -> HostSpec:
    if isinstance(entry, bytes):
        entry = entry.decode()
    if isinstance(entry, str):
        url = _check_url(index, entry, entry)
        return HostSpec("url", url, url=url)
    if isinstance(entry, tuple | list):
        host, port = _check_pair(index, entry, entry)
        return HostSpec("params", f"{host}:{port}", nodes=((host, port),))
    if isinstance(entry, Mapping):
        return _decode_dict(index, entry)
    raise _fail(index, entry, "expected a URL, a (host, port) pair or a dict")


def decode_hosts(hosts: Sequence[Any] | None) -> list[HostSpec]:
    """Check and normalise the ``hosts`` option (see the module docstring)."""
    if hosts is None:
        return [_decode_entry(0, DEFAULT_HOST)]
    if isinstance(hosts, str | bytes) or not isinstance(hosts, list | tuple):
        raise InvalidChannelLayerError(
            f"hosts must be a list of hosts, even with one host; got {hosts!r}"
        )
    if not hosts:
        raise InvalidChannelLayerError("hosts must not be an empty list")
    specs = [_decode_entry(index, entry) for index, entry in enumerate(hosts)]
    if len(specs) > 1 and any(spec.kind == "cluster" for spec in specs):
        raise InvalidChannelLayerError(
            "hosts: a Redis Cluster entry must be the only entry (the cluster shards itself)"
        )
    return specs
