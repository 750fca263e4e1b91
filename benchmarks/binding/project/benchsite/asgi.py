"""The bound-socket application of the peer named by ``BENCH_PEER`` at ``/items/``."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402

if settings.PEER == "headrace":
    from django.urls import path
    from items.peer_headrace import ItemsConsumer

    from headrace.routing import ProtocolTypeRouter, URLRouter
else:
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path
    from items.peer_dcrf import ItemsConsumer

application = ProtocolTypeRouter(
    {"websocket": URLRouter([path("items/", ItemsConsumer.as_asgi())])}
)
