"""What ``enforce_ordering`` costs: one WebSocket sending N frames through the Channels-1
example (interface server + two workers of two threads, over Redis or IPC), echoed by a plain
consumer (``/echo/``) and by the strictly ordered generic consumer (``/generic/echo/``).

    PYTHONPATH=$PWD python3 benchmarks/channels1/ordering.py --kind redis --messages 80 --rounds 3

Prints frames/s per round and the ratio of the medians (ordered / plain). The ordered path
must also deliver the frames in order; the plain one may not, so only its count is checked.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import websockets

from tests.channels1.api.processes import ExampleSite


async def one_round(site: ExampleSite, path: str, messages: int, ordered: bool) -> float:
    async with websockets.connect(site.ws_url + path, open_timeout=30) as socket:
        started = time.perf_counter()
        for n in range(messages):
            await socket.send(f"m{n}")
        replies = [await asyncio.wait_for(socket.recv(), 30) for _ in range(messages)]
        elapsed = time.perf_counter() - started
    expected = [f"m{n}" for n in range(messages)]
    if ordered and replies != expected:
        raise AssertionError("the ordered consumer answered out of order")
    if sorted(replies) != sorted(expected):
        raise AssertionError("frames were lost")
    return messages / elapsed


async def measure(site: ExampleSite, messages: int, rounds: int) -> None:
    results: dict[str, list[float]] = {"plain": [], "ordered": []}
    for _ in range(rounds):
        results["plain"].append(await one_round(site, "/echo/", messages, ordered=False))
        results["ordered"].append(await one_round(site, "/generic/echo/", messages, ordered=True))
    for name, values in results.items():
        print(f"{name:8} frames/s: {', '.join(f'{v:.0f}' for v in values)}")
    ratio = statistics.median(results["ordered"]) / statistics.median(results["plain"])
    print(f"ordered / plain (medians): {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["redis", "ipc"], default="redis")
    parser.add_argument("--messages", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    site = ExampleSite(options.kind, routing="examples.channels1.project.routing.channel_routing")
    try:
        site.start_server()
        site.start_worker("--threads", "2")
        site.start_worker("--threads", "2")
        asyncio.run(measure(site, options.messages, options.rounds))
    finally:
        site.close()


if __name__ == "__main__":
    main()
