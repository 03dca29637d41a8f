"""The floor: raw pyzmq DEALER/ROUTER round trips on loopback, the peer in another process.

No Trio, no codec, no policy: a blocking DEALER here, a ROUTER echo loop in a child process. Two figures:

- ``rt_seq_us``: one request at a time (send, wait for the echo, repeat), microseconds per round trip;
- ``rt_pipe_us``: ``window`` requests in flight, microseconds per round trip at steady state.

A plate's floor is ``messages_per_plate`` messages (see :data:`PLATE_MESSAGES`) at half a pipelined round trip each
(a round trip carries two messages), since the service keeps many plates in flight at once. A second floor adds the
file work every executed plate does on the server (:func:`measure_files`), measured the same way, raw, in one loop.

Run as ``python -m benchmarks.floor '{"seq": 2000, "pipe": 20000}'`` (prints one result line) or
``python -m benchmarks.floor serve`` (the echo peer; prints ``FLOOR-READY <port>``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import zmq

from ._common import child_process, emit, now, params_from_argv, python_module_cmd

PAYLOAD = b"x" * 160
"""About the size of one encoded Compile/Execute request of this project's protocol."""

PLATE_MESSAGES = {
    "compile request + reply": 2,
    "execute request + reply": 2,
    "state events (queued, running, completed)": 3,
    "progress events (1 well x 1 step)": 1,
}
"""Messages one single-well no-op plate needs on the wire (see ``hcs_batch.protocol``): the client sends Compile and
Execute (each answered by one reply); the server publishes a StateEvent per state of the execution (queued,
running, completed) and one ProgressEvent per (well, step). Heartbeats and batched Status polls are shared by all
plates and left out. The overhead case counts the events the server really sent and reports both."""


def serve() -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    print(f"FLOOR-READY {port}", flush=True)
    while True:
        sock.send_multipart(sock.recv_multipart())


def measure_files(plates: int = 300) -> float:
    """Seconds per plate of the file work a no-op plate's execution does on the server (``server/results.py``):
    one ``mkdir`` of the plate folder and two atomic writes (write a temporary file, rename it): ``wells.csv``
    and ``manifest.json``. Measured in a temporary folder, where the benchmark's outputs go too."""
    with tempfile.TemporaryDirectory(prefix="hcs-bench-floor-") as tmp:
        root = Path(tmp)
        t0 = now()
        for i in range(plates):
            folder = root / f"plate_{i:05d}"
            folder.mkdir()
            for name, size in (("wells.csv", 120), ("manifest.json", 400)):
                part = folder / f".{name}.tmp"
                with open(part, "wb") as fh:
                    fh.write(b"x" * size)
                os.replace(part, folder / name)
        return (now() - t0) / plates


def measure(seq: int = 2000, pipe: int = 20000, window: int = 64, files: int = 300) -> dict[str, Any]:
    """Round-trip figures against an echo peer in a child process (started and stopped here)."""
    with child_process(python_module_cmd("benchmarks.floor", "serve"), ready_prefix="FLOOR-READY") as (_, line):
        port = int(line.split()[1])
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{port}")
        try:
            for _ in range(500):  # warm up: connect, page in, settle the peer
                sock.send(PAYLOAD)
                sock.recv()
            t0 = now()
            for _ in range(seq):
                sock.send(PAYLOAD)
                sock.recv()
            t_seq = now() - t0

            t0 = now()
            sent = received = 0
            while sent < min(window, pipe):
                sock.send(PAYLOAD)
                sent += 1
            while received < pipe:
                sock.recv()
                received += 1
                if sent < pipe:
                    sock.send(PAYLOAD)
                    sent += 1
            t_pipe = now() - t0
        finally:
            sock.close(linger=0)
            ctx.term()
    files_s = measure_files(files)
    rt_seq = t_seq / seq
    rt_pipe = t_pipe / pipe
    messages = sum(PLATE_MESSAGES.values())
    return {
        "rt_seq_us": round(rt_seq * 1e6, 2),
        "rt_pipe_us": round(rt_pipe * 1e6, 2),
        "round_trips_per_s_seq": round(1 / rt_seq),
        "round_trips_per_s_pipe": round(1 / rt_pipe),
        "window": window,
        "payload_bytes": len(PAYLOAD),
        "plate_messages": PLATE_MESSAGES,
        "messages_per_plate": messages,
        "floor_per_plate_us": round(messages * rt_pipe / 2 * 1e6, 2),
        "floor_per_plate_seq_us": round((2 * rt_seq + (messages - 4) * rt_pipe / 2) * 1e6, 2),
        "files_per_plate_us": round(files_s * 1e6, 2),
        "floor_with_files_per_plate_us": round((messages * rt_pipe / 2 + files_s) * 1e6, 2),
    }


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        serve()
        return
    emit(measure(**params_from_argv()))


if __name__ == "__main__":
    main()
