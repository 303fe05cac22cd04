"""Throwaway mutual-TLS material for one run: a CA, the greeter's server certificate and the runtime's client
certificate, minted into the run folder on every `up --tls` and never committed.

The runtime's async transport (StateFun 3.3, Netty 4.1 with the JDK's TLS) reads PEM certificates and an
unencrypted PKCS#8 PEM key (`BEGIN PRIVATE KEY`); Python's ssl reads the same files.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .config import HOST

# Re-minted on every `up`; a month outlives any local run, and a leaked file expires on its own.
VALIDITY = datetime.timedelta(days=30)
# Certificates start a little in the past: a clock a few minutes behind would otherwise reject a fresh one.
BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class CertFiles:
    """Where the PEM files of one run are."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.directory / "greeter.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "greeter-key.pem"

    @property
    def client_cert(self) -> Path:
        return self.directory / "runtime.pem"

    @property
    def client_key(self) -> Path:
        return self.directory / "runtime-key.pem"

    def client_context(self) -> ssl.SSLContext:
        """What a client of the greeter needs: trust our CA, show the runtime's certificate."""
        context = ssl.create_default_context(cafile=self.ca)
        context.load_cert_chain(self.client_cert, self.client_key)
        return context


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # fast to make; both the JDK and OpenSSL take it


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, public: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def _leaf(
    subject: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    usage: x509.ObjectIdentifier,
    names: list[x509.GeneralName],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    builder = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


# A CA that signs certificates and nothing else.
_CA_USAGE = dict.fromkeys(
    ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement"), False
) | {"key_cert_sign": True, "crl_sign": True, "encipher_only": False, "decipher_only": False}


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.unlink(missing_ok=True)
    # Keys readable by their owner only, from the moment they exist.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8: what Netty 4.1 reads without BouncyCastle. Unencrypted: a password file would sit right beside it.
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def mint(directory: Path) -> CertFiles:
    """A fresh CA, a server certificate for 127.0.0.1/localhost and a client certificate, all under `directory`."""
    files = CertFiles(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_key = _key()
    ca_cert = (
        _builder("greeter-stack throwaway CA", _name("greeter-stack throwaway CA"), ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(**_CA_USAGE), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key, server_cert = _leaf(
        "greeter",
        ca_key,
        ca_cert,
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")],
    )
    client_key, client_cert = _leaf("statefun-runtime", ca_key, ca_cert, ExtendedKeyUsageOID.CLIENT_AUTH, [])
    pem = serialization.Encoding.PEM
    _write(files.ca, ca_cert.public_bytes(pem))
    _write(files.server_cert, server_cert.public_bytes(pem))
    _write(files.server_key, _pem_key(server_key), private=True)
    _write(files.client_cert, client_cert.public_bytes(pem))
    _write(files.client_key, _pem_key(client_key), private=True)
    return files
