"""I/O-free wire protocols (no asyncio, no ASGI dicts): HTTP/1.1 helpers, HTTP/2, WebSocket."""
