"""The anchor: zmqruntime 0.6.5, the system hcs_batch replaces, driving the same no-op plates.

Its ``ExecutionServer`` kills every Python child of its host after each execution and binds a data/control port
pair (data + 1000), so it is hosted in a child process of its own (``python -m benchmarks.anchor serve PORT``) on a
free loopback pair, and the client attaches with ``connect_existing()`` (``connect()`` would kill whatever listens on
an unresponsive port). The client side is what OpenHCS does: ``BatchSubmitWaitEngine`` submits every plate's
compile (``compile_only=True``) and waits for each with ``ExecutionStatusPoller``, then does the same for the
executions (``compile_artifact_id`` = the compile's execution id).

Fairness: the poller gets a 1 ms poll interval (its default is 0.5 s, which would cost >= 0.5 s per plate on
sequential waits), so the anchor's figure is its best case; what limits it is its server loop (one control request
per 10 ms sleep) and a fresh REQ socket per request.

Run as ``python -m benchmarks.anchor '{"plates": 100, "requests": 200}'``; prints one result line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import trio
from zmqruntime.config import TransportMode, ZMQConfig
from zmqruntime.execution import (
    BatchSubmitWaitEngine,
    CallbackBatchSubmitWaitPolicy,
    CallbackExecutionStatusPollPolicy,
    ExecutionClient,
    ExecutionServer,
    ExecutionStatusPoller,
)
from zmqruntime.messages import ExecuteRequest
from zmqruntime.runner import serve_forever

from ._common import child_process, emit, free_port_pair, now, params_from_argv, python_module_cmd

POLL_INTERVAL = 0.001
CONFIG = ZMQConfig()


class NoopExecutionServer(ExecutionServer):
    """An execution server whose task does nothing: compile and execute both return at once."""

    def execute_task(self, execution_id: str, request: ExecuteRequest) -> Any:
        return {}


class NoopClient(ExecutionClient[tuple[str, bool, str | None], None]):
    """The anchor's client; a task is ``(plate, compile_only, compile_artifact_id)``."""

    def serialize_task(self, task: tuple[str, bool, str | None], config: None) -> ExecuteRequest:
        subject, compile_only, artifact = task
        return ExecuteRequest(
            subject_id=subject,
            pipeline_code="noop",
            config_params={},
            compile_only=compile_only,
            compile_artifact_id=artifact,
        )

    def _spawn_server_process(self) -> None:
        raise RuntimeError("the benchmark starts the anchor server itself")

    def send_data(self, data: Any) -> None:
        pass


def serve(port: int) -> None:
    server = NoopExecutionServer(port=port, host="127.0.0.1", transport_mode=TransportMode.TCP, config=CONFIG)
    server.start()
    print(f"ANCHOR-READY {port}", flush=True)
    serve_forever(server, poll_interval=0.01)


def _wait_terminal(client: NoopClient, execution_id: str) -> str:
    outcome: list[str] = []
    policy = CallbackExecutionStatusPollPolicy(
        poll_status_fn=lambda eid: client.poll_status(eid),
        poll_interval_seconds_value=POLL_INTERVAL,
        on_terminal_fn=lambda eid, status, payload: outcome.append(status),
        on_status_error_fn=lambda eid, message: outcome.append(f"error: {message}"),
    )
    ExecutionStatusPoller().run(execution_id, policy)
    return outcome[0] if outcome else "unknown"


async def _run_batch(client: NoopClient, plates: list[str]) -> dict[str, Any]:
    """OpenHCS's shape: compile all (submit all, then wait each), then execute all the same way."""
    engine: BatchSubmitWaitEngine[tuple[str, bool, str | None]] = BatchSubmitWaitEngine()
    states: dict[str, str] = {}

    async def submit(job: tuple[str, bool, str | None]) -> str:
        reply = client.submit_execution(job)
        if reply.get("status") != "accepted":
            raise RuntimeError(f"anchor refused {job}: {reply}")
        return str(reply["execution_id"])

    async def wait(execution_id: str, job: tuple[str, bool, str | None]) -> None:
        states[f"{job[0]}:{job[1]}"] = _wait_terminal(client, execution_id)

    policy = CallbackBatchSubmitWaitPolicy(submit_fn=submit, wait_fn=wait, job_key_fn=lambda job: job[0])
    t0 = now()
    compiled = await engine.run([(name, True, None) for name in plates], policy)
    t_compile = now() - t0
    await engine.run([(name, False, compiled[name]) for name in plates], policy)
    total = now() - t0
    completed = sum(1 for key, state in states.items() if key.endswith(":False") and state in ("complete", "completed"))
    return {"compile_s": t_compile, "total_s": total, "completed": completed}


def measure(plates: int = 100, requests: int = 200) -> dict[str, Any]:
    port = free_port_pair(CONFIG.control_port_offset)
    with child_process(python_module_cmd("benchmarks.anchor", "serve", str(port)), ready_prefix="ANCHOR-READY"):
        client = NoopClient(
            port=port, host="127.0.0.1", persistent=True, transport_mode=TransportMode.TCP, config=CONFIG
        )
        if not client.connect_existing(timeout=5.0):
            raise RuntimeError(f"could not attach to the anchor server on port {port}")
        try:
            client.enable_progress_stream()
            batch = trio.run(_run_batch, client, [f"plate-{i:05d}" for i in range(plates)])
            # Control requests per second: status polls back to back, one at a time (its REQ sockets allow no more).
            t0 = now()
            for _ in range(requests):
                client.poll_status(None)
            t_req = now() - t0
        finally:
            client.disconnect()
    return {
        "plates": plates,
        "completed": batch["completed"],
        "wall_s": round(batch["total_s"], 4),
        "compile_s": round(batch["compile_s"], 4),
        "per_plate_ms": round(batch["total_s"] / plates * 1e3, 3),
        "plates_per_s": round(plates / batch["total_s"], 2),
        "control_requests": requests,
        "control_requests_per_s": round(requests / t_req, 1),
        "poll_interval_s": POLL_INTERVAL,
    }


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        logging.disable(logging.CRITICAL)  # its INFO lines per message would only measure logging
        serve(int(sys.argv[2]))
        return
    logging.disable(logging.CRITICAL)
    emit(measure(**params_from_argv()))


if __name__ == "__main__":
    main()
