"""Django for HTTP; bound card sockets, directly and behind the demultiplexer."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.live.site.settings")

from django.core.asgi import get_asgi_application

django_application = get_asgi_application()

from django.urls import path  # noqa: E402

from headrace.auth import AuthMiddlewareStack  # noqa: E402
from headrace.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from tests.live.cards.consumers import BoardCards, BoardMux  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        # scope["user"] is a lazy user object: the binding must only resolve it in a thread.
        "websocket": AuthMiddlewareStack(
            URLRouter(
                [
                    path("cards/<str:board>/", BoardCards.as_asgi()),
                    path("mux/<str:board>/", BoardMux.as_asgi()),
                ]
            )
        ),
    }
)
