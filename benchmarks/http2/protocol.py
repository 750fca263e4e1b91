"""HTTP/2 protocol layer alone: headrace's frame layer vs the ``h2`` library, same traffic.

Why headrace has its own frame layer instead of ``h2``: this script feeds the same client bytes
(``h2`` as the client: the preface, SETTINGS, then GET requests on new streams, 100 per read,
as ``h2load -m100`` sends them) to

- ``h2``: a server-side ``H2Connection``; per ``RequestReceived`` it sends a 200 head and a
  5-byte body (``send_headers`` + ``send_data(end_stream=True)``), then ``data_to_send()``;
- headrace: :class:`headrace.server.protocols.http2.H2Protocol` with a listener doing the same
  (``send_headers`` + ``send_data`` + ``stream_finished``), then ``data_to_send()``.

No sockets, no event loop, no ASGI: only the protocol work a server does per request. Rounds
alternate between the two, and the median requests/s of each is printed with the ratio.

    python3 benchmarks/http2/protocol.py                 # 5 rounds of 20,000 requests
    python3 benchmarks/http2/protocol.py --rounds 3 --requests 50000
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events

from headrace.server.protocols.http2 import H2Protocol

REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"127.0.0.1:8000"),
    (b":path", b"/"),
    (b"user-agent", b"h2load nghttp2/1.59"),
    (b"accept", b"*/*"),
]
RESPONSE = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
BATCH = 100


def client_traffic(requests: int) -> list[bytes]:
    """The client's bytes, one element per socket read (the first holds the preface)."""
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    client = h2.connection.H2Connection(config)
    client.initiate_connection()
    client.increment_flow_control_window(2**31 - 1 - 65_535)  # room for every response body
    reads = [client.data_to_send()]
    for start in range(0, requests, BATCH):
        for _ in range(min(BATCH, requests - start)):
            client.send_headers(client.get_next_available_stream_id(), REQUEST, end_stream=True)
        reads.append(client.data_to_send())
    return reads


def run_h2(reads: list[bytes]) -> int:
    config = h2.config.H2Configuration(client_side=False, header_encoding=None)
    server = h2.connection.H2Connection(config)
    server.initiate_connection()
    served = 0
    for data in reads:
        for event in server.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                server.send_headers(event.stream_id, [(b":status", b"200"), *RESPONSE])
                server.send_data(event.stream_id, b"hello", end_stream=True)
                served += 1
        server.data_to_send()
    return served


class Responder:
    """An ``H2Listener`` that answers every request at once, as a trivial app would."""

    def __init__(self) -> None:
        self.protocol: H2Protocol | None = None
        self.served = 0

    def on_request(
        self, stream_id: int, pseudo: dict[bytes, bytes], headers: object, end_stream: bool
    ) -> None:
        protocol = self.protocol
        assert protocol is not None
        protocol.send_headers(stream_id, 200, RESPONSE, end_stream=False)
        protocol.send_data(stream_id, b"hello", end_stream=True)
        protocol.stream_finished(stream_id)
        self.served += 1

    def on_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        pass

    def on_reset(self, stream_id: int, error_code: int) -> None:
        pass

    def on_writable(self, stream_id: int) -> None:
        pass

    def on_terminated(self, error_code: int, reason: str) -> None:
        raise RuntimeError(f"connection ended: {reason} ({error_code})")


def run_headrace(reads: list[bytes]) -> int:
    responder = Responder()
    protocol = H2Protocol(responder)
    responder.protocol = protocol
    protocol.initiate()
    for data in reads:
        protocol.receive_data(data)
        protocol.data_to_send()
    return responder.served


def rate(runner: Callable[[list[bytes]], int], reads: list[bytes], expected: int) -> float:
    started = time.perf_counter()
    served = runner(reads)
    elapsed = time.perf_counter() - started
    if served != expected:
        raise RuntimeError(f"{runner.__name__} served {served} of {expected} requests")
    return served / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    reads = client_traffic(args.requests)
    results: dict[str, list[float]] = {"h2": [], "headrace": []}
    for _ in range(args.rounds):
        results["h2"].append(rate(run_h2, reads, args.requests))
        results["headrace"].append(rate(run_headrace, reads, args.requests))
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"{args.requests} requests x {args.rounds} rounds, protocol layer only (no I/O)")
    for name, value in medians.items():
        print(f"{name:>9}: {value:>10,.0f} req/s (median)")
    print(f"headrace / h2: {medians['headrace'] / medians['h2']:.1f}x")


if __name__ == "__main__":
    main()
