"""``imuflow keys DIR [NAME ...]``: create ZeroMQ CURVE key pairs for endpoints on other hosts.

Writes NAME.key (public) and NAME.key_secret (secret, mode 0600) per name
(default: server and client) and copies client public keys into DIR/authorized.
The publishing node sets `curve: {secret: DIR/server.key_secret, authorized:
DIR/authorized}`; a RemoteInput on another host sets `curve_secret:
DIR/client.key_secret` and `curve_server_public: DIR/server.key`. Copy only
public keys between hosts.
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


def run(args: argparse.Namespace) -> int:
    """Create the key pairs and list the files."""
    for path in create_keys(Path(args.dir), tuple(args.names)):
        print(path)
    return 0
