"""Pause on the server side: hostile pause frames, the reply for every kind of id, and the gate that keeps a
paused execution's well from taking a worker that frees up while it is paused."""

from __future__ import annotations

import msgspec
import pytest
import trio
import trio.testing

from hcs_batch import protocol as p
from hcs_batch.client import open_connection
from hcs_batch.errors import ProtocolError
from hcs_batch.server import ServerAddress, open_embedded_server
from hcs_batch.server.pausing import PauseGate
from hcs_batch.server.stores import Execution


@pytest.mark.parametrize(
    "message",
    [
        {"kind": "pause", "rid": 1, "execution_ids": [""]},  # an empty id
        {"kind": "pause", "rid": 1, "execution_ids": ["x" * 129]},  # an id over the limit
        {"kind": "resume", "rid": 1, "execution_ids": "e1"},  # not a list
        {"kind": "pause", "rid": 1, "execution_ids": [1]},
        {"kind": "resume", "rid": -1},
    ],
)
def test_hostile_pause_frames_are_refused_before_use(message: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        p.decode_request(msgspec.msgpack.encode(message))


async def test_pause_and_resume_replies_name_every_id() -> None:
    with trio.fail_after(30):
        async with open_embedded_server(workers=1, warm_workers=False) as address:
            await _replies(address)


async def _replies(address: ServerAddress) -> None:
    async with open_connection(address.control_url) as conn:
        nothing = await conn.pause([])
        assert (nothing.changed, nothing.unchanged, nothing.unknown) == ([], [], [])
        reply = await conn.pause(["no-such"], paused=False)
        assert reply.unknown == ["no-such"] and reply.changed == []


def _execution() -> Execution:
    return Execution(artifact_id="a", plate_name="p", wells_total=2, output="/o")


async def test_a_well_waiting_for_a_worker_does_not_start_once_its_execution_is_paused() -> None:
    limiter = trio.CapacityLimiter(1)
    execution = _execution()
    started: list[str] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await limiter.acquire()  # another plate's well holds the only worker

            async def well() -> None:
                async with PauseGate(limiter, execution):
                    started.append("well")

            nursery.start_soon(well)
            await trio.testing.wait_all_tasks_blocked()
            assert execution.pause() and not execution.pause()
            assert execution.shown_state.value == "paused" and execution.record().state == "paused"
            limiter.release()  # the worker frees up while the execution is paused
            await trio.testing.wait_all_tasks_blocked()
            assert started == [] and limiter.borrowed_tokens == 0, "the paused well must give the worker back"
            assert execution.resume() and not execution.resume()
        assert started == ["well"] and limiter.borrowed_tokens == 0
    assert execution.record().state == "queued"
