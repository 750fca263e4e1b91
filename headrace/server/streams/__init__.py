"""Wire-neutral ASGI streams: one request (http.py) or one WebSocket (websocket.py)."""
