"""Many clients polling one server at once (not a test).

Starts ``hcs-batch serve`` in a subprocess, creates ``--executions`` one-well noop plates and runs each once,
then starts ``--clients`` connections (each its own ``open_connection``, spread over ``--procs`` client
processes so the client side is not the bottleneck). Every client asks ``status`` for *all* execution ids in one
batched request, waits for the reply, checks it (every id known, every record complete) and asks again, for
``--duration`` seconds. Reports reply latency (p50/p99/max, measured by the client: send to decoded reply),
requests/s and lost requests (a request with no reply within ``--timeout`` s), prints a small table and writes
``benchmarks/results/load.json``.

    python benchmarks/load_clients.py [--clients 50] [--executions 1000] [--duration 10] [--procs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from hcs_batch.client import ServerConnection, open_connection
from hcs_batch.pipeline import noop_pipeline_text
from hcs_batch.testing.plates import make_plates

from ._hcs import SERVE_ROOTS

LINE = re.compile(r"listening on (tcp://\S+) ")
RESULTS = Path(__file__).parent / "results" / "load.json"


def start_server(workers: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "hcs_batch", "serve", "--bind", "tcp://127.0.0.1:0"),
            *("--workers", str(workers), *SERVE_ROOTS),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    match = LINE.search(proc.stdout.readline())
    if match is None:
        proc.kill()
        proc.wait()
        raise SystemExit("the server did not start")
    return proc, match.group(1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_server(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


# ---------------------------------------------------------------------------------------------- set-up


async def create_executions(url: str, plates: list[Path], output: Path, in_flight: int = 64) -> list[str]:
    """Compile and execute every plate (``in_flight`` at a time); wait until all completed; their ids."""
    pipeline = noop_pipeline_text()
    ids: list[str] = [""] * len(plates)
    limiter = trio.CapacityLimiter(in_flight)

    async def one(conn: ServerConnection, i: int, plate: Path) -> None:
        async with limiter:
            compiled = await conn.compile(plate_path=str(plate), plate_name=plate.name, pipeline=pipeline)
            ids[i] = await conn.execute(compiled.artifact_id, output_dir=str(output))

    async with open_connection(url) as conn:
        async with trio.open_nursery() as nursery:
            for i, plate in enumerate(plates):
                nursery.start_soon(one, conn, i, plate)
        async with conn.open_event_stream() as events:
            while True:
                records, unknown = await conn.status(ids)
                if unknown:
                    raise SystemExit(f"{len(unknown)} executions unknown right after submitting them")
                if all(r.state == "completed" for r in records):
                    return ids
                if any(r.state in ("failed", "cancelled") for r in records):
                    raise SystemExit("a noop execution did not complete")
                await events.receive()


# ---------------------------------------------------------------------------------------------- a client process


async def child_main(url: str, ids: list[str], clients: int, duration: float, reply_limit: float) -> dict[str, Any]:
    """Open ``clients`` connections, wait for "go" on stdin, poll for ``duration`` s; per-client results."""
    expected = set(ids)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    sent = [0] * clients
    lost = [0] * clients
    wrong = [0] * clients

    async def poll(conn: ServerConnection, c: int, deadline: float) -> None:
        while time.perf_counter() < deadline:
            sent[c] += 1
            start = time.perf_counter()
            with trio.move_on_after(reply_limit) as scope:
                records, unknown = await conn.status(ids)
            if scope.cancelled_caught:
                lost[c] += 1
                continue
            latencies[c].append(time.perf_counter() - start)
            if unknown or {r.execution_id for r in records} != expected or any(r.state != "completed" for r in records):
                wrong[c] += 1

    async with trio.open_nursery() as nursery:
        conns: list[ServerConnection] = []
        ready = trio.Event()
        done = trio.Event()

        async def hold(c: int) -> None:
            async with open_connection(url, liveness_timeout=60) as conn:
                conns.append(conn)
                if len(conns) == clients:
                    ready.set()
                await done.wait()

        for c in range(clients):
            nursery.start_soon(hold, c)
        await ready.wait()
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)  # "go": every process starts together
        deadline = time.perf_counter() + duration
        async with trio.open_nursery() as pollers:
            for c, conn in enumerate(conns):
                pollers.start_soon(poll, conn, c, deadline)
        done.set()
    return {"latencies": latencies, "sent": sent, "lost": lost, "wrong": wrong}


def child(args: argparse.Namespace) -> None:
    ids = json.loads(Path(args.ids).read_text())
    result = trio.run(child_main, args.url, ids, args.clients, args.duration, args.timeout)
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------- the run


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hcs-load-") as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        plates = make_plates(tmp_path / "plates", plates=args.executions, wells=1, size=16, seed=1)
        made = time.perf_counter() - t0
        proc, url = start_server(args.workers)
        try:
            t0 = time.perf_counter()
            ids = trio.run(create_executions, url, plates, tmp_path / "out")
            submitted = time.perf_counter() - t0
            ids_file = tmp_path / "ids.json"
            ids_file.write_text(json.dumps(ids))
            per_proc = [
                args.clients // args.procs + (1 if i < args.clients % args.procs else 0) for i in range(args.procs)
            ]
            child_command = [sys.executable, __file__, "--child", "--url", url, "--ids", str(ids_file)]
            child_command += ["--duration", str(args.duration), "--timeout", str(args.timeout)]
            children = [
                subprocess.Popen(
                    [*child_command, "--clients", str(n)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for n in per_proc
                if n
            ]
            for c in children:
                assert c.stdout is not None
                if c.stdout.readline().strip() != "ready":
                    raise SystemExit("a client process did not connect")
            start = time.perf_counter()
            server_cpu = cpu_seconds(proc.pid)
            for c in children:
                assert c.stdin is not None
                c.stdin.write("go\n")
                c.stdin.flush()
            outputs = [c.communicate(timeout=args.duration + args.timeout + 60)[0] for c in children]
            elapsed = time.perf_counter() - start
            server_cpu = cpu_seconds(proc.pid) - server_cpu
            if any(c.returncode for c in children):
                raise SystemExit("a client process failed")
            server_alive = proc.poll() is None
        finally:
            stop_server(proc)
    results = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    latencies = sorted(x for r in results for per_client in r["latencies"] for x in per_client)
    per_client_counts = [len(per_client) for r in results for per_client in r["latencies"]]
    sent = sum(sum(r["sent"]) for r in results)
    lost = sum(sum(r["lost"]) for r in results)
    wrong = sum(sum(r["wrong"]) for r in results)
    return {
        "benchmark": "load_clients",
        "clients": args.clients,
        "client_processes": len(results),
        "executions": len(ids),
        "ids_per_request": len(ids),
        "duration_s": round(elapsed, 2),
        "requests": sent,
        "replies": len(latencies),
        "lost": lost,
        "wrong_replies": wrong,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "records_per_s": round(len(latencies) * len(ids) / elapsed),
        "latency_ms": {
            "p50": round(percentile(latencies, 0.50) * 1000, 2),
            "p99": round(percentile(latencies, 0.99) * 1000, 2),
            "max": round(latencies[-1] * 1000, 2) if latencies else None,
            "mean": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        },
        "requests_per_client": {"min": min(per_client_counts), "max": max(per_client_counts)},
        "server_cpu_busy": round(server_cpu / elapsed, 2),
        "server_alive_after": server_alive,
        "setup_s": {"make_plates": round(made, 1), "compile_execute": round(submitted, 1)},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of polling")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (noop runs inline)")
    parser.add_argument("--timeout", type=float, default=10.0, help="a reply later than this counts as lost")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    result = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    lat = result["latency_ms"]
    rows = [
        ("clients x executions", f"{result['clients']} x {result['executions']} ({result['client_processes']} procs)"),
        ("duration", f"{result['duration_s']} s"),
        ("requests / replies", f"{result['requests']} / {result['replies']}"),
        ("lost / wrong replies", f"{result['lost']} / {result['wrong_replies']}"),
        ("requests/s", f"{result['requests_per_s']} ({result['records_per_s']} records/s)"),
        ("latency p50 / p99 / max", f"{lat['p50']} / {lat['p99']} / {lat['max']} ms"),
        ("server CPU busy", f"{result['server_cpu_busy']:.0%} of one core"),
        ("requests per client", f"{result['requests_per_client']['min']}..{result['requests_per_client']['max']}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(f"wrote {args.output}")
    if result["lost"] or result["wrong_replies"] or not result["server_alive_after"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
