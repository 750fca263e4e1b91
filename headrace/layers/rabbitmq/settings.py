"""The RabbitMQ layer's options: one definition, the peers' spellings mapped or refused.

:func:`resolve_options` turns the ``CONFIG`` keywords into :class:`RabbitMQOptions`. It accepts
the layer's own names, the settings of ``asgi_rabbitmq`` (Channels 1) and ``channels_rabbitmq``
(Channels 4) where they mean the same thing, and refuses the others with an
:class:`~headrace.exceptions.InvalidChannelLayerError` (a ``ValueError``) that names the key and
says what to write instead. The contract keywords (``expiry``, ``group_expiry``, ``capacity``,
``channel_capacity``) are checked here too and then handed to ``BaseChannelLayer``.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from headrace.exceptions import InvalidChannelLayerError

__all__ = ["DEFAULT_URL", "RabbitMQOptions", "resolve_options"]

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"

ALIASES: Mapping[str, str] = {
    "prefetch_count": "prefetch",  # channels_rabbitmq
}
"""Peer spellings with the same meaning as one of ours."""

REFUSED: Mapping[str, str] = {
    "local_capacity": (
        "channels_rabbitmq's per-process buffer has no equivalent: write 'capacity' (the most "
        "messages one channel holds, process-local channels included)"
    ),
    "remote_capacity": (
        "channels_rabbitmq's per-process queue length has no equivalent: write 'capacity' "
        "(enforced by the broker on every worker channel's queue)"
    ),
    "symmetric_encryption_keys": (
        "message encryption is not supported: remove it and use an amqps:// URL with "
        "'ssl_context' to encrypt traffic to the broker"
    ),
    "hosts": "write 'url' (one AMQP URL, or a list of them for a cluster)",
    "connection_timeout": "write 'connect_timeout' (seconds a call waits for the broker)",
    "heartbeat": "put it in the URL: amqp://host/?heartbeat=30",
}


@dataclass(frozen=True)
class RabbitMQOptions:
    """Everything the layer needs besides the contract keywords."""

    urls: tuple[str, ...]
    ssl_context: ssl.SSLContext | None
    prefix: str
    prefetch: int
    connect_timeout: float
    groups_exchange: str


def resolve_options(config: dict[str, Any]) -> RabbitMQOptions:
    """Take the RabbitMQ keywords out of ``config`` (what remains is for BaseChannelLayer)."""
    for key, replacement in REFUSED.items():
        if key in config:
            raise InvalidChannelLayerError(f"RabbitMQChannelLayer option {key!r}: {replacement}")
    for alias, name in ALIASES.items():
        if alias in config:
            if name in config:
                raise InvalidChannelLayerError(
                    f"RabbitMQChannelLayer got both {alias!r} and {name!r}: write only {name!r}"
                )
            config[name] = config.pop(alias)
    urls = _urls(config.pop("url", None), config.pop("host", None))
    ssl_context = config.pop("ssl_context", None)
    if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
        raise InvalidChannelLayerError(
            f"RabbitMQChannelLayer option 'ssl_context' must be an ssl.SSLContext, "
            f"not {type(ssl_context).__name__}"
        )
    prefix = config.pop("prefix", "asgi")
    if not isinstance(prefix, str) or not prefix or len(prefix) > 64:
        raise InvalidChannelLayerError(
            f"RabbitMQChannelLayer option 'prefix' must be a non-empty str of at most 64 "
            f"characters, not {prefix!r}"
        )
    groups_exchange = config.pop("groups_exchange", f"{prefix}.groups")
    _require_name("groups_exchange", groups_exchange)
    prefetch = _positive_int("prefetch", config.pop("prefetch", 10))
    connect_timeout = _positive_number("connect_timeout", config.pop("connect_timeout", 10.0))
    for name in ("expiry", "group_expiry"):
        if name in config:
            _positive_number(name, config[name])
    if "capacity" in config:
        _positive_int("capacity", config["capacity"])
    return RabbitMQOptions(
        urls=urls,
        ssl_context=ssl_context,
        prefix=prefix,
        prefetch=prefetch,
        connect_timeout=connect_timeout,
        groups_exchange=groups_exchange,
    )


def _urls(url: object, host: object) -> tuple[str, ...]:
    """``url`` (ours, asgi_rabbitmq's) or ``host`` (channels_rabbitmq's): a str or a list."""
    if url is not None and host is not None:
        raise InvalidChannelLayerError(
            "RabbitMQChannelLayer got both 'url' and 'host': write only 'url'"
        )
    key, value = ("host", host) if host is not None else ("url", url)
    if value is None:
        return (DEFAULT_URL,)
    candidates = [value] if isinstance(value, str) else value
    if not isinstance(candidates, Sequence) or not candidates:
        raise InvalidChannelLayerError(
            f"RabbitMQChannelLayer option {key!r} must be an AMQP URL or a non-empty list of "
            f"them, not {value!r}"
        )
    for candidate in candidates:
        if not isinstance(candidate, str) or not candidate.startswith(("amqp://", "amqps://")):
            raise InvalidChannelLayerError(
                f"RabbitMQChannelLayer option {key!r}: {candidate!r} is not an AMQP URL "
                "(write amqp://user:password@host:5672/vhost or amqps://...)"
            )
    return tuple(candidates)


def _require_name(key: str, value: object) -> None:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise InvalidChannelLayerError(
            f"RabbitMQChannelLayer option {key!r} must be a non-empty str, not {value!r}"
        )


def _positive_int(key: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidChannelLayerError(
            f"RabbitMQChannelLayer option {key!r} must be a positive int, not {value!r}"
        )
    return value


def _positive_number(key: str, value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise InvalidChannelLayerError(
            f"RabbitMQChannelLayer option {key!r} must be a positive number, not {value!r}"
        )
    return float(value)
