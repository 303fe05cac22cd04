"""certs/tls.py: the throwaway CA and certificates, in the formats StateFun's async transport reads."""

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs.tls import VALIDITY, CertFiles, mint


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return mint(tmp_path_factory.mktemp("tls") / "tls")


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_keys_are_unencrypted_pkcs8_pem_readable_by_the_owner_only(certs: CertFiles) -> None:
    for key in (certs.server_key, certs.client_key):
        text = key.read_text()
        # Netty 4.1 (the runtime's transport) reads PKCS#8; "EC PRIVATE KEY" (SEC1) would fail there.
        assert text.startswith("-----BEGIN PRIVATE KEY-----\n"), text[:40]
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(certs.directory.stat().st_mode) == 0o700


def test_the_server_certificate_names_the_loopback_address_and_is_for_servers(certs: CertFiles) -> None:
    cert = load(certs.server_cert)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    # clientAuth as well: the container health checks show the greeter its own certificate.
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def test_the_client_certificate_is_for_clients(certs: CertFiles) -> None:
    usage = load(certs.client_cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_both_are_signed_by_the_ca_which_signs_nothing_else(certs: CertFiles) -> None:
    ca = load(certs.ca)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    for leaf in (load(certs.server_cert), load(certs.client_cert)):
        assert leaf.issuer == ca.subject
        leaf.verify_directly_issued_by(ca)
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_validity_is_bounded_and_starts_in_the_past(certs: CertFiles) -> None:
    now = datetime.datetime.now(datetime.UTC)
    for path in (certs.ca, certs.server_cert, certs.client_cert):
        cert = load(path)
        assert cert.not_valid_before_utc < now < cert.not_valid_after_utc <= now + VALIDITY


def test_each_mint_is_a_new_ca(certs: CertFiles, tmp_path: Path) -> None:
    again = mint(tmp_path)
    assert load(again.ca).public_key() != load(certs.ca).public_key()
    before = again.ca.read_bytes()
    assert mint(tmp_path).ca.read_bytes() != before  # minting over old files replaces them
