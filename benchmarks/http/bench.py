"""HTTP/1.1 benchmark: headrace vs uvicorn (httptools + uvloop), daphne and granian.

Every server runs the same app (``benchmarks/http/apps.py``), pinned to one core
(``taskset -c 1``); wrk is pinned to the other (``taskset -c 0``). For each scenario it prints
req/s, p50 and p99 latency, and each server's ratio to uvicorn.

    python3 benchmarks/http/bench.py                  # all servers, 3 rounds x 5 s per run
    python3 benchmarks/http/bench.py --rounds 5 --servers headrace,uvicorn

All servers start first (idle ones cost nothing); the wrk runs are interleaved round by round and
the median is reported, so background load on a shared machine hits every server alike.

Scenarios: GET plaintext (13 bytes), GET a 64 KiB body, POST echo of 1 KiB, POST echo of
64 KiB (a 64 KiB body each way). ``--json`` prints one JSON document (the median row and every
round per scenario and server) for ``benchmarks/run_all.py``. ``headrace-log`` is headrace with
its default access log (``-v 1``, a line per request to stdout, here a file).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _process import free_port, stop, wait_listening, wrk_figure

REPO = Path(__file__).resolve().parents[2]
APP = "benchmarks.http.apps:app"

SERVERS = {
    "headrace": [sys.executable, "-m", "headrace", "-v", "0", "-p", "{port}", APP],
    # headrace's default: -v 1, one access log line per request on stdout (here: a file)
    "headrace-log": [sys.executable, "-m", "headrace", "-p", "{port}", APP],
    "uvicorn": [
        sys.executable, "-m", "uvicorn", "--http", "httptools", "--loop", "uvloop",
        "--no-access-log", "--log-level", "warning", "--port", "{port}", APP,
    ],
    "daphne": [sys.executable, "-m", "daphne", "-v", "0", "-p", "{port}", APP],
    "granian": [
        sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1",
        "--log-level", "warning", "--port", "{port}", APP,
    ],
}  # fmt: skip
LOGGING = frozenset({"headrace-log"})
"""Servers whose stdout (their access log) goes to a file rather than /dev/null."""

POST_LUA = """
wrk.method = "POST"
wrk.body = string.rep("a", {size})
wrk.headers["Content-Type"] = "application/octet-stream"
"""

SCENARIOS = [
    ("plaintext", "/", None),
    ("64KiB", "/64k", None),
    ("POST 1KiB echo", "/echo", 1024),
    ("64KiB each way", "/echo", 64 * 1024),
]
"""(label, path, request body size for a POST or None for a GET); /echo answers the body."""


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and all its descendants (from /proc)."""
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = int(fields[11]) + int(fields[12])
    family, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        family.update(children)
        frontier.extend(children)
    return sum(times.get(pid, 0) for pid in family) / CLOCK_TICKS


def run_wrk(
    server_pid: int, port: int, path: str, script: str | None, duration: int, connections: int
) -> dict[str, float]:
    command = [
        "taskset",
        "-c",
        "0",
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
    ]
    if script:
        command += ["-s", script]
    cpu_before = tree_cpu_seconds(server_pid)
    output = subprocess.run(
        [*command, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True
    ).stdout
    cpu = tree_cpu_seconds(server_pid) - cpu_before
    requests = int(wrk_figure(output, r"(\d+) requests in"))
    return {
        "cpu_us": cpu / max(requests, 1) * 1e6,
        "rps": float(wrk_figure(output, r"Requests/sec:\s+([\d.]+)")),
        "p50": latency(output, "50%"),
        "p99": latency(output, "99%"),
        "errors": float(bool(re.search(r"Non-2xx|Socket errors", output))),
    }


def latency(output: str, label: str) -> float:
    match = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)", output)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def start_server(name: str) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    command = ["taskset", "-c", "1", *(part.format(port=port) for part in SERVERS[name])]
    if name in LOGGING:
        # A real file for the access log (writes to /dev/null would cost the kernel nothing);
        # the child keeps its descriptor, the parent's closes here.
        with tempfile.TemporaryFile() as log:
            process = popen_server(command, log)
    else:
        process = popen_server(command, subprocess.DEVNULL)
    wait_listening(port, process)
    return port, process


def popen_server(command: list[str], stdout: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        cwd=REPO,
        stdout=stdout,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )


def measure(
    names: list[str],
    scenarios: list[tuple[str, str, int | None]],
    rounds: int,
    duration: int,
    connections: int,
    scripts: dict[int, str],
) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Interleave the servers round by round so background load hits them alike.

    ``scripts``: the wrk Lua script for each POST body size."""
    results: dict[str, dict[str, list[dict[str, float]]]] = {name: {} for name in names}
    servers = {}
    try:
        for name in names:
            servers[name] = start_server(name)
        for port, process in servers.values():
            for _, path, size in scenarios:
                script = scripts.get(size) if size else None
                run_wrk(process.pid, port, path, script, 1, connections)
        for _ in range(rounds):
            for label, path, size in scenarios:
                for name, (port, process) in servers.items():
                    script = scripts.get(size) if size else None
                    row = run_wrk(process.pid, port, path, script, duration, connections)
                    results[name].setdefault(label, []).append(row)
    finally:
        for _, process in servers.values():
            stop(process)
    return results


def write_scripts(folder: str, scenarios: list[tuple[str, str, int | None]]) -> dict[int, str]:
    """One wrk Lua script per POST body size, in ``folder``."""
    scripts = {}
    for _, _, size in scenarios:
        if size and size not in scripts:
            path = os.path.join(folder, f"post{size}.lua")
            with open(path, "w") as handle:
                handle.write(POST_LUA.format(size=size))
            scripts[size] = path
    return scripts


def median_row(rows: list[dict[str, float]]) -> dict[str, float]:
    """The median round by req/s, with the median CPU per request of all rounds."""
    ordered = sorted(rows, key=lambda row: row["rps"])
    row = dict(ordered[len(ordered) // 2])
    row["cpu_us"] = statistics.median(item["cpu_us"] for item in rows)
    row["errors"] = max(item["errors"] for item in rows)
    return row


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--servers", default="headrace,uvicorn,daphne,granian")
    parser.add_argument(
        "--scenarios",
        default=",".join(label for label, _, _ in SCENARIOS),
        help="comma-separated scenario labels (default: all)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of the text report"
    )
    args = parser.parse_args()
    args.names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in args.names if name not in SERVERS]
    if unknown:
        parser.error(
            f"--servers: unknown server(s) {', '.join(unknown)}; known: {', '.join(SERVERS)}"
        )
    labels = [label.strip() for label in args.scenarios.split(",") if label.strip()]
    known = {label: (label, path, kind) for label, path, kind in SCENARIOS}
    unknown = [label for label in labels if label not in known]
    if unknown:
        parser.error(
            f"--scenarios: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    args.chosen = [known[label] for label in labels]
    return args


def main() -> None:
    args = parse_arguments()
    names = args.names
    with tempfile.TemporaryDirectory() as folder:
        scripts = write_scripts(folder, args.chosen)
        raw = measure(names, args.chosen, args.rounds, args.duration, args.connections, scripts)
    if args.json:
        print(json.dumps(json_report(raw, names, args), indent=1))
        return
    print(
        f"wrk -t1 -c{args.connections} -d{args.duration}s, median of {args.rounds} interleaved "
        "rounds; servers on core 1, wrk on core 0.\nRatios are vs uvicorn: req/s, and CPU "
        "efficiency (uvicorn's server CPU time per request / this server's; robust to load)."
    )
    for label, _, _ in args.chosen:
        print(f"\n== {label}")
        rows = {name: median_row(raw[name][label]) for name in names}
        base = rows["uvicorn"]["rps"] if "uvicorn" in rows else None
        base_cpu = rows["uvicorn"]["cpu_us"] if "uvicorn" in rows else None
        for name, row in rows.items():
            ratio = f"{row['rps'] / base:5.2f}x" if base else ""
            cpu_ratio = f"{base_cpu / row['cpu_us']:5.2f}x" if base_cpu else ""
            flag = "  (errors!)" if row["errors"] else ""
            print(
                f"{name:12s} {row['rps']:8.0f} req/s {ratio:>6s}  p50 {row['p50']:6.2f} ms"
                f"  p99 {row['p99']:7.2f} ms  {row['cpu_us']:6.1f} CPU-us/req {cpu_ratio:>6s}"
                f"{flag}"
            )
        print_round_ratios(raw, names, label)


def json_report(
    raw: dict[str, dict[str, list[dict[str, float]]]], names: list[str], args: argparse.Namespace
) -> dict[str, object]:
    """Machine-readable results: per scenario and server the median row and every round."""
    return {
        "benchmark": "http",
        "settings": {
            "duration": args.duration,
            "rounds": args.rounds,
            "connections": args.connections,
        },
        "scenarios": {
            label: {
                name: {"median": median_row(raw[name][label]), "rounds": raw[name][label]}
                for name in names
            }
            for label, _, _ in args.chosen
        },
    }


def print_round_ratios(
    raw: dict[str, dict[str, list[dict[str, float]]]], names: list[str], label: str
) -> None:
    """Per-round req/s ratios to uvicorn (each pair ran back to back) and their median: on a
    noisy machine this drifts less than the ratio of two separate medians."""
    if "uvicorn" not in names or len(raw["uvicorn"][label]) < 2:
        return
    base_rows = raw["uvicorn"][label]
    for name in names:
        if name == "uvicorn":
            continue
        ratios = [
            row["rps"] / base["rps"] for row, base in zip(raw[name][label], base_rows, strict=True)
        ]
        listed = " ".join(f"{ratio:.2f}" for ratio in ratios)
        middle = statistics.median(ratios)
        print(f"{name:10s} per-round ratios {listed}  (median {middle:.2f}x)")


if __name__ == "__main__":
    main()
