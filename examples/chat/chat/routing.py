"""WebSocket URLs: ``/ws/chat/<room>/``."""

from django.urls import re_path

from chat import consumers

websocket_urlpatterns = [
    re_path(r"^ws/chat/(?P<room_name>[A-Za-z0-9_-]{1,80})/$", consumers.ChatConsumer.as_asgi()),
]
