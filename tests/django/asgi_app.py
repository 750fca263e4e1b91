"""ASGI application of the test project: Django for HTTP, a who-am-I socket for WebSocket
(``/ws/token/``: the same socket behind bearer-token authentication).

Written as plain ASGI (no routing classes) so the Django-integration tests depend only on
the middleware under test and the server.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django.settings")

from django.core.asgi import get_asgi_application

from headrace._types import Receive, Scope, Send

django_application = get_asgi_application()

from headrace.auth import AuthMiddlewareStack  # noqa: E402
from headrace.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from headrace.tokens import SignedTokenAuthenticator, TokenAuthMiddleware  # noqa: E402


async def whoami_socket(scope: Scope, receive: Receive, send: Send) -> None:
    """Accepts, sends the user's name, path and root_path, then echoes text until disconnect."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    user = scope["user"]
    name = user.username if user.is_authenticated else "anonymous"
    payload = {"user": name, "path": scope["path"], "root_path": scope.get("root_path", "")}
    await send({"type": "websocket.send", "text": json.dumps(payload)})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text") or ""})


websocket_application = AllowedHostsOriginValidator(AuthMiddlewareStack(whoami_socket))
token_application = AllowedHostsOriginValidator(
    TokenAuthMiddleware(whoami_socket, SignedTokenAuthenticator(), reject_invalid=True)
)


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket" and scope["path"] == "/ws/token/":
        await token_application(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket_application(scope, receive, send)
    else:
        await django_application(scope, receive, send)
