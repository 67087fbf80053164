"""A throwaway TLS certificate authority for demos and tests (never for a real platform).

The hub verifies the platform's certificate always; to keep that true in tests and
pilots without a public certificate, this makes a fresh CA and a server certificate
signed by it. Only the CA certificate is written, never the CA key, so nothing
more can be issued from it once this returns.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme

CA_CERT = "ca.pem"
SERVER_CHAIN = "server-chain.pem"
SERVER_KEY = "server-key.pem"


@dataclass(frozen=True)
class TlsFiles:
    """Where `make_ca` put the PEM files: the client trusts `ca_cert`, the server loads the other two."""

    ca_cert: Path
    server_cert_chain: Path
    server_key: Path


def _write(path: Path, data: bytes, mode: int) -> None:
    # Open with the final mode so a key is never readable by others, not even briefly;
    # chmod as well because os.open keeps the mode of a file that already exists.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def make_ca(directory: Path, hostnames: Sequence[str] = ("localhost", "127.0.0.1")) -> TlsFiles:
    """Make a CA and a server certificate for `hostnames` (names or IP addresses) in `directory`."""
    if not hostnames:
        raise ValueError("at least one hostname is needed for the server certificate")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="safebox throwaway test CA")
    leaf = ca.issue_cert(*hostnames)
    files = TlsFiles(directory / CA_CERT, directory / SERVER_CHAIN, directory / SERVER_KEY)
    _write(files.ca_cert, ca.cert_pem.bytes(), 0o644)
    _write(files.server_cert_chain, b"".join(blob.bytes() for blob in leaf.cert_chain_pems), 0o644)
    _write(files.server_key, leaf.private_key_pem.bytes(), 0o600)
    return files
