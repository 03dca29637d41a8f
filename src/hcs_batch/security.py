"""CurveZMQ keys: who may talk to a server that listens beyond loopback.

A key folder (``hcs-batch keys generate DIR``) holds ``server.key`` / ``server.key_secret``,
``client.key`` / ``client.key_secret`` and ``clients/`` with the public keys the server accepts. The server
needs ``server.key_secret`` and ``clients/``; a client needs ``server.key`` and its own ``client.key_secret``.
Copy only those to each side (secret files are written mode 0600). A client whose key is not in ``clients/``
(or that expects another server key, or brings no keys) completes no handshake and gets nothing: not an error
reply, not an event.

Binding anything but loopback without keys is refused (:func:`check_bind`). A server under keys runs its
sockets inside :func:`authorized_sockets`, which answers ZeroMQ's authentication requests (ZAP) for them.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._util import is_loopback, log_throttled
from ._zmq import curve_keypair, has_curve, load_certificate, new_socket, z85_encode
from .errors import SecurityError

__all__ = [
    "ClientKeys",
    "ServerKeys",
    "authorized_sockets",
    "check_bind",
    "generate_keys",
    "is_loopback",
    "load_client_keys",
    "load_server_keys",
]

log = logging.getLogger("hcs_batch.security")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
_Z85_KEY_LENGTH = 40


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerKeys:
    public: bytes
    secret: bytes = field(repr=False)  # never in a log or a traceback
    authorized: frozenset[bytes]
    """Z85 public keys of the clients allowed in; never empty (:func:`load_server_keys` refuses that)."""

    def socket_options(self, *, domain: bytes = b"hcs") -> dict[str, Any]:
        """Options for a CurveZMQ server socket; ``domain`` is the ZAP domain its handshakes are checked under.

        Get them from :func:`authorized_sockets`: without a ZAP handler libzmq lets *any* CURVE client in.
        """
        return {"curve_server": 1, "curve_publickey": self.public, "curve_secretkey": self.secret, "zap_domain": domain}


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientKeys:
    public: bytes
    secret: bytes = field(repr=False)
    server_public: bytes

    def socket_options(self) -> dict[str, Any]:
        """Options for a CurveZMQ client socket (both the control DEALER and the events SUB need them)."""
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
    for key in (public, secret_key):
        if key is not None and len(key) != _Z85_KEY_LENGTH:
            raise SecurityError(f"{path} holds a malformed key; make keys with 'hcs-batch keys generate DIR'")
    return public, secret_key


def load_server_keys(folder: str | Path) -> ServerKeys:
    """The server's key pair and authorized client keys (``clients/*.key``) from ``folder``.

    Raises:
        SecurityError: a missing or malformed key file, or no authorized client key at all (a server that let
            in anyone who knows its public key would be no safer than no keys).
    """
    folder = Path(folder)
    _require_curve()
    public, secret = _load(folder / "server.key_secret", secret=True)
    assert secret is not None
    clients = folder / "clients"
    authorized = (
        frozenset(_load(p, secret=False)[0] for p in sorted(clients.glob("*.key"))) if clients.is_dir() else frozenset()
    )
    if not authorized:
        raise SecurityError(
            f"no authorized client keys in {clients}: copy each client's client.key there (as NAME.key)"
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


def check_bind(url: str, keys: ServerKeys | None) -> None:
    """Refuse to listen beyond loopback without CurveZMQ keys. Raises SecurityError naming the address."""
    if keys is None and not is_loopback(url):
        raise SecurityError(
            f"refusing to bind {url} without CurveZMQ keys: anyone who reaches it could run work on this machine; "
            "make keys with 'hcs-batch keys generate DIR' and pass --keys DIR, or bind tcp://127.0.0.1:PORT"
        )


class _ZapHandler:
    """This process's one ZAP endpoint, answered by a daemon thread, with a registry of key domains.

    libzmq has one ZAP endpoint per context, and it cannot be bound again soon after it was closed (measured:
    ``EADDRINUSE`` right after a LINGER-0 close). Worse, when nobody is bound there, libzmq lets *every* CURVE
    client in. So the handler is bound once, on first use, and never closed; each keyed server registers its own
    domain and unregisters it when it stops, and a request for any other domain is refused.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._domains: dict[bytes, frozenset[bytes]] = {}
        self._started = False
        self.refused = 0
        """Handshakes refused since the process started (read from any thread: a plain int)."""

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            sock = new_socket("REP")
            try:
                sock.bind(ZAP_ENDPOINT)
            except Exception as exc:  # zmq.ZMQError; only _zmq may name zmq
                sock.close(linger=0)
                raise SecurityError(
                    f"cannot answer CurveZMQ authentication at {ZAP_ENDPOINT}: {exc}; "
                    "another ZAP handler runs in this process"
                ) from None
            threading.Thread(target=self._serve, args=(sock,), name="hcs-batch-zap", daemon=True).start()
            self._started = True

    def register(self, domain: bytes, authorized: frozenset[bytes]) -> None:
        with self._lock:
            self._domains[domain] = authorized

    def unregister(self, domain: bytes) -> None:
        with self._lock:
            self._domains.pop(domain, None)

    def decide(self, frames: list[bytes]) -> tuple[bytes, bytes]:
        """The (status code, text) for one ZAP request: 200 only for CURVE, a live domain and a listed key."""
        # [version, request_id, domain, address, identity, mechanism, client_public_key]
        if len(frames) < 7 or frames[0] != b"1.0":
            return b"400", b"malformed ZAP request"
        domain, mechanism, client_key = frames[2], frames[5], frames[6]
        with self._lock:
            authorized = self._domains.get(domain)
        if mechanism != b"CURVE" or authorized is None:
            return b"400", b"no CurveZMQ server for this domain"
        if len(client_key) != 32 or z85_encode(client_key) not in authorized:
            return b"400", b"client key not authorized"
        return b"200", b"OK"

    def _serve(self, sock: Any) -> None:
        while True:
            frames = sock.recv_multipart()
            code, text = self.decide(frames)
            version = frames[0] if frames else b"1.0"
            request_id = frames[1] if len(frames) > 1 else b""
            if code != b"200":
                self.refused += 1
                if log_throttled(self.refused):
                    log.warning("refused a CurveZMQ client (%d so far): %s", self.refused, text.decode())
            sock.send_multipart([version, request_id, code, text, b"", b""])


_zap = _ZapHandler()


@contextmanager
def authorized_sockets(keys: ServerKeys) -> Iterator[dict[str, Any]]:
    """Let the clients ``keys`` authorizes in, for as long as the block lasts; yields the socket options
    (``new_socket(kind, **options)``) that make a socket a CurveZMQ server under them.

    Make and bind the sockets inside the block and close them before it ends: after it, every handshake on
    them is refused. Raises SecurityError when another ZAP handler already runs in this process.
    """
    _zap.start()
    domain = b"hcs-" + uuid.uuid4().hex.encode()
    _zap.register(domain, keys.authorized)
    try:
        yield keys.socket_options(domain=domain)
    finally:
        _zap.unregister(domain)


_PUBLIC_TEMPLATE = """#   ****  Generated on {date} by hcs-batch  ****
#   ZeroMQ CURVE Public Certificate
#   Exchange securely, or use a secure mechanism to verify the contents
#   of this file after exchange. Store public certificates in your home
#   directory, in the .curve subdirectory.

metadata
curve
    public-key = "{public}"
"""
_SECRET_TEMPLATE = """#   ****  Generated on {date} by hcs-batch  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

metadata
curve
    public-key = "{public}"
    secret-key = "{secret}"
"""


def _write_new(path: Path, text: str, mode: int) -> None:
    # O_EXCL: never overwrite; the mode applies at creation, so a secret is never readable by others, not even
    # for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def generate_keys(folder: str | Path) -> None:
    """Write a server pair, a client pair, and the client's public key in ``clients/`` into ``folder``.

    Secret files are created mode 0600. Raises SecurityError, before writing anything, when any of the files
    exists already.
    """
    folder = Path(folder)
    names = ["server.key", "server.key_secret", "client.key", "client.key_secret", "clients/client.key"]
    existing = [name for name in names if (folder / name).exists()]
    if existing:
        raise SecurityError(f"{folder / existing[0]} exists; not overwriting keys (choose an empty folder)")
    _require_curve()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    (folder / "clients").mkdir(exist_ok=True)
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    for name in ("server", "client"):
        public, secret = (key.decode("ascii") for key in curve_keypair())
        _write_new(folder / f"{name}.key", _PUBLIC_TEMPLATE.format(date=date, public=public), 0o644)
        _write_new(
            folder / f"{name}.key_secret", _SECRET_TEMPLATE.format(date=date, public=public, secret=secret), 0o600
        )
        if name == "client":
            _write_new(folder / "clients" / "client.key", _PUBLIC_TEMPLATE.format(date=date, public=public), 0o644)
