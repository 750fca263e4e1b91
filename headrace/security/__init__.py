"""Security middleware: origin validation for WebSocket connections (see ``websocket``)."""
