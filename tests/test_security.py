"""CurveZMQ: keys on disk, a keyed server that lets only its clients in, refused binds, and no pickle on the wire.

Real sockets and real processes: the keyed server is ``hcs-batch serve --keys`` bound to 0.0.0.0 (reached via
127.0.0.1), plus embedded keyed servers for what must hold inside one process (two keyed servers at once).
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import zmq

from hcs_batch import protocol as p
from hcs_batch.cli import main
from hcs_batch.client import open_connection
from hcs_batch.connect import open_backend
from hcs_batch.errors import SecurityError, ServerUnreachableError
from hcs_batch.pipeline import noop_pipeline_text
from hcs_batch.security import (
    generate_keys,
    is_loopback,
    load_client_keys,
    load_server_keys,
)
from hcs_batch.server import open_embedded_server
from hcs_batch.testing.plates import make_plates

from .support.serverproc import env

LINE = re.compile(r"^hcs-batch server listening on tcp://0\.0\.0\.0:(\d+) \(events on (\d+)\)$")
KEY_FILES = ["server.key", "server.key_secret", "client.key", "client.key_secret", "clients/client.key"]


# ---------------------------------------------------------------------------------------------- keys on disk


def test_keys_generate_writes_the_files_with_private_secrets_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "keys"
    assert main(["keys", "generate", str(folder)]) == 0
    for name in KEY_FILES:
        assert (folder / name).is_file(), name
    for secret in ("server.key_secret", "client.key_secret"):
        assert stat.S_IMODE((folder / secret).stat().st_mode) == 0o600
    server, client = load_server_keys(folder), load_client_keys(folder)
    assert client.server_public == server.public
    assert server.authorized == {client.public}
    assert server.public != client.public and server.secret != client.secret
    assert server.secret.decode() not in repr(server) and client.secret.decode() not in repr(client)
    before = {name: (folder / name).read_bytes() for name in KEY_FILES}
    capsys.readouterr()

    assert main(["keys", "generate", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not overwriting" in err and len(err.splitlines()) == 1
    assert {name: (folder / name).read_bytes() for name in KEY_FILES} == before
    # Even one leftover file is enough to refuse, and nothing else is written.
    other = tmp_path / "other"
    other.mkdir()
    (other / "client.key_secret").write_text("mine")
    with pytest.raises(SecurityError, match=r"client\.key_secret exists"):
        generate_keys(other)
    assert sorted(p.name for p in other.iterdir()) == ["client.key_secret"]


def test_server_keys_need_an_authorized_client_and_bad_files_are_named(tmp_path: Path) -> None:
    generate_keys(tmp_path / "k")
    (tmp_path / "k" / "clients" / "client.key").unlink()
    with pytest.raises(SecurityError, match="no authorized client keys"):
        load_server_keys(tmp_path / "k")
    with pytest.raises(SecurityError, match=r"server\.key_secret"):
        load_server_keys(tmp_path / "missing")
    (tmp_path / "k" / "server.key").write_text("garbage")
    with pytest.raises(SecurityError, match=r"server\.key"):
        load_client_keys(tmp_path / "k")
    # A server.key_secret that is really a public certificate.
    generate_keys(tmp_path / "p")
    (tmp_path / "p" / "server.key_secret").unlink()
    (tmp_path / "p" / "server.key_secret").write_bytes((tmp_path / "p" / "server.key").read_bytes())
    with pytest.raises(SecurityError, match="holds no secret key"):
        load_server_keys(tmp_path / "p")


# ---------------------------------------------------------------------------------------------- binding


def test_is_loopback() -> None:
    for url in ("tcp://127.0.0.1:1", "tcp://127.0.0.2:1", "tcp://localhost:1", "tcp://[::1]:1", "ipc:///tmp/x"):
        assert is_loopback(url), url
    for url in ("tcp://0.0.0.0:1", "tcp://*:1", "tcp://[::]:1", "tcp://192.0.2.7:1", "tcp://eth0:1", "tcp://h:x"):
        assert not is_loopback(url), url


@pytest.mark.parametrize("bind", ["tcp://0.0.0.0:7700", "tcp://192.0.2.7:7700", "tcp://*:7700", "tcp://[::]:7700"])
def test_non_loopback_bind_without_keys_is_refused(bind: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--bind", bind]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"refusing to bind {bind} without CurveZMQ keys" in err
    assert "hcs-batch keys generate" in err and "--keys" in err


def test_serve_process_refuses_0000_without_keys_and_a_bad_key_folder(tmp_path: Path) -> None:
    environment = env()
    for extra in ([], ["--keys", str(tmp_path / "nokeys")]):
        result = subprocess.run(
            [sys.executable, "-m", "hcs_batch", "serve", "--bind", "tcp://0.0.0.0:0", *extra],
            capture_output=True,
            text=True,
            timeout=60,
            env=environment,
        )
        assert result.returncode == 2
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("hcs-batch serve: ")
        assert ("refusing to bind" if not extra else "cannot read key file") in lines[0]


# ---------------------------------------------------------------------------------------------- a keyed server


@dataclass
class KeyedServer:
    proc: subprocess.Popen[str]
    url: str
    events_port: int
    keys: Path
    log: Path


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedServer]:
    """``hcs-batch serve --keys`` bound on every interface (0.0.0.0, a free port), reached via 127.0.0.1."""
    base = tmp_path_factory.mktemp("keyed")
    generate_keys(base / "keys")
    log = base / "server.log"
    keys = str(base / "keys")
    with open(log, "w") as log_file:
        roots = [
            "--data-root",
            str(tmp_path_factory.getbasetemp()),
            "--output-root",
            str(tmp_path_factory.getbasetemp()),
        ]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hcs_batch",
                "serve",
                "--bind",
                "tcp://0.0.0.0:0",
                "--workers",
                "1",
                "--keys",
                keys,
                *roots,
            ],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            env=env(),
        )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline().strip()
        match = LINE.match(line)
        assert match is not None, f"unexpected first line {line!r}; log: {log.read_text()}"
        yield KeyedServer(
            proc=proc,
            url=f"tcp://127.0.0.1:{match.group(1)}",
            events_port=int(match.group(2)),
            keys=base / "keys",
            log=log,
        )
        assert proc.poll() is None, "the keyed server must still be serving after every test"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


async def test_a_client_with_the_right_keys_compiles_and_runs_a_plate(
    keyed_server: KeyedServer, tmp_path: Path
) -> None:
    folders = make_plates(tmp_path / "plates", plates=1, wells=2, sites=1, channels=1, size=32, seed=4)
    out = tmp_path / "out"
    with trio.fail_after(30):
        async with open_backend(keyed_server.url, keys=keyed_server.keys) as conn:
            compiled = await conn.compile(plate_path=str(folders[0]), plate_name="keyed", pipeline=noop_pipeline_text())
            assert len(compiled.wells) == 2
            async with conn.open_event_stream() as events:
                execution = await conn.execute(compiled.artifact_id, output_dir=str(out))
                # The events socket is keyed too: the terminal state arrives as an event.
                async for item in events:
                    if isinstance(item, p.StateEvent) and item.execution_id == execution and item.state == "completed":
                        break
    assert (out / "keyed" / "wells.csv").is_file()


def test_the_cli_runs_a_plate_against_the_keyed_server(keyed_server: KeyedServer, tmp_path: Path) -> None:
    folders = make_plates(tmp_path / "plates", plates=1, wells=1, sites=1, channels=1, size=32, seed=5)
    pipeline = tmp_path / "noop.toml"
    pipeline.write_text(noop_pipeline_text())
    args = ["run", str(folders[0]), "--server", keyed_server.url, "--keys", str(keyed_server.keys)]
    args += ["--pipeline", str(pipeline), "--output", str(tmp_path / "out")]
    result = subprocess.run(
        [sys.executable, "-m", "hcs_batch", *args], capture_output=True, text=True, timeout=60, env=env()
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / folders[0].name / "wells.csv").is_file()
    # Without keys the same command reaches nothing: exit 3, one line.
    result = subprocess.run(
        [sys.executable, "-m", "hcs_batch", *args[:4], *args[6:]],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
    )
    assert result.returncode == 3
    assert "no execution server answered" in result.stderr


def _wrong_keys(kind: str, keyed: Path, tmp_path: Path) -> Path | None:
    """A client key folder that the keyed server must not let in."""
    if kind == "none":
        return None
    other = tmp_path / "other"
    generate_keys(other)
    folder = tmp_path / "wrong"
    folder.mkdir()
    if kind == "unknown client key":  # the right server key, a client key the server does not list
        (folder / "server.key").write_bytes((keyed / "server.key").read_bytes())
        (folder / "client.key_secret").write_bytes((other / "client.key_secret").read_bytes())
    else:  # "wrong server key": our listed client key, but expecting another server
        (folder / "server.key").write_bytes((other / "server.key").read_bytes())
        (folder / "client.key_secret").write_bytes((keyed / "client.key_secret").read_bytes())
    return folder


def _socket(kind: int, options: dict[str, Any]) -> zmq.Socket[Any]:
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        sock.setsockopt(getattr(zmq, name.upper()), value)
    return sock


@pytest.mark.parametrize("kind", ["none", "unknown client key", "wrong server key"])
async def test_a_client_with_wrong_or_no_keys_gets_nothing(
    keyed_server: KeyedServer, tmp_path: Path, kind: str
) -> None:
    folder = _wrong_keys(kind, keyed_server.keys, tmp_path)
    with trio.fail_after(30):
        with pytest.raises(ServerUnreachableError, match="no execution server answered"):
            async with open_backend(keyed_server.url, keys=folder, connect_timeout=1.5):
                pytest.fail("the handshake must not complete")

    # No events either: a subscriber with the wrong keys stays empty while one with the right keys sees the
    # heartbeats (one a second) in the same window.
    wrong_options = load_client_keys(folder).socket_options() if folder is not None else {}
    right_options = load_client_keys(keyed_server.keys).socket_options()
    events_url = f"tcp://127.0.0.1:{keyed_server.events_port}"
    wrong = _socket(zmq.SUB, {"subscribe": b"", **wrong_options})
    right = _socket(zmq.SUB, {"subscribe": b"", **right_options})
    try:
        wrong.connect(events_url)
        right.connect(events_url)

        def two_heartbeats() -> list[Any]:
            got = []
            while len(got) < 2 and right.poll(5_000):
                got.append(p.decode_event(right.recv()))
            return got

        seen = await trio.to_thread.run_sync(two_heartbeats)
        assert [type(e) for e in seen] == [p.HeartbeatEvent, p.HeartbeatEvent]
        assert wrong.poll(0) == 0, "a subscriber with the wrong keys must receive nothing"
    finally:
        wrong.close(linger=0)
        right.close(linger=0)
    if kind == "unknown client key":
        # The server's authentication handler saw the key and said no.
        assert "client key not authorized" in keyed_server.log.read_text()


class _MakesAFolder:
    """Unpickling this calls ``os.mkdir(path)``: proof of code execution if a server ever unpickles it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (self.path,))


def test_a_pickle_payload_is_rejected_as_malformed_and_never_unpickled(
    keyed_server: KeyedServer, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    # Sanity: unpickling it really would create the folder.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_MakesAFolder(str(probe))))
    assert probe.is_dir()

    sock = _socket(zmq.DEALER, load_client_keys(keyed_server.keys).socket_options())  # even an authorized client
    try:
        sock.connect(keyed_server.url)
        # The same thing the old server accepted: a pickled request dict, wrapping the payload.
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            sock.send(pickle.dumps({"type": "execute", "rid": 5, "payload": _MakesAFolder(str(marker))}, protocol))
            sock.send(pickle.dumps(_MakesAFolder(str(marker)), protocol))
        replies = []
        for _ in range(2 * (pickle.HIGHEST_PROTOCOL + 1)):
            assert sock.poll(10_000), "every malformed frame gets an error reply"
            replies.append(p.decode_reply(sock.recv()))
        assert all(isinstance(r, p.ErrorReply) and r.code == "protocol" for r in replies), replies
        # ... and the server keeps serving.
        sock.send(p.encode(p.Hello(rid=42)))
        assert sock.poll(10_000)
        hello = p.decode_reply(sock.recv())
        assert isinstance(hello, p.HelloReply) and hello.rid == 42
    finally:
        sock.close(linger=0)
    assert not marker.exists(), "the server unpickled a request"
    assert keyed_server.proc.poll() is None


# ---------------------------------------------------------------------------------------------- in one process


async def test_two_keyed_embedded_servers_in_one_process_each_admit_only_their_clients(tmp_path: Path) -> None:
    """The ZAP endpoint is per process: each server's clients are checked against that server's list only,
    and a server that stopped lets nobody in under its keys again."""
    generate_keys(tmp_path / "a")
    generate_keys(tmp_path / "b")
    keys_a, keys_b = load_server_keys(tmp_path / "a"), load_server_keys(tmp_path / "b")
    # A client that knows B's server key but brings A's client key: B must refuse it.
    (tmp_path / "a_to_b").mkdir()
    (tmp_path / "a_to_b" / "server.key").write_bytes((tmp_path / "b" / "server.key").read_bytes())
    (tmp_path / "a_to_b" / "client.key_secret").write_bytes((tmp_path / "a" / "client.key_secret").read_bytes())
    with trio.fail_after(60):
        async with (
            open_embedded_server(workers=1, warm_workers=False, keys=keys_a) as a,
            open_embedded_server(workers=1, warm_workers=False, keys=keys_b) as b,
        ):
            for address, folder in ((a, tmp_path / "a"), (b, tmp_path / "b")):
                async with open_backend(address.control_url, keys=folder) as conn:
                    assert (await conn.server_info()).workers == 1
            with pytest.raises(ServerUnreachableError):
                async with open_connection(
                    b.control_url,
                    connect_timeout=1.0,
                    socket_options=load_client_keys(tmp_path / "a_to_b").socket_options(),
                ):
                    pass
        # Again, after both stopped: a new server with A's keys works (the handler is not bound twice).
        async with open_embedded_server(workers=1, warm_workers=False, keys=keys_a) as a2:
            async with open_backend(a2.control_url, keys=tmp_path / "a") as conn:
                assert (await conn.server_info()).workers == 1
