"""Ed25519 signatures over a bundle's root digest, so a device trains only bundles from its publisher.

    private_pem, public_pem = generate_key_pair()      # `quic-edge keygen --out publisher`
    export ... signing_key=private_pem                 # `quic-edge export --sign publisher.key`
    open_loop(bundle, work, trusted_keys=[public_pem]) # the device: a bundle without a trusted signature is refused

Keys are PEM files (PKCS#8 private, SubjectPublicKeyInfo public) as `openssl genpkey -algorithm ed25519` writes them.
The signature signs the ASCII hex root digest (`manifest.sha256`), which covers every byte of the bundle. Uses the
`cryptography` package; only signing and signature checks import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .bundle import BundleError

SIGNATURE_BYTES = 64


def _ed25519():
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519


def generate_key_pair() -> tuple[bytes, bytes]:
    """(private key PEM, public key PEM) of a new Ed25519 key."""
    from cryptography.hazmat.primitives import serialization as s

    key = _ed25519().Ed25519PrivateKey.generate()
    private = key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption())
    public = key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def load_private_key(pem: bytes):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as err:
        raise ValueError(f"signing key: not an unencrypted PEM private key ({err})") from None
    if not isinstance(key, _ed25519().Ed25519PrivateKey):
        raise ValueError(f"signing key: an Ed25519 key is needed, got {type(key).__name__}")
    return key


def load_public_key(pem: bytes):
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError) as err:
        raise ValueError(f"trusted key: not a PEM public key ({err})") from None
    if not isinstance(key, _ed25519().Ed25519PublicKey):
        raise ValueError(f"trusted key: an Ed25519 public key is needed, got {type(key).__name__}")
    return key


def sign(private_pem: bytes, digest: str) -> bytes:
    """The 64-byte Ed25519 signature of a root digest."""
    return load_private_key(private_pem).sign(digest.encode("ascii"))


def verify_signature(path: Path, digest: str, trusted_keys: Sequence[bytes]) -> None:
    """Raise BundleError unless `path` holds a signature of `digest` by one of the trusted public keys (PEM)."""
    from cryptography.exceptions import InvalidSignature

    keys = [load_public_key(k) for k in trusted_keys]
    if not keys:
        raise BundleError("trusted_keys is empty: give the publisher's public key, or leave trusted_keys out")
    if not path.is_file():
        raise BundleError(f"{path.parent} is not signed ({path.name} is missing) and this device trains only signed "
                          "bundles; ask the publisher for a signed bundle (quic-edge export --sign KEY)")
    signature = path.read_bytes()
    if len(signature) != SIGNATURE_BYTES:
        raise BundleError(f"{path} is not an Ed25519 signature ({len(signature)} bytes); copy the bundle again")
    for key in keys:
        try:
            key.verify(signature, digest.encode("ascii"))
            return
        except InvalidSignature:
            continue
    raise BundleError(f"{path.parent} is signed by none of the trusted keys (or was altered after signing); install a "
                      "bundle from the publisher whose key this device trusts")
