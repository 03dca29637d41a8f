"""Control-request throughput of the execution server on loopback (not a test).

Starts ``hcs-batch serve`` in a subprocess (so client and server each have their own process), then measures
``status`` requests per second: one at a time and with 64 in flight, both through the real Trio client
(``hcs_batch.client.open_connection``) and through a raw blocking pyzmq DEALER (the server's cost without the
client's). With ``--plates N`` it also pushes N one-well noop plates through compile + execute.

    python benchmarks/control_throughput.py [--requests 20000] [--plates 1000]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from hcs_batch import protocol as p
from hcs_batch._zmq import new_socket
from hcs_batch.client import ServerConnection, open_connection
from hcs_batch.pipeline import noop_pipeline_text
from hcs_batch.testing.plates import make_plates

from ._hcs import SERVE_ROOTS

LINE = re.compile(r"listening on (tcp://\S+) ")


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hcs_batch", "serve", "--bind", "tcp://127.0.0.1:0", "--workers", "1", *SERVE_ROOTS],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    match = LINE.search(proc.stdout.readline())
    if match is None:
        proc.kill()
        raise SystemExit("the server did not start")
    return proc, match.group(1)


async def client_sequential(conn: ServerConnection, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await conn.status(["x"])
    return n / (time.perf_counter() - start)


async def client_in_flight(conn: ServerConnection, n: int, depth: int) -> float:
    per_task = n // depth

    async def loop() -> None:
        for _ in range(per_task):
            await conn.status(["x"])

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(depth):
            nursery.start_soon(loop)
    return per_task * depth / (time.perf_counter() - start)


def raw(url: str, n: int, depth: int) -> float:
    sock: Any = new_socket("DEALER")
    sock.connect(url)
    frames = [p.encode(p.Status(rid=i, execution_ids=["x"])) for i in range(depth)]
    sock.send(frames[0])
    sock.recv()  # connected
    start = time.perf_counter()
    for i in range(depth):
        sock.send(frames[i])
    for i in range(n):
        sock.recv()
        if i + depth < n:
            sock.send(frames[i % depth])
    rate = n / (time.perf_counter() - start)
    sock.close(linger=0)
    return rate


async def noop_plates(conn: ServerConnection, count: int) -> float:
    root = Path(tempfile.mkdtemp(prefix="hcs-bench-"))
    folders = make_plates(root / "plates", plates=count, wells=1, sites=1, channels=1, size=16, seed=0)
    pipeline = noop_pipeline_text()
    done = trio.Event()
    remaining = count
    ids: set[str] = set()
    start = time.perf_counter()
    async with conn.open_event_stream() as events, trio.open_nursery() as nursery:

        async def watch() -> None:
            nonlocal remaining
            async for event in events:
                if isinstance(event, p.StateEvent) and event.state == "completed" and event.execution_id in ids:
                    remaining -= 1
                    if remaining == 0:
                        done.set()
                        return

        nursery.start_soon(watch)

        async def one(folder: Path) -> None:
            compiled = await conn.compile(plate_path=str(folder), plate_name=folder.name, pipeline=pipeline)
            ids.add(await conn.execute(compiled.artifact_id, output_dir=str(root / "out")))

        async with trio.open_nursery() as submit:
            limiter = trio.CapacityLimiter(64)
            for folder in folders:

                async def bounded(folder: Path = folder) -> None:
                    async with limiter:
                        await one(folder)

                submit.start_soon(bounded)
        await done.wait()
    return count / (time.perf_counter() - start)


async def run(url: str, args: argparse.Namespace) -> None:
    async with open_connection(url) as conn:
        await client_sequential(conn, 500)  # warm up
        seq = await client_sequential(conn, args.requests // 4)
        flight = await client_in_flight(conn, args.requests, 64)
        print(f"trio client, 1 in flight : {seq:10,.0f} status requests/s")
        print(f"trio client, 64 in flight: {flight:10,.0f} status requests/s")
        if args.plates:
            rate = await noop_plates(conn, args.plates)
            print(f"one-well noop plates     : {rate:10,.0f} plates/s (compile + execute + completed event)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--plates", type=int, default=0)
    args = parser.parse_args()
    proc, url = start_server()
    try:
        print(f"server {url} (pid {proc.pid}), {os.cpu_count()} CPUs")
        print(f"raw DEALER, 1 in flight  : {raw(url, args.requests // 4, 1):10,.0f} status requests/s")
        print(f"raw DEALER, 64 in flight : {raw(url, args.requests, 64):10,.0f} status requests/s")
        trio.run(run, url, args)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    main()
