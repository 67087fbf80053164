"""The hub's Ed25519 signing key: made on the hub at first run, never leaves it.

The platform trusts a hub through the public half given at enrolment
(`public_key_text`), so losing the private half means re-enrolling, and leaking it
means anyone can post events as this hub: the file is kept mode 0600 and the hub
refuses to use it otherwise.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from safebox.hub.private_files import PrivateFileError, read_private, write_private
from safebox.protocol import signing


class KeyFileError(Exception):
    """The hub key cannot be used; the message says what to do."""


def load_or_create(path: str | Path) -> Ed25519PrivateKey:
    """The hub's private key from `path`, made there (mode 0600) if there is none yet."""
    path = Path(path)
    try:
        try:
            pem = read_private(path)
        except FileNotFoundError:
            _create(path)
            pem = read_private(path)
    except (PrivateFileError, FileNotFoundError) as exc:
        raise KeyFileError(str(exc)) from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key ({exc}); "
                           "restore it from backup, or delete it to make a new one and re-enrol the hub") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: holds a {type(key).__name__}, the hub signs with Ed25519")
    return key


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """What the installer gives the platform at enrolment (base64 of the raw public key)."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return signing.public_key_to_text(pub)


def _create(path: Path) -> None:
    try:
        write_private(path, _pem(Ed25519PrivateKey.generate()), replace=False)
    except FileExistsError:
        pass  # another process made it first: use that one
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create the hub key: {exc.strerror}") from None


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
