"""ASGI entry point: ``headrace todosite.asgi:application`` (or ``manage.py runserver``).

HTTP goes to Django (with static files when DEBUG); the WebSocket at ``/live/`` is a
demultiplexer whose ``tasks`` stream is the task binding.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "todosite.settings")

from django.conf import settings
from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()  # set Django up before importing models

from django.urls import path  # noqa: E402
from todo.consumers import Live  # noqa: E402

from headrace.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from headrace.security.websocket import AllowedHostsOriginValidator  # noqa: E402

http_app = django_asgi_app
if settings.DEBUG:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(django_asgi_app)

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(URLRouter([path("live/", Live.as_asgi())])),
    }
)
