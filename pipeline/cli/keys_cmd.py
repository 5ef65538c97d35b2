"""``imuflow keys DIR [NAME ...]``: create ZeroMQ CURVE key pairs for endpoints on other hosts.

Writes NAME.key (public) and NAME.key_secret (secret, mode 0600) per name
(default: server and client) and copies client public keys into DIR/authorized.
The publishing node sets `curve: {secret: DIR/server.key_secret, authorized:
DIR/authorized}`; a RemoteInput on another host sets `curve_secret:
DIR/client.key_secret` and `curve_server_public: DIR/server.key`. Copy only
public keys between hosts. Existing key files are kept: the command refuses
unless --force is given (replacing a key locks out every host that has the old
public key).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.runtime.curve import create_keys


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("dir", help="folder for the key files (created, mode 0700)")
    p.add_argument("names", nargs="*", default=["server", "client"],
                   help="key pair names (default: server client)")
    p.add_argument("--force", action="store_true",
                   help="replace key files that exist (hosts with the old keys are locked out)")


def run(args: argparse.Namespace) -> int:
    """Create the key pairs and list the files; refuse to replace existing keys without --force."""
    d = Path(args.dir)
    existing = [d / f"{n}{ext}" for n in args.names for ext in (".key", ".key_secret")
                if (d / f"{n}{ext}").exists()]
    if existing and not args.force:
        raise FileExistsError(f"key files exist: {', '.join(map(str, existing))}; "
                              "keep them, or replace them with --force")
    for path in create_keys(Path(args.dir), tuple(args.names)):
        print(path)
    return 0
