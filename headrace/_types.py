"""ASGI type aliases shared by the server and the framework.

Scopes and events are plain dicts on the wire; these aliases name them so signatures
say what flows where. The server builds scopes, the framework consumes them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
