"""Framing cost alone: headrace's codec vs websockets' sans-I/O ServerProtocol (no sockets).

    python3 benchmarks/websocket/bench_codec.py [--messages 100000] [--size 32]

Both sides parse the same masked client frames (fed one frame per ``receive_data`` call, as a
socket delivers them in an echo loop) and encode one server frame per message. Prints
microseconds per message (parse + encode) and the ratio. This is the measurement behind the
choice of an own codec for ``headrace.server.protocols.websocket``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from headrace.server.protocols.websocket import WebSocketProtocol

MASK = b"\x37\xfa\x21\x3d"


def masked_text_frame(payload: bytes) -> bytes:
    assert len(payload) < 126
    masked = bytes(byte ^ MASK[index % 4] for index, byte in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + MASK + masked


def headrace_loop(frames: list[bytes]) -> Callable[[], None]:
    protocol = WebSocketProtocol()

    def run() -> None:
        messages = protocol.messages
        for frame in frames:
            protocol.receive_data(frame)
            for message in messages:
                protocol.encode_message(message)
            messages.clear()

    return run


def websockets_loop(frames: list[bytes]) -> Callable[[], None]:
    protocol = ServerProtocol()
    protocol.receive_data(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    [request] = protocol.events_received()
    protocol.send_response(protocol.accept(request))
    protocol.data_to_send()
    assert protocol.state is State.OPEN

    received: list[Frame] = []

    def run() -> None:
        for frame in frames:
            protocol.receive_data(frame)
            for event in protocol.events_received():
                protocol.send_frame(Frame(Opcode.TEXT, event.data))
                received.append(event)
            protocol.data_to_send()
        assert len(received) == len(frames)
        received.clear()

    return run


def measure(run: Callable[[], None], count: int) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    payload = os.urandom(args.size // 2).hex().encode()[: args.size]
    frames = [masked_text_frame(payload)] * args.messages
    ours = min(measure(headrace_loop(frames), args.messages) for _ in range(3))
    theirs = min(measure(websockets_loop(frames), args.messages) for _ in range(3))
    print(f"headrace codec      {ours:6.2f} us/message")
    print(f"websockets sans-I/O {theirs:6.2f} us/message")
    print(f"headrace is {theirs / ours:.1f}x faster per message (parse + encode)")


if __name__ == "__main__":
    main()
