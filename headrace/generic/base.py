"""The Channels-1 class-based consumer: ``BaseConsumer``.

A 1.x class-based consumer is instantiated once per message, as ``Consumer(message,
**kwargs)`` (that is what :func:`headrace.routing.route_class` calls), and the constructor
dispatches at once: ``method_mapping`` maps each channel name to the name of the method
that handles it. The class flags ``channel_session`` and ``channel_session_user`` wrap the
handler in the decorators of the same name; :meth:`BaseConsumer.get_handler` is the place to
add more. ``self.message`` and ``self.kwargs`` are the current message and routing kwargs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from headrace.auth import channel_session_user
from headrace.routing import RouteClass, route_class
from headrace.sessions import channel_session

__all__ = ["BaseConsumer"]

Handler = Callable[..., Any]


class BaseConsumer:
    """Dispatches each message to the method ``method_mapping`` names for its channel."""

    method_mapping: ClassVar[Mapping[str, str]] = {}
    channel_session: ClassVar[bool] = False
    channel_session_user: ClassVar[bool] = False

    def __init__(self, message: Any, **kwargs: Any) -> None:
        self.message = message
        self.kwargs = kwargs
        self.dispatch(message, **kwargs)

    @classmethod
    def channel_names(cls) -> set[str]:
        """The channels this consumer handles (what ``route_class`` listens on)."""
        return set(cls.method_mapping)

    @classmethod
    def as_route(cls, attrs: Mapping[str, Any] | None = None, **filters: str) -> RouteClass:
        """``route_class(cls, **filters)``; ``attrs`` makes a subclass with those class
        attributes first (one class, several routes with different settings)."""
        consumer_class: type[BaseConsumer] = cls
        if attrs is not None:
            if not isinstance(attrs, Mapping):
                raise TypeError(f"as_route(attrs=...) must be a dict, not {type(attrs).__name__}")
            consumer_class = type(cls.__name__, (cls,), dict(attrs))
        return route_class(consumer_class, **filters)

    def get_handler(self, message: Any, **kwargs: Any) -> Handler:
        """The bound method for the message's channel, wrapped in the session decorators
        the class flags ask for."""
        channel = message.channel.name
        try:
            method_name = self.method_mapping[channel]
        except KeyError:
            raise ValueError(
                f"{type(self).__name__} has no method for channel {channel!r} in its "
                f"method_mapping ({sorted(self.method_mapping)})"
            ) from None
        handler: Handler = getattr(self, method_name)
        if self.channel_session_user:
            return channel_session_user(handler)
        if self.channel_session:
            return channel_session(handler)
        return handler

    def dispatch(self, message: Any, **kwargs: Any) -> Any:
        """Run the handler of ``message``."""
        return self.get_handler(message, **kwargs)(message, **kwargs)
