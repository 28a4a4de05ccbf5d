"""`quic-edge keygen`: an Ed25519 key pair for signing bundles."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "keygen",
        help="make an Ed25519 key pair: sign bundles with the private key, give devices the public one",
        description="Write OUT.key (the private key, PEM, readable by you only: keep it off devices) and OUT.pub (the "
        "public key, PEM). `quic-edge export --sign OUT.key` signs a bundle; a device trains only bundles signed by a "
        "key it trusts (`quic-edge train --trusted-key OUT.pub`, the Android app's trusted keys).",
    )
    p.add_argument("--out", required=True, help="path prefix of the two files (OUT.key, OUT.pub)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quic_edge.formats.signing import generate_key_pair

    private_path, public_path = Path(f"{args.out}.key"), Path(f"{args.out}.pub")
    for path in (private_path, public_path):
        if path.exists() and not args.force:
            raise ValueError(f"{path} exists; pass --force to replace it (bundles signed with the old key stop verifying)")
    private, public = generate_key_pair()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private)
    public_path.write_bytes(public)
    print(f"wrote {private_path} (private, keep it secret) and {public_path} (public, give it to devices)")
    return 0
