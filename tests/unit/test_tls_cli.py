"""`python -m certs.tls`: certificates for the container stacks (compose: --host greeter --world-readable), in the
layout and formats the local stack's --tls uses, accepted by the greeter's settings and the runtime-side client."""

import datetime
import ipaddress
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509

from certs.tls import CertFiles, main, mint
from greeter.config.settings import TlsFiles, load_settings

COMPOSE_ARGS = ["--host", "greeter", "--world-readable"]


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def alt_names(path: Path) -> x509.SubjectAlternativeName:
    return load(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def greeter_env(files: CertFiles) -> dict[str, str]:
    return {
        "GREETER_TLS_CERT": str(files.server_cert),
        "GREETER_TLS_KEY": str(files.server_key),
        "GREETER_TLS_CA": str(files.ca),
    }


@pytest.fixture(scope="module")
def compose_certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    directory = tmp_path_factory.mktemp("compose") / "tls"
    umask = os.umask(0o077)  # a strict umask must not make the files unreadable in the containers
    try:
        assert main([str(directory), *COMPOSE_ARGS]) == 0
    finally:
        os.umask(umask)
    return CertFiles(directory)


def test_the_command_writes_the_five_files_it_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "tls"), *COMPOSE_ARGS]) == 0
    files = CertFiles(tmp_path / "tls")
    assert capsys.readouterr().out.split() == [str(path) for path in files.all]
    assert sorted(path.name for path in files.directory.iterdir()) == sorted(path.name for path in files.all)


def test_the_greeter_certificate_names_the_compose_service_and_keeps_loopback(compose_certs: CertFiles) -> None:
    names = alt_names(compose_certs.server_cert)
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "greeter"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_the_greeter_and_the_runtime_side_accept_the_files(compose_certs: CertFiles) -> None:
    # What greeter-serve checks at start-up (GREETER_TLS_*), and the runtime side's certificate and trust.
    settings = load_settings(greeter_env(compose_certs))
    assert settings.tls == TlsFiles(compose_certs.server_cert, compose_certs.server_key, compose_certs.ca)
    compose_certs.client_context()
    for leaf in (compose_certs.server_cert, compose_certs.client_cert):
        load(leaf).verify_directly_issued_by(load(compose_certs.ca))


def test_world_readable_keys_for_the_containers_users_in_a_private_folder(compose_certs: CertFiles) -> None:
    # The greeter image runs as uid 10001, not the files' owner: bind-mounted one by one, it reads them through
    # their own mode; the folder keeps other users of the host out.
    for path in compose_certs.all:
        assert mode(path) == 0o644, path.name
    assert mode(compose_certs.directory) == 0o700


def test_without_the_flag_the_keys_stay_private_even_over_readable_ones(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    assert main([str(directory), *COMPOSE_ARGS]) == 0
    assert main([str(directory), "--host", "greeter"]) == 0
    files = CertFiles(directory)
    assert (mode(files.server_key), mode(files.client_key)) == (0o600, 0o600)
    assert (mode(files.server_cert), mode(files.ca)) == (0o644, 0o644)


def test_minting_again_replaces_the_ca(compose_certs: CertFiles, tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    assert main([str(directory), *COMPOSE_ARGS]) == 0
    first = load(CertFiles(directory).ca).public_key()
    assert main([str(directory), *COMPOSE_ARGS]) == 0
    assert load(CertFiles(directory).ca).public_key() != first


def test_days_sets_the_validity(tmp_path: Path) -> None:
    assert main([str(tmp_path / "tls"), "--days", "365"]) == 0
    now = datetime.datetime.now(datetime.UTC)
    for path in (CertFiles(tmp_path / "tls").ca, CertFiles(tmp_path / "tls").server_cert):
        left = load(path).not_valid_after_utc - now
        assert datetime.timedelta(days=364) < left <= datetime.timedelta(days=365), path.name


def test_hosts_may_be_ip_addresses_and_are_not_repeated(tmp_path: Path) -> None:
    files = mint(tmp_path, ["greeter", "greeter.ns.svc", "10.0.0.7", "localhost", "127.0.0.1", "Greeter"])
    names = alt_names(files.server_cert)
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "greeter", "greeter.ns.svc"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.0.0.7"),
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--host", "green house"], "neither an IP address nor a DNS name"),
        (["--host=-greeter"], "neither an IP address nor a DNS name"),
        (["--host", ""], "neither an IP address nor a DNS name"),
        (["--days", "0"], "--days 0: at least 1"),
    ],
)
def test_bad_arguments_fail_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "tls"), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "tls").exists()


def test_a_folder_holding_other_files_is_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    tmp_path.chmod(0o755)
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 2
    assert "holds other files than certificates minted here (notes.txt)" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]
    assert mode(tmp_path) == 0o755
