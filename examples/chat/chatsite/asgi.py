"""ASGI entry point: ``headrace chatsite.asgi:application`` (or ``manage.py runserver``).

HTTP goes to Django (with static files when DEBUG, so the bare server needs no separate
static setup); WebSocket connections pass the origin check, get the session's user and
are routed to the chat consumer. The lifespan start-up applies pending migrations on a
fresh checkout (see ``chatsite.first_run``).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from django.conf import settings
from django.core.asgi import get_asgi_application

# Set Django up before importing code that imports models.
django_asgi_app = get_asgi_application()

from chat.routing import websocket_urlpatterns  # noqa: E402

from chatsite.first_run import FirstRunMigrations  # noqa: E402
from headrace.auth import AuthMiddlewareStack  # noqa: E402
from headrace.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from headrace.security.websocket import AllowedHostsOriginValidator  # noqa: E402

http_app = django_asgi_app
if settings.DEBUG:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_app = ASGIStaticFilesHandler(django_asgi_app)

application = FirstRunMigrations(
    ProtocolTypeRouter(
        {
            "http": http_app,
            "websocket": AllowedHostsOriginValidator(
                AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
            ),
        }
    )
)
