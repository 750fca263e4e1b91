"""The consumers both stacks run, written against the 1.x message API only."""

RAW_BODY = b"Hello, decoupled world!"
RAW_HEADERS = [[b"content-type", b"text/plain"]]


def ws_connect(message):
    """Accept every WebSocket."""
    message.reply_channel.send({"accept": True})


def ws_receive(message):
    """Echo a text frame (or a binary one) back on the connection's reply channel."""
    text = message.content.get("text")
    if text is not None:
        message.reply_channel.send({"text": text})
    else:
        message.reply_channel.send({"bytes": message.content["bytes"]})


def http_raw(message):
    """Answer ``http.request`` directly with a small 1.x ``http.response``."""
    message.reply_channel.send({"status": 200, "headers": RAW_HEADERS, "content": RAW_BODY})
