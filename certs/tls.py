"""Throwaway TLS material: a CA, the greeter's server certificate and the runtime's client certificate,
minted into the run folder on every `up --tls` and never committed, and the broker's for a secured Kafka.

`python -m certs.tls DIR --host greeter --world-readable` mints the same files for the compose stack's mutual TLS
(docker-compose.mtls.yml mounts them from deploy/compose/tls/); see main() and the README's "Mutual TLS".

The runtime's async transport (StateFun 3.3, Netty 4.1 with the JDK's TLS) reads PEM certificates and an
unencrypted PKCS#8 PEM key (`BEGIN PRIVATE KEY`); Python's ssl reads the same files.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
import ssl
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Re-minted on every `up`; a month outlives any local run, and a leaked file expires on its own.
VALIDITY = datetime.timedelta(days=30)
# Every server certificate is also for the loopback address, where the local stack binds (and a container's
# health check calls).
LOOPBACK = ipaddress.ip_address("127.0.0.1")
# Certificates start a little in the past: a clock a few minutes behind would otherwise reject a fresh one.
BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class CertFiles:
    """Where the PEM files of one run are."""

    directory: Path

    @property
    def ca(self) -> Path:
        """The CA certificate both sides trust."""
        return self.directory / "ca.pem"

    @property
    def server_cert(self) -> Path:
        """The greeter's certificate."""
        return self.directory / "greeter.pem"

    @property
    def server_key(self) -> Path:
        """The greeter's private key."""
        return self.directory / "greeter-key.pem"

    @property
    def client_cert(self) -> Path:
        """The runtime's client certificate."""
        return self.directory / "runtime.pem"

    @property
    def client_key(self) -> Path:
        """The runtime's private key."""
        return self.directory / "runtime-key.pem"

    @property
    def all(self) -> tuple[Path, ...]:
        """Every file mint writes."""
        return (self.ca, self.server_cert, self.server_key, self.client_cert, self.client_key)

    def client_context(self) -> ssl.SSLContext:
        """What a client of the greeter needs: trust our CA, show the runtime's certificate."""
        context = ssl.create_default_context(cafile=self.ca)
        context.load_cert_chain(self.client_cert, self.client_key)
        return context


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # fast to make; both the JDK and OpenSSL take it


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: str, issuer: x509.Name, public: ec.EllipticCurvePublicKey, validity: datetime.timedelta
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def _leaf(
    subject: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    usages: list[x509.ObjectIdentifier],
    names: list[x509.GeneralName],
    validity: datetime.timedelta,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


# A CA that signs certificates and nothing else.
_CA_USAGE = dict.fromkeys(
    ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement"), False
) | {"key_cert_sign": True, "crl_sign": True, "encipher_only": False, "decipher_only": False}


def _ca(name: str, validity: datetime.timedelta) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that signs certificates and nothing else, and its key."""
    key = _key()
    cert = (
        _builder(name, _name(name), key.public_key(), validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(**_CA_USAGE), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _write(path: Path, data: bytes, mode: int) -> None:
    path.unlink(missing_ok=True)
    # The mode from the moment the file exists (keys: readable by their owner only, unless asked otherwise).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(path, mode)  # os.open's mode passes through the umask


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8: what Netty 4.1 reads without BouncyCastle. Unencrypted: a password file would sit right beside it.
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# A DNS name as certificates carry it: dot-separated labels of letters, digits and inner hyphens.
_DNS_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def server_names(hosts: Iterable[str] = ()) -> list[x509.GeneralName]:
    """A server certificate's (the greeter's, the broker's) subject alternative names: 127.0.0.1 and localhost
    (the local stack, and the in-container health check), then each of `hosts`, an IP address or a DNS name (e.g.
    `greeter` in compose).
    """
    names: list[x509.GeneralName] = [x509.IPAddress(LOOPBACK), x509.DNSName("localhost")]
    for host in hosts:
        try:
            name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            if not _DNS_NAME.fullmatch(host):
                raise ValueError(f"{host!r} is neither an IP address nor a DNS name") from None
            name = x509.DNSName(host.lower())
        if name not in names:
            names.append(name)
    return names


def mint(
    directory: Path,
    hosts: Iterable[str] = (),
    *,
    validity: datetime.timedelta = VALIDITY,
    world_readable: bool = False,
) -> CertFiles:
    """A fresh CA, a server certificate for 127.0.0.1, localhost and `hosts`, and a client certificate, all under
    `directory`. The CA's key is not kept: nothing more can be signed, and minting again replaces everything.

    The folder is its owner's only (0700); the keys are too (0600) unless `world_readable` (0644, like the
    certificates): for containers that bind-mount the files one by one and read them as another user (the
    greeter image's uid 10001). A bind-mounted file is opened inside the container without passing through its
    folder on the host, so the folder keeps other users of this machine out either way.
    """
    names = server_names(hosts)
    files = CertFiles(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    key_mode = 0o644 if world_readable else 0o600
    ca_key, ca_cert = _ca("greeter-stack throwaway CA", validity)
    # clientAuth too: the container health checks (compose, Kubernetes) show the greeter its own certificate.
    server_key, server_cert = _leaf(
        "greeter",
        ca_key,
        ca_cert,
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        names,
        validity,
    )
    client_key, client_cert = _leaf(
        "statefun-runtime", ca_key, ca_cert, [ExtendedKeyUsageOID.CLIENT_AUTH], [], validity
    )
    pem = serialization.Encoding.PEM
    _write(files.ca, ca_cert.public_bytes(pem), 0o644)
    _write(files.server_cert, server_cert.public_bytes(pem), 0o644)
    _write(files.server_key, _pem_key(server_key), key_mode)
    _write(files.client_cert, client_cert.public_bytes(pem), 0o644)
    _write(files.client_key, _pem_key(client_key), key_mode)
    return files


def mint_kafka(
    directory: Path, hosts: Iterable[str] = (), *, validity: datetime.timedelta = VALIDITY
) -> tuple[Path, Path]:
    """A fresh CA and the broker's certificate for 127.0.0.1, localhost and `hosts`, under `directory` (0700): the
    CA file clients trust, and the broker's PEM key store (its PKCS#8 key, then its certificate and the CA's, in
    one file: Kafka's `ssl.keystore.type=PEM`). The CA's key is not kept.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_key, ca_cert = _ca("greeter-stack Kafka throwaway CA", validity)
    # clientAuth too: the broker is a client of its own listener (inter-broker traffic on one node).
    key, cert = _leaf(
        "kafka",
        ca_key,
        ca_cert,
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        server_names(hosts),
        validity,
    )
    pem = serialization.Encoding.PEM
    ca_file, key_store = directory / "ca.pem", directory / "broker.pem"
    _write(ca_file, ca_cert.public_bytes(pem), 0o644)
    _write(key_store, _pem_key(key) + cert.public_bytes(pem) + ca_cert.public_bytes(pem), 0o600)
    return ca_file, key_store


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m certs.tls",
        description=(
            "Mint a throwaway CA, the greeter's certificate (127.0.0.1, localhost and each --host) and the "
            "runtime's client certificate into DIR: ca.pem, greeter.pem, greeter-key.pem, runtime.pem, "
            "runtime-key.pem. For the compose stack: python -m certs.tls deploy/compose/tls --host greeter "
            "--world-readable"
        ),
    )
    parser.add_argument("directory", type=Path, metavar="DIR", help="created if missing; earlier files replaced")
    parser.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="another DNS name or IP address the greeter is reached by (repeat for more)",
    )
    parser.add_argument(
        "--days", type=int, default=VALIDITY.days, help="validity of every certificate (default: %(default)s)"
    )
    parser.add_argument(
        "--world-readable",
        action="store_true",
        help="keys 0644 instead of 0600, for containers that bind-mount the files and read them as another user "
        "(the greeter image runs as uid 10001); DIR stays 0700",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m certs.tls`: mint into DIR and print the files' paths; refuses a folder holding other files."""
    parser = _parser()
    args = parser.parse_args(argv)
    directory: Path = args.directory
    if args.days < 1:
        parser.error(f"--days {args.days}: at least 1")
    try:
        server_names(args.host)
    except ValueError as error:
        parser.error(f"--host {error}")
    if directory.exists():
        if not directory.is_dir():
            parser.error(f"{directory} is not a folder")
        ours = {path.name for path in CertFiles(directory).all}
        others = sorted(path.name for path in directory.iterdir() if path.name not in ours)
        if others:  # mint changes the folder's mode and replaces files: only in a folder of its own
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            parser.error(f"{directory} holds other files than certificates minted here ({shown})")
    files = mint(directory, args.host, validity=datetime.timedelta(days=args.days), world_readable=args.world_readable)
    for path in files.all:
        print(path)
    names = ", ".join(str(name.value) for name in server_names(args.host))
    print(f"a new CA; the greeter's certificate is for {names}; valid {args.days} days", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
