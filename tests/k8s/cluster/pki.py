"""The cluster's certificates, minted with openssl (no kubeadm): one CA signs every serving and client certificate.

Who is who comes from the client certificate's subject: CN is the user, O the groups. The API server gives
`system:masters` every right; `system:node:<name>` in `system:nodes` is what the Node authorizer and
NodeRestriction expect of a kubelet; the controller-manager, scheduler and kube-proxy have the users their
default RBAC bindings name.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CURVE: Final = "prime256v1"  # ECDSA P-256: fast to make, accepted everywhere in Kubernetes
DAYS: Final = 30


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as files."""

    cert: Path
    key: Path


def _openssl(*argv: str) -> None:
    result = subprocess.run(["openssl", *argv], capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(argv)} failed: {result.stderr}")


def make_ca(folder: Path, name: str) -> KeyPair:
    """A self-signed CA."""
    folder.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(folder / "ca.crt", folder / "ca.key")
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{CURVE}", "-nodes",
        "-keyout", str(pair.key), "-out", str(pair.cert), "-days", str(DAYS), "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )  # fmt: skip
    return pair


def issue(
    ca: KeyPair,
    folder: Path,
    name: str,
    *,
    user: str,
    groups: tuple[str, ...] = (),
    server_names: tuple[str, ...] = (),
    server_ips: tuple[str, ...] = (),
    client: bool = True,
) -> KeyPair:
    """A certificate for `user` (CN) in `groups` (O), a server's too when it has names or addresses (SANs)."""
    pair = KeyPair(folder / f"{name}.crt", folder / f"{name}.key")
    request = folder / f"{name}.csr"
    extensions = folder / f"{name}.ext"
    subject = "".join(f"/O={group}" for group in groups) + f"/CN={user}"
    server = bool(server_names or server_ips)
    usages = [usage for usage, wanted in (("serverAuth", server), ("clientAuth", client)) if wanted]
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={','.join(usages)}",
    ]
    if server:
        names = [f"DNS:{dns}" for dns in server_names] + [f"IP:{ip}" for ip in server_ips]
        lines.append(f"subjectAltName={','.join(names)}")
    extensions.write_text("\n".join(lines) + "\n")
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{CURVE}", "-nodes",
        "-keyout", str(pair.key), "-out", str(request), "-subj", subject,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
        "-days", str(DAYS), "-extfile", str(extensions), "-out", str(pair.cert),
    )  # fmt: skip
    request.unlink()
    extensions.unlink()
    return pair


def make_service_account_keys(folder: Path) -> KeyPair:
    """The key pair the API server signs service-account tokens with (`cert` holds the public key)."""
    pair = KeyPair(folder / "service-account.pub", folder / "service-account.key")
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{CURVE}", "-out", str(pair.key))
    _openssl("pkey", "-in", str(pair.key), "-pubout", "-out", str(pair.cert))
    return pair
