"""The whole comparison of issue 17 in one command: a Markdown table and a plot.

    python3 benchmarks/run_all.py            # every target: about 4.5 minutes on 2 cores
    python3 benchmarks/run_all.py --quick    # the same targets, shorter runs (under 3 minutes)
    python3 benchmarks/run_all.py --only http,websocket --out /tmp/results

Theory of operation
-------------------
This script measures nothing itself: it runs the per-target scripts under ``benchmarks/``
(each starts headrace and its peers in the same run, interleaves them and takes medians of at
least 3 runs) and collects their results: ``--json`` output where the script has it, the
printed figures otherwise (the Redis scripts). Each target becomes rows of one table: server,
figure, unit, ratio to the peer of that target, p99 latency and server CPU per operation where
the script measures them. The rows are checked against the targets of issue 17 (met / not
met), and written to ``--out`` (default ``benchmarks/results/``, git-ignored) as
``run-STAMP.md``, ``run-STAMP.json`` and ``run-STAMP.png`` (matplotlib: throughput and p99
latency per server and target), plus ``latest.md`` / ``latest.png``. A target whose script
fails or whose service (Redis) is absent is reported as such; the others still run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable


@dataclass
class Row:
    target: str
    server: str
    value: float
    unit: str
    peer: str = ""
    higher_is_better: bool = True
    p99_ms: float | None = None
    cpu_us: float | None = None
    ratio: float | None = None  # times better than the peer (filled in by add_ratios)
    note: str = ""


@dataclass
class Target:
    name: str
    title: str
    command: Callable[[bool], list[str]]
    parse: Callable[[str], list[Row]]
    needs_redis: bool = False
    rows: list[Row] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0


# -- the targets: which script, with which options, and how to read its output ---------------


def http_command(quick: bool) -> list[str]:
    servers = (
        "headrace,headrace-log,uvicorn" if quick else "headrace,headrace-log,uvicorn,granian,daphne"
    )
    return [
        PY, str(HERE / "http/bench.py"), "--json", "--servers", servers,
        "--scenarios", "plaintext,64KiB each way", "--rounds", "3",
        "--duration", "2" if quick else "4",
    ]  # fmt: skip


def http_rows(output: str) -> list[Row]:
    """Median rows; the ratio is the median of the per-round ratios (each round ran the
    servers back to back), which drifts less with background load than a ratio of medians."""
    report = json.loads(output)
    rows = []
    for scenario, servers in report["scenarios"].items():
        target = f"HTTP/1.1 {scenario}"
        peer_rounds = servers.get("uvicorn", {}).get("rounds", [])
        for server, result in servers.items():
            median = result["median"]
            row = Row(target, server, median["rps"], "req/s", "uvicorn", True,
                      median["p99"], median["cpu_us"])  # fmt: skip
            pairs = zip(result["rounds"], peer_rounds, strict=False)
            ratios = [ours["rps"] / theirs["rps"] for ours, theirs in pairs if theirs["rps"]]
            if ratios:
                row.ratio = statistics.median(ratios)
            rows.append(row)
    return rows


def websocket_command(quick: bool) -> list[str]:
    return [
        PY, str(HERE / "websocket/bench_echo.py"), "--json", "--servers", "headrace,uvicorn",
        "--rounds", "3", "--messages", "500" if quick else "1500", "--idle", "1000",
    ]  # fmt: skip


def websocket_rows(output: str) -> list[Row]:
    report = json.loads(output)["servers"]
    rows = []
    for server, result in report.items():
        rows.append(
            Row("WebSocket echo, 50 conns x 32 B", server, result["median_msgs_per_s"], "msgs/s",
                "uvicorn", True, None, result["median_cpu_us"])
        )  # fmt: skip
    for server, result in report.items():
        rows.append(
            Row("memory per idle WebSocket (1,000 open)", server,
                result["idle_kib_per_connection"], "KiB", "uvicorn", False)
        )  # fmt: skip
    return rows


def idle_broadcast_command(quick: bool) -> list[str]:
    return [
        PY, str(HERE / "websocket/bench_idle_broadcast.py"), "--json", "--servers",
        "headrace,uvicorn", "--connections", "10000", "--broadcasts", "3" if quick else "5",
    ]  # fmt: skip


IDLE_BROADCAST = "10,000 idle WebSockets, 1 broadcast each"


def idle_broadcast_rows(output: str) -> list[Row]:
    report = json.loads(output)
    count = report["connections"]
    rows = []
    for server, result in report["servers"].items():
        delivered = min(r["delivered"] for r in result["rounds"])
        note = "all delivered" if result["all_delivered"] else f"{delivered} of {count} delivered"
        cpu_us = result["median_server_cpu_ms"] * 1000 / count
        rows.append(
            Row(IDLE_BROADCAST, server, result["median_seconds"] * 1000, "ms", "uvicorn", False,
                None, cpu_us, note=note)
        )  # fmt: skip
        rows.append(
            Row(IDLE_BROADCAST + ": server RSS", server, result["rss_idle_mib"], "MiB", "uvicorn",
                False)
        )  # fmt: skip
    return rows


def http2_command(quick: bool) -> list[str]:
    return [
        PY, str(HERE / "http2/bench.py"), "--json", "--servers", "headrace,granian,hypercorn",
        "--rounds", "3", "--duration", "2" if quick else "4",
    ]  # fmt: skip


def http2_rows(output: str) -> list[Row]:
    report = json.loads(output)
    errored = report.get("errored", {})
    return [
        Row(
            "h2c, h2load -c16 -m10",
            server,
            value,
            "req/s",
            "granian",
            note=_errored(errored, server),
        )
        for server, value in report["median"].items()
    ]


def _errored(errored: dict[str, int], server: str) -> str:
    count = errored.get(server, 0)
    return f"{count} requests errored (closed or reset by the server)" if count else ""


def startup_command(quick: bool) -> list[str]:
    return [PY, str(HERE / "startup.py"), "--json", "--starts", "3" if quick else "5"]


def startup_rows(output: str) -> list[Row]:
    report = json.loads(output)
    return [
        Row("startup to first response", server, value, "ms", "uvicorn", False)
        for server, value in report["median_ms"].items()
    ]


def redis_fanout_command(quick: bool) -> list[str]:
    return [
        PY, str(HERE / "redis/bench_layers.py"), "--members", "5000", "--instances", "10",
        "--rounds", "3", "--latency-samples", "200" if quick else "1000",
    ]  # fmt: skip


REDIS_LAYERS = r"(headrace core|channels_redis core|headrace pubsub|channels_redis pubsub)"


def redis_fanout_rows(output: str) -> list[Row]:
    """The printed fan-out block: ``  <layer> <ms> ms`` per layer after ``group_send to``."""
    block = output[output.index("group_send to") :]
    rows = []
    for name, value in re.findall(rf"^\s+{REDIS_LAYERS}\s+([\d.]+) ms$", block, re.MULTILINE):
        peer = "channels_redis " + name.split()[-1]
        rows.append(Row("Redis group_send, 5,000 members / 10 instances", name, float(value),
                        "ms", peer, False))  # fmt: skip
    return rows


def redis_broadcast_command(quick: bool) -> list[str]:
    return [
        PY, str(HERE / "redis/bench_ws.py"), "--clients", "200",
        "--rounds", "10" if quick else "30",
    ]  # fmt: skip


def redis_broadcast_rows(output: str) -> list[Row]:
    """``<layer> median <ms> ms p99 <ms> ms`` per layer; deliveries/s = 200 / median."""
    rows = []
    pattern = rf"^{REDIS_LAYERS}\s+median\s+([\d.]+) ms\s+p99\s+([\d.]+) ms"
    for name, median, p99 in re.findall(pattern, output, re.MULTILINE):
        peer = "channels_redis " + name.split()[-1]
        rate = 200 / (float(median) / 1000)
        rows.append(Row("WebSocket broadcast via group_send, 200 receivers", name, rate,
                        "deliveries/s", peer, True, float(p99)))  # fmt: skip
    return rows


def inmemory_command(quick: bool) -> list[str]:
    return [
        PY, str(HERE / "layers_inmemory/bench_group_send.py"), "--sizes", "1000",
        "--rounds", "3",
    ]  # fmt: skip


def inmemory_rows(output: str) -> list[Row]:
    """``<members> <layer> <send> <deliver>`` lines: the deliver time per layer."""
    rows = []
    for layer, deliver in re.findall(
        r"^\s*\d+\s+(headrace|channels)\s+[\d.]+\s+([\d.]+)$", output, re.MULTILINE
    ):
        rows.append(Row("in-memory group_send + receive, 1,000 members (best of 3)", layer,
                        float(deliver) * 1000, "ms", "channels", False))  # fmt: skip
    return rows


TARGETS = [
    Target("http", "HTTP/1.1 (wrk)", http_command, http_rows),
    Target("websocket", "WebSocket echo and idle memory", websocket_command, websocket_rows),
    Target(
        "idle-broadcast",
        "10,000 idle WebSockets, one broadcast",
        idle_broadcast_command,
        idle_broadcast_rows,
    ),
    Target("http2", "h2c (h2load)", http2_command, http2_rows),
    Target("startup", "startup to first response", startup_command, startup_rows),
    Target("inmemory", "in-memory layer group_send", inmemory_command, inmemory_rows),
    Target(
        "redis", "Redis layer group_send", redis_fanout_command, redis_fanout_rows, needs_redis=True
    ),
    Target(
        "broadcast",
        "WebSocket broadcast via Redis layers",
        redis_broadcast_command,
        redis_broadcast_rows,
        needs_redis=True,
    ),
]

# -- issue 17's targets: (target row, server, peer server, how to judge, wanted) -----------


GOALS: list[tuple[str, str, str, str, float]] = [
    ("HTTP/1.1 plaintext", "headrace", "uvicorn", "ratio>=", 2.0),
    ("HTTP/1.1 plaintext", "headrace", "", "cpu<=", 20.0),
    ("HTTP/1.1 plaintext", "headrace-log", "uvicorn", "ratio>=", 1.5),
    ("HTTP/1.1 64KiB each way", "headrace", "uvicorn", "ratio>=", 1.5),
    ("WebSocket echo, 50 conns x 32 B", "headrace", "uvicorn", "ratio>=", 2.0),
    ("h2c, h2load -c16 -m10", "headrace", "granian", "ratio>=", 1.0),
    ("h2c, h2load -c16 -m10", "headrace", "hypercorn", "ratio>=", 15.0),
    ("startup to first response", "headrace", "", "value<=", 80.0),
    ("memory per idle WebSocket (1,000 open)", "headrace", "", "value<=", 10.0),
    (IDLE_BROADCAST, "headrace", "", "delivered", 1.0),
    ("Redis group_send, 5,000 members / 10 instances", "headrace core", "channels_redis core",
     "speedup>=", 3.0),
    ("WebSocket broadcast via group_send, 200 receivers", "headrace core",
     "channels_redis core", "ratio>=", 5.0),
    ("WebSocket broadcast via group_send, 200 receivers", "headrace pubsub",
     "channels_redis pubsub", "ratio>=", 5.0),
]  # fmt: skip


def judge(rows: list[Row]) -> list[tuple[str, str, str]]:
    """(what, figure, met?) per goal whose rows were measured."""
    found = {(row.target, row.server): row for row in rows}
    verdicts = []
    for target, server, peer, rule, wanted in GOALS:
        row = found.get((target, server))
        other = found.get((target, peer)) if peer else None
        if row is None or (peer and other is None):
            continue
        if rule == "cpu<=":
            if row.cpu_us is None:
                continue
            figure, met = row.cpu_us, row.cpu_us <= wanted
            what, text = f"{target}: {server} server CPU per request", f"{figure:.1f} µs"
            goal = f"≤ {wanted:g} µs"
        elif rule == "delivered":
            met = row.note == "all delivered"
            what, text, goal = f"{target}: {server}", row.note, "all delivered"
        elif rule == "value<=":
            figure, met = row.value, row.value <= wanted
            what, text, goal = f"{target}: {server}", f"{figure:.1f} {row.unit}", f"≤ {wanted:g}"
        else:
            assert other is not None
            # speedup: the peer's time over ours (a time, lower is better); ratio: ours / theirs
            figure = other.value / row.value if rule == "speedup>=" else row.value / other.value
            if row.ratio is not None and peer == row.peer:
                figure = row.ratio  # the ratio the table shows (paired per round where measured)
            met = figure >= wanted
            what, text, goal = f"{target}: {server} vs {peer}", f"{figure:.2f}x", f"≥ {wanted:g}x"
        verdicts.append((what, f"{text} (goal {goal})", "met" if met else "**not met**"))
    return verdicts


# -- running -------------------------------------------------------------------------------


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def run_target(target: Target, quick: bool, timeout: float) -> None:
    if target.needs_redis and not redis_reachable():
        target.error = "skipped: no Redis on 127.0.0.1:6379"
        return
    command = target.command(quick)
    started = time.monotonic()
    print(f"== {target.title}: {' '.join(command[1:])}", flush=True)
    try:
        result = subprocess.run(
            command,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
    except subprocess.TimeoutExpired:
        target.error = f"timed out after {timeout:.0f} s"
        return
    finally:
        target.seconds = time.monotonic() - started
    if result.returncode != 0:
        target.error = f"exit status {result.returncode}: {result.stderr.strip()[-400:]}"
        return
    try:
        target.rows = target.parse(result.stdout)
    except (ValueError, KeyError) as exc:
        target.error = f"could not read its output ({exc!r}): {result.stdout[-400:]}"
        return
    if not target.rows:
        target.error = f"no figures in its output: {result.stdout[-400:]}"


def add_ratios(rows: list[Row]) -> None:
    """``ratio``: how many times better than the peer (higher is better for every row): the
    figure over the peer's, or the peer's over the figure where lower is better (a time, a
    memory size)."""
    values = {(row.target, row.server): row.value for row in rows}
    for row in rows:
        base = values.get((row.target, row.peer))
        if base and row.value and row.ratio is None:
            row.ratio = row.value / base if row.higher_is_better else base / row.value


# -- reporting -----------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for package in ("uvicorn", "granian", "hypercorn", "daphne", "channels", "channels_redis",
                    "uvloop", "httptools", "websockets", "headrace"):  # fmt: skip
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    for tool in ("wrk", "h2load"):
        versions[tool] = "found" if shutil.which(tool) else "missing"
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "load average at the end": load,
        **{f"version {name}": value for name, value in versions.items()},
    }


def number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return ""
    return f"{value:,.{digits}f}"


def markdown(targets: list[Target], rows: list[Row], info: dict[str, str], command: str) -> str:
    lines = [f"# Benchmarks, {info['stamp']}", "", f"Command: `{command}`", ""]
    lines += [f"- {key}: {value}" for key, value in info.items() if key != "stamp"]
    lines += ["", "Figures are medians of at least 3 runs, peers in the same run. The ratio is how "
              "many times better than the peer (1.00x): the figure over the peer's, or for "
              "figures marked ↓ (lower is better) the peer's over the figure; for HTTP/1.1 it "
              "is the median of the per-round ratios (each round runs the servers back to "
              "back).", ""]  # fmt: skip
    lines += ["| target | server | figure | vs peer | p99 ms | server CPU µs/op | note |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        arrow = "" if row.higher_is_better else " ↓"
        ratio = f"{row.ratio:.2f}x {row.peer}" if row.ratio is not None else ""
        bold = "**" if row.server.startswith("headrace") else ""
        lines.append(
            f"| {row.target} | {bold}{row.server}{bold} | {number(row.value)} {row.unit}{arrow} "
            f"| {ratio} | {number(row.p99_ms, 2)} | {number(row.cpu_us)} | {row.note} |"
        )
    verdicts = judge(rows)
    if verdicts:
        lines += ["", "## Issue 17 targets", "", "| what | measured | |", "|---|---|---|"]
        lines += [f"| {what} | {figure} | {met} |" for what, figure, met in verdicts]
    lines += ["", "## Runs", ""]
    for target in targets:
        state = target.error or f"{len(target.rows)} rows"
        lines.append(f"- {target.title}: {state} ({target.seconds:.0f} s)")
    return "\n".join(lines) + "\n"


def plot(rows: list[Row], path: Path) -> str:
    """Throughput (left) and p99 latency (right) per server, one row of panels per target."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no plot"
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if row.higher_is_better:
            groups.setdefault(row.target, []).append(row)
    if not groups:
        return "nothing to plot"
    figure, axes = plt.subplots(len(groups), 2, figsize=(11, 2.2 * len(groups)), squeeze=False)
    for (target, members), (left, right) in zip(groups.items(), axes, strict=True):
        names = [row.server for row in members]
        colours = ["tab:red" if name.startswith("headrace") else "tab:gray" for name in names]
        left.barh(names, [row.value for row in members], color=colours)
        left.set_title(f"{target} ({members[0].unit})", fontsize=9)
        left.invert_yaxis()
        latencies = [row.p99_ms or 0.0 for row in members]
        if any(latencies):
            right.barh(names, latencies, color=colours)
            right.set_title(f"{target}: p99 latency (ms)", fontsize=9)
            right.invert_yaxis()
        else:
            right.axis("off")
        for axis in (left, right):
            axis.tick_params(labelsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs (still 3 rounds)")
    parser.add_argument(
        "--only", help=f"comma-separated targets: {', '.join(t.name for t in TARGETS)}"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output folder")
    parser.add_argument("--timeout", type=float, default=420, help="seconds per target script")
    args = parser.parse_args()
    chosen = TARGETS
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        known = {target.name: target for target in TARGETS}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            parser.error(
                f"--only: unknown target(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        chosen = [known[name] for name in wanted]
    started = time.monotonic()
    for target in chosen:
        run_target(target, args.quick, args.timeout)
        state = target.error or f"{len(target.rows)} rows"
        print(f"   {state} ({target.seconds:.0f} s)", flush=True)
    rows = [row for target in chosen for row in target.rows]
    add_ratios(rows)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = {"stamp": stamp, **machine(), "total time": f"{time.monotonic() - started:.0f} s"}
    command = "python3 benchmarks/run_all.py " + " ".join(sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / ("run-" + datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S"))
    text = markdown(chosen, rows, info, command.strip())
    base.with_suffix(".md").write_text(text)
    document = {"info": info, "command": command.strip(), "rows": [asdict(row) for row in rows],
                "errors": {t.name: t.error for t in chosen if t.error}}  # fmt: skip
    base.with_suffix(".json").write_text(json.dumps(document, indent=1))
    problem = plot(rows, base.with_suffix(".png"))
    shutil.copy(base.with_suffix(".md"), args.out / "latest.md")
    if not problem:
        shutil.copy(base.with_suffix(".png"), args.out / "latest.png")
    print()
    print(text)
    print(
        f"written: {base}.md, .json"
        + ("" if problem else ", .png")
        + (f" ({problem})" if problem else "")
    )
    return (
        0 if all(not target.error or target.error.startswith("skipped") for target in chosen) else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
