"""HTTP/2 (h2c, prior knowledge) benchmark: headrace vs hypercorn and granian, same run.

Every server runs the HTTP benchmark's app (``benchmarks/http/apps.py``) in one process
pinned to one core (``taskset -c 1``); ``h2load -c16 -m10`` is pinned to the other. Rounds
are interleaved (every server once per round) and the median req/s is reported, with each
server's ratio to hypercorn, so background load on a shared machine hits all alike.

    python3 benchmarks/http2/bench.py                       # 3 rounds x 5 s per server
    python3 benchmarks/http2/bench.py --rounds 5 --duration 10 --path /64k
    python3 benchmarks/http2/bench.py --json      # one JSON document (for benchmarks/run_all.py)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _process import free_port, wait_listening

REPO = Path(__file__).resolve().parents[2]
APP = "benchmarks.http.apps:app"

SERVERS = {
    "headrace": [sys.executable, "-m", "headrace", "-v", "0", "-p", "{port}", APP],
    "hypercorn": [
        sys.executable, "-m", "hypercorn", "--log-level", "warning", "--bind",
        "127.0.0.1:{port}", APP,
    ],
    "granian": [
        sys.executable, "-m", "granian", "--interface", "asgi", "--http", "2", "--workers", "1",
        "--log-level", "warning", "--port", "{port}", APP,
    ],
}  # fmt: skip


def pinned(argv: list[str], core: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(core), *argv]
    return argv


def run_h2load(port: int, path: str, duration: int) -> tuple[float, int]:
    """(req/s, errored requests) of one h2load run; raises when h2load reports no rate.

    Errored requests (a connection the server closed or reset) are counted, not fatal: a peer
    that drops some (hypercorn does under load) still gets its figure, marked with the count.
    """
    argv = ["h2load", "-c16", "-m10", "-D", str(duration), "--warm-up-time=1"]
    argv.append(f"http://127.0.0.1:{port}{path}")
    result = subprocess.run(pinned(argv, 0), capture_output=True, text=True, timeout=duration + 60)
    match = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", result.stdout)
    counts = re.search(r"(\d+) failed, (\d+) errored", result.stdout)
    if match is None or counts is None:
        raise RuntimeError(f"h2load failed:\n{result.stdout}\n{result.stderr}")
    return float(match.group(1)), int(counts.group(2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--path", default="/")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--json", action="store_true", help="print one JSON document at the end")
    args = parser.parse_args()
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    processes: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        for name in names:
            port = free_port()
            argv = [part.replace("{port}", str(port)) for part in SERVERS[name]]
            process = subprocess.Popen(
                pinned(argv, 1),
                cwd=REPO,
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes[name] = (process, port)
            wait_listening(port, process)
        results: dict[str, list[float]] = {name: [] for name in names}
        errors = dict.fromkeys(names, 0)
        for round_number in range(1, args.rounds + 1):
            for name in names:
                try:
                    rate, errored = run_h2load(processes[name][1], args.path, args.duration)
                except RuntimeError as exc:
                    raise RuntimeError(f"{name}: {exc}") from None
                results[name].append(rate)
                errors[name] += errored
                if not args.json:
                    flag = f"  ({errored} errored requests)" if errored else ""
                    print(f"round {round_number}: {name:10s} {rate:10.0f} req/s{flag}", flush=True)
    finally:
        for process, _ in processes.values():
            process.terminate()
        for process, _ in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
    medians = {name: statistics.median(rates) for name, rates in results.items()}
    if args.json:
        report = {
            "benchmark": "http2",
            "path": args.path,
            "rounds": results,
            "median": medians,
            "errored": errors,
        }
        print(json.dumps(report, indent=1))
        return 0
    base = medians.get("hypercorn")
    print(f"\nh2load -c16 -m10 h2c GET {args.path}, median of {args.rounds} x {args.duration} s")
    for name, rate in medians.items():
        ratio = f"{rate / base:6.1f}x hypercorn" if base else ""
        flag = f"  ({errors[name]} errored requests in all rounds)" if errors[name] else ""
        print(f"  {name:10s} {rate:10.0f} req/s  {ratio}{flag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
