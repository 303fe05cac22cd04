"""The real runtime calls the greeter over mutual TLS: its own stack with `tls=True`, certificates minted for it."""

from __future__ import annotations

import ssl
import time
import urllib.request
from collections.abc import Iterator

import pytest

from certs.tls import CertFiles
from stack.local import LocalStack
from tests.support.stacks import running_stack

from .kafka_io import produce, read_greetings, requests, unique_names

pytestmark = pytest.mark.e2e

PER_NAME = 5


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("tls-stack-run"), "tls stack", tls=True) as local:
        yield local


@pytest.mark.timeout(300)
def test_the_runtime_greets_through_mutual_tls(tls_stack: LocalStack) -> None:
    module_yaml = (tls_stack.config.conf_dir / "module.yaml").read_text()
    assert f"https://127.0.0.1:{tls_stack.config.ports.greeter}/statefun" in module_yaml
    assert "client_cert: file://" in module_yaml

    names = unique_names(10)
    started = time.monotonic()
    produce(tls_stack.config.bootstrap_servers, "names", requests(names, PER_NAME))
    settle = 3 * tls_stack.config.checkpoint_interval_ms / 1000
    report = read_greetings(tls_stack.config.bootstrap_servers, names, PER_NAME, settle, deadline_s=120)
    elapsed = time.monotonic() - started
    assert report.ok, "\n".join([*report.summary(), f"after {elapsed:.1f} s; logs in {tls_stack.config.run_dir}"])
    assert report.records == len(names) * PER_NAME
    assert tls_stack.failure_count() == 0


@pytest.mark.timeout(120)
def test_the_greeter_port_serves_no_one_without_our_client_certificate(tls_stack: LocalStack) -> None:
    url = f"{tls_stack.config.greeter_url}/readyz"
    assert url.startswith("https://")
    no_certificate = ssl.create_default_context(cafile=tls_stack.config.tls_dir / "ca.pem")
    with pytest.raises(OSError):  # URLError, SSLError, a reset: whichever way TLS 1.3 reports the refusal
        urllib.request.urlopen(url, timeout=5, context=no_certificate).read()
    with urllib.request.urlopen(url, timeout=5, context=CertFiles(tls_stack.config.tls_dir).client_context()) as ok:
        assert ok.status == 200


@pytest.mark.timeout(300)
def test_new_certificates_at_a_restart_lose_no_greeting(tls_stack: LocalStack) -> None:
    """SECURITY.md's mTLS rotation: `down`, then `up` mints a new CA and certificates; the job resumes from its
    checkpoint and counts on, calling the greeter with the new ones."""
    names = unique_names(10)
    produce(tls_stack.config.bootstrap_servers, "names", requests(names, PER_NAME))
    old_ca = (tls_stack.config.tls_dir / "ca.pem").read_bytes()
    tls_stack.down()
    tls_stack.up()
    assert (tls_stack.config.tls_dir / "ca.pem").read_bytes() != old_ca, "up minted a new CA"
    produce(tls_stack.config.bootstrap_servers, "names", requests(names, PER_NAME))
    settle = 3 * tls_stack.config.checkpoint_interval_ms / 1000
    report = read_greetings(tls_stack.config.bootstrap_servers, names, 2 * PER_NAME, settle, deadline_s=120)
    assert report.ok, "\n".join(report.summary())
    assert tls_stack.failure_count() == 0
