"""AsyncSocket on real loopback sockets: many messages in flight, the edge-triggered FD, clean close."""

from __future__ import annotations

import pytest
import trio
import trio.testing
import zmq

from hcs_batch._zmq import AsyncSocket, new_socket
from hcs_batch.errors import ConnectionClosedError


def _pair() -> tuple[AsyncSocket, AsyncSocket]:
    router = new_socket("ROUTER")
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = new_socket("DEALER")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    return AsyncSocket(router), AsyncSocket(dealer)


async def test_many_requests_in_flight_all_answered() -> None:
    router, dealer = _pair()
    answers: list[bytes] = []
    all_in = trio.Event()
    n = 2000

    def on_request(frames: list[bytes]) -> None:
        router.send_nowait([frames[0], b"re:" + frames[1]])

    def on_reply(frames: list[bytes]) -> None:
        answers.append(frames[0])
        if len(answers) == n:
            all_in.set()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(router.run, on_request)
            await nursery.start(dealer.run, on_reply)
            for i in range(n):
                await dealer.send([str(i).encode()])
            await all_in.wait()
            nursery.cancel_scope.cancel()
    assert sorted(answers) == sorted(b"re:%d" % i for i in range(n))
    assert router.closed and dealer.closed


async def test_messages_queued_before_the_owner_waits_are_not_stranded() -> None:
    # Three messages arrive before the owner first looks: an owner that waited on the FD edge alone would stall.
    router, dealer = _pair()
    got: list[bytes] = []
    three = trio.Event()

    def on_reply(frames: list[bytes]) -> None:
        got.append(frames[0])
        if len(got) == 3:
            three.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            identity: list[bytes] = []
            hello = trio.Event()

            def on_request(frames: list[bytes]) -> None:
                identity.append(frames[0])
                hello.set()

            await nursery.start(router.run, on_request)
            dealer.send_nowait([b"hi"])
            await hello.wait()
            for i in range(3):
                router.send_nowait([identity[0], b"%d" % i])
            # Block until they sit in the dealer's queue; poll() also consumes the FD's edge.
            assert dealer.zmq_socket.poll(5000, zmq.POLLIN)
            await nursery.start(dealer.run, on_reply)
            await three.wait()
            nursery.cancel_scope.cancel()
    assert got == [b"0", b"1", b"2"]


async def test_close_wakes_owner_and_later_sends_fail() -> None:
    router, dealer = _pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(dealer.run, lambda frames: None)
            await trio.testing.wait_all_tasks_blocked()
            dealer.close()
        router.close()
    with pytest.raises(ConnectionClosedError):
        dealer.send_nowait([b"late"])


async def test_a_burst_is_handled_over_several_steps_when_each_message_is_slow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In guest mode one step of the owner is part of a GUI tick: past its time slice it yields, even mid-batch.
    import hcs_batch._zmq as transport

    monkeypatch.setattr(transport, "_RECV_SLICE_S", 0.0)  # every message is over the slice
    receiver = new_socket("PAIR")
    receiver.bind("inproc://burst")
    sender = new_socket("PAIR")
    sender.connect("inproc://burst")
    n = 20
    for i in range(n):  # inproc: all n are in the receiver's queue before its owner first looks
        sender.send_multipart([str(i).encode()])
    owner = AsyncSocket(receiver)
    got: list[bytes] = []
    seen_between: list[int] = []
    all_in = trio.Event()

    def on_message(frames: list[bytes]) -> None:
        got.append(frames[0])
        if len(got) == n:
            all_in.set()

    async def watch() -> None:
        while not all_in.is_set():
            seen_between.append(len(got))
            await trio.lowlevel.checkpoint()

    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await nursery.start(owner.run, on_message)
                await all_in.wait()
                nursery.cancel_scope.cancel()
    finally:
        sender.close()
    assert got == [str(i).encode() for i in range(n)]
    assert len({k for k in seen_between if 0 < k < n}) > 1, seen_between  # others ran between its messages
