"""Not used by the Channels-1 worker; runserver's checks want ASGI_APPLICATION to import."""

from headrace.routing import ProtocolTypeRouter

application = ProtocolTypeRouter({})
