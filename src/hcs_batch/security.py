"""CurveZMQ keys: who may talk to a server that listens beyond loopback.

A key folder (``hcs-batch keys generate DIR``) holds ``server.key`` / ``server.key_secret``,
``client.key`` / ``client.key_secret`` and ``clients/`` with the public keys the server accepts. The server
needs ``server.key_secret`` (and ``clients/``); a client needs ``server.key`` and its own ``client.key_secret``.
Copy only those to each side. A client whose key is not in ``clients/`` (or that expects another server key)
completes no handshake and gets nothing: not an error reply, not an event.

Binding anything but loopback without keys is refused (:func:`check_bind`).
"""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio

from ._zmq import AsyncSocket, has_curve, load_certificate, new_socket, write_certificates, z85_encode
from .errors import SecurityError

__all__ = [
    "ClientKeys",
    "ServerKeys",
    "check_bind",
    "is_loopback",
    "load_client_keys",
    "load_server_keys",
    "main_keys",
    "serve_zap",
]

ZAP_ENDPOINT = "inproc://zeromq.zap.01"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerKeys:
    public: bytes
    secret: bytes
    authorized: frozenset[bytes]
    """Client public keys allowed in; empty means any client that knows the server's public key."""

    def socket_options(self) -> dict[str, Any]:
        return {"curve_server": 1, "curve_publickey": self.public, "curve_secretkey": self.secret, "zap_domain": b"hcs"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientKeys:
    public: bytes
    secret: bytes
    server_public: bytes

    def socket_options(self) -> dict[str, Any]:
        return {"curve_serverkey": self.server_public, "curve_publickey": self.public, "curve_secretkey": self.secret}


def _load(path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        public, secret_key = load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise SecurityError(
            f"cannot read key file {path}: {exc}; make keys with 'hcs-batch keys generate DIR'"
        ) from None
    if secret and not secret_key:
        raise SecurityError(f"{path} holds no secret key; use the .key_secret file")
    return public, secret_key


def load_server_keys(folder: str | Path) -> ServerKeys:
    """The server's key pair and authorized client keys from ``folder``. Raises SecurityError."""
    folder = Path(folder)
    _require_curve()
    public, secret = _load(folder / "server.key_secret", secret=True)
    assert secret is not None
    clients = folder / "clients"
    authorized = (
        frozenset(_load(p, secret=False)[0] for p in sorted(clients.glob("*.key"))) if clients.is_dir() else frozenset()
    )
    return ServerKeys(public=public, secret=secret, authorized=authorized)


def load_client_keys(folder: str | Path) -> ClientKeys:
    """A client's key pair and the server's public key from ``folder``. Raises SecurityError."""
    folder = Path(folder)
    _require_curve()
    server_public, _ = _load(folder / "server.key", secret=False)
    public, secret = _load(folder / "client.key_secret", secret=True)
    assert secret is not None
    return ClientKeys(public=public, secret=secret, server_public=server_public)


def _require_curve() -> None:
    if not has_curve():
        raise SecurityError("this libzmq was built without CurveZMQ; install pyzmq from PyPI wheels")


def is_loopback(url: str) -> bool:
    """True for ``tcp://127.x.x.x``, ``tcp://localhost`` and ``tcp://[::1]`` endpoints (and ``ipc``/``inproc``)."""
    parts = urlsplit(url)
    if parts.scheme in ("ipc", "inproc"):
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(url: str, keys: ServerKeys | None) -> None:
    """Refuse to listen beyond loopback without CurveZMQ keys. Raises SecurityError naming the address."""
    if keys is None and not is_loopback(url):
        raise SecurityError(
            f"refusing to listen on {url} without encryption: anyone who reaches it could run work on this machine; "
            "make keys with 'hcs-batch keys generate DIR' and pass --keys DIR, or bind tcp://127.0.0.1:PORT"
        )


async def serve_zap(keys: ServerKeys, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Answer ZeroMQ's authentication requests (ZAP) for this process: a CURVE client is let in when its
    public key is authorized (or when no list is kept). Runs until cancelled."""
    sock = AsyncSocket(new_socket("REP"))
    sock.zmq_socket.bind(ZAP_ENDPOINT)

    def on_request(frames: list[bytes]) -> None:
        # [version, request_id, domain, address, identity, mechanism, client_public_key]
        version, request_id = frames[0], frames[1]
        mechanism = frames[5] if len(frames) > 5 else b""
        client_key = frames[6] if len(frames) > 6 else b""
        allowed = mechanism == b"CURVE" and (not keys.authorized or z85_encode(client_key) in keys.authorized)
        status = (b"200", b"OK") if allowed else (b"400", b"client key not authorized")
        sock.send_nowait([version, request_id, *status, b"", b""])

    await sock.run(on_request, task_status=task_status)


def main_keys(args: argparse.Namespace) -> int:
    """``hcs-batch keys generate DIR``: a server pair, a client pair, and the client authorized."""
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("server", "client"):
        if (folder / f"{name}.key_secret").exists():
            print(f"hcs-batch: {folder / (name + '.key_secret')} exists; not overwriting keys", file=sys.stderr)
            return 2
    write_certificates(str(folder), "server")
    write_certificates(str(folder), "client")
    (folder / "clients").mkdir(exist_ok=True)
    shutil.copy(folder / "client.key", folder / "clients" / "client.key")
    for secret in folder.glob("*.key_secret"):
        secret.chmod(0o600)
    print(
        f"wrote CurveZMQ keys to {folder}: the server needs server.key_secret and clients/; "
        "a client needs server.key and client.key_secret",
        file=sys.stderr,
    )
    return 0
