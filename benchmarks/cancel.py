"""Cancellation: stop a ``plates``-plate run mid-execution; time until every plate is terminal and the server idle.

The run starts (compile all, then execute); once ``trigger`` plates have entered ``running`` the service is told to
stop. Two figures from that instant: ``cancel_to_terminal_s`` (the batch reports every plate terminal:
``run_plates`` returns) and ``cancel_to_idle_s`` (as well, ``server_info`` reports nothing queued or running).

``pipeline``: ``"noop"`` (default; executions finish inline at once, so "running" is brief) or ``"default"`` (the
nucleus counter on 32-pixel images: every execution runs in a worker process, so stopping kills live workers).

Run as ``python -m benchmarks.cancel '{"plates": 1000, "pipeline": "default"}'``; prints one result line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from ._common import emit, now, params_from_argv
from ._hcs import SilentHost, default_pipeline, make_plate_refs, make_service, noop_pipeline, open_backend, temp_dir


async def main(plates: int, trigger: int, pipeline: str | None) -> dict[str, Any]:
    with temp_dir("cancel") as tmp:
        refs = make_plate_refs(Path(tmp) / "plates", plates=plates, size=32)
        async with open_backend(None) as backend:
            host = SilentHost()
            host.running_target = trigger
            text = default_pipeline() if pipeline == "default" else noop_pipeline()
            service = make_service(host, backend, pipeline_text=text, output_dir=Path(tmp) / "out")
            stopped_at = 0.0
            result: dict[str, Any] = {}

            async def stopper() -> None:
                nonlocal stopped_at
                await host.running_reached.wait()
                stopped_at = now()
                service.stop()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(stopper)
                t0 = now()
                summary = await service.run_plates(refs)
                terminal_at = now()
                nursery.cancel_scope.cancel()
            if not stopped_at:
                result["error"] = f"the run ended ({terminal_at - t0:.3f} s) before {trigger} plates were running"
                stopped_at = terminal_at
            polls = 0
            with trio.fail_after(30):
                while True:
                    info = await backend.server_info()
                    polls += 1
                    if info.running == 0 and info.queued == 0:
                        break
                    await trio.sleep(0.002)
            idle_at = now()
            terminal = sum(host.outcomes.values())
            result.update(
                {
                    "plates": plates,
                    "trigger_running": trigger,
                    "running_at_stop": host.running,
                    "cancel_to_terminal_s": round(terminal_at - stopped_at, 4),
                    "cancel_to_idle_s": round(idle_at - stopped_at, 4),
                    "run_before_stop_s": round(stopped_at - t0, 4),
                    "outcomes": dict(host.outcomes),
                    "terminal": terminal,
                    "server_polls": polls,
                    "pipeline": pipeline or "noop",
                    "summary": repr(summary)[:300],
                }
            )
            if terminal != plates and "error" not in result:
                result["error"] = f"only {terminal} of {plates} plates reported terminal: {dict(host.outcomes)}"
    return result


if __name__ == "__main__":
    p = params_from_argv()
    plates = int(p.get("plates", 1000))
    emit(trio.run(main, plates, int(p.get("trigger", max(plates // 2, 1))), p.get("pipeline")))
