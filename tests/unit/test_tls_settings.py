"""GREETER_TLS_*: all three files or none, each checked at start-up; the gunicorn config turns them into mTLS."""

import ssl
from pathlib import Path

import pytest

from certs.tls import CertFiles, mint
from greeter.config.settings import SettingsError, TlsFiles, load_settings
from greeter.server.serve import gunicorn_options


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return mint(tmp_path_factory.mktemp("tls"))


def env_for(certs: CertFiles) -> dict[str, str]:
    return {
        "GREETER_TLS_CERT": str(certs.server_cert),
        "GREETER_TLS_KEY": str(certs.server_key),
        "GREETER_TLS_CA": str(certs.ca),
    }


def test_no_tls_variables_means_plain_http() -> None:
    assert load_settings({}).tls is None
    assert load_settings({"GREETER_TLS_CERT": " ", "GREETER_TLS_KEY": "", "GREETER_TLS_CA": ""}).tls is None


def test_all_three_are_parsed(certs: CertFiles) -> None:
    assert load_settings(env_for(certs)).tls == TlsFiles(certs.server_cert, certs.server_key, certs.ca)


@pytest.mark.parametrize("unset", ["GREETER_TLS_CERT", "GREETER_TLS_KEY", "GREETER_TLS_CA"])
def test_one_missing_fails_naming_it(certs: CertFiles, unset: str) -> None:
    env = env_for(certs)
    del env[unset]
    with pytest.raises(SettingsError, match=f"but {unset} not: mutual TLS needs all of"):
        load_settings(env)


def test_a_missing_file_is_named(certs: CertFiles, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"GREETER_TLS_CA=.*nowhere\.pem. is not a file"):
        load_settings({**env_for(certs), "GREETER_TLS_CA": str(tmp_path / "nowhere.pem")})


def test_a_key_that_does_not_match_the_certificate_fails(certs: CertFiles, tmp_path: Path) -> None:
    other = mint(tmp_path)
    with pytest.raises(SettingsError, match="GREETER_TLS_CERT and GREETER_TLS_KEY do not load as a PEM pair"):
        load_settings({**env_for(certs), "GREETER_TLS_KEY": str(other.server_key)})


def test_a_ca_file_that_is_not_pem_fails(certs: CertFiles, tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(SettingsError, match=r"GREETER_TLS_CA=.* is not a PEM CA certificate"):
        load_settings({**env_for(certs), "GREETER_TLS_CA": str(junk)})


def test_gunicorn_requires_a_client_certificate_when_tls_is_on(certs: CertFiles) -> None:
    conf = gunicorn_options(load_settings(env_for(certs)))
    assert (conf["certfile"], conf["keyfile"], conf["ca_certs"]) == (
        str(certs.server_cert),
        str(certs.server_key),
        str(certs.ca),
    )
    # gunicorn turns True into 1 (CERT_OPTIONAL): the value must be 2 and an int.
    assert type(conf["cert_reqs"]) is not bool and conf["cert_reqs"] == ssl.CERT_REQUIRED == 2


def test_gunicorn_serves_plain_http_when_tls_is_off() -> None:
    conf = gunicorn_options(load_settings({}))
    assert not {"certfile", "keyfile", "ca_certs", "cert_reqs"} & conf.keys()
