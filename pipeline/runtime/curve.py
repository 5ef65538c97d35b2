"""ZeroMQ CURVE keys for endpoints reachable from other hosts.

Local endpoints (ipc, loopback tcp) need no keys. A publisher that binds a
non-loopback address must have a server key pair and a folder of authorised
client public keys; a subscriber on another host connects with its own key
pair and the server's public key. Keys are the standard ZeroMQ certificate
files written by ``imuflow keys`` (``zmq.auth.create_certificates``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from pipeline.runtime.errors import ConfigError

log = logging.getLogger("imuflow.curve")


@dataclass(frozen=True)
class ServerKeys:
    """What a remote-reachable publisher needs: its secret key file and the authorised clients."""

    secret_file: Path  # e.g. keys/server.key_secret
    authorized_dir: Path  # folder of client *.key files allowed to subscribe


@dataclass(frozen=True)
class ClientKeys:
    """What a subscriber on another host needs: its secret key file and the server's public key."""

    secret_file: Path  # e.g. keys/client.key_secret
    server_public_file: Path  # e.g. keys/server.key


def create_keys(folder: Path, names: tuple[str, ...] = ("server", "client")) -> list[Path]:
    """Write a key pair per name into ``folder`` (0700) and the client public keys into
    ``folder/authorized``; return the files written."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    authorized = folder / "authorized"
    authorized.mkdir(exist_ok=True, mode=0o700)
    written = []
    for name in names:
        public, secret = zmq.auth.create_certificates(str(folder), name)
        Path(secret).chmod(0o600)
        written += [Path(public), Path(secret)]
        if name != "server":
            dst = authorized / Path(public).name
            dst.write_bytes(Path(public).read_bytes())
            written.append(dst)
    return written


def _load(path: Path, want_secret: bool) -> tuple[bytes, bytes | None]:
    if not path.exists():
        raise ConfigError(f"CURVE key file '{path}' not found; create keys with `imuflow keys DIR`")
    public, secret = zmq.auth.load_certificate(str(path))
    if want_secret and secret is None:
        raise ConfigError(f"CURVE key file '{path}' holds no secret key (use the .key_secret file)")
    return public, secret


def secure_server(ctx: zmq.Context, sock: zmq.Socket, keys: ServerKeys) -> ThreadAuthenticator:
    """Make ``sock`` a CURVE server accepting only the authorised client keys."""
    if not keys.authorized_dir.is_dir():
        raise ConfigError(f"CURVE authorised-clients folder '{keys.authorized_dir}' not found")
    auth = ThreadAuthenticator(ctx, log=logging.getLogger("imuflow.curve.auth"))
    auth.start()
    auth.configure_curve(domain="*", location=str(keys.authorized_dir))
    public, secret = _load(keys.secret_file, want_secret=True)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    return auth


def secure_client(sock: zmq.Socket, keys: ClientKeys) -> None:
    """Make ``sock`` a CURVE client of the server whose public key is given."""
    public, secret = _load(keys.secret_file, want_secret=True)
    server_public, _ = _load(keys.server_public_file, want_secret=False)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public
