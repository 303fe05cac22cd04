"""greeter-serve with mutual TLS on (GREETER_TLS_*): only clients with a certificate from our CA are served.

Every test runs twice: with the local stack's certificates (`greeter-stack up --tls`) and with the compose stack's
(`python -m certs.tls deploy/compose/tls --host greeter --world-readable`, docker-compose.mtls.yml), where the
container health check must be served too."""

import http.client
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from certs.tls import CertFiles, mint
from greeter.protocol.harness import RuntimeHarness
from greeter.web.metrics import MULTIPROC_DIR_VARIABLE
from tests.protocol.messages import greet, greetings
from tests.support.net import free_port
from tests.support.processes import popen_logged, stop_process

SERVE = Path(sys.executable).with_name("greeter-serve")
ROOT = Path(__file__).resolve().parents[2]
COMPOSE_MTLS = ROOT / "docker-compose.mtls.yml"
LOCAL, COMPOSE = "greeter-stack up --tls", "python -m certs.tls"


@dataclass
class TlsServer:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    certs: CertFiles

    def connection(self, context: ssl.SSLContext) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=context)


def tls_env(certs: CertFiles) -> dict[str, str]:
    return {
        "GREETER_TLS_CERT": str(certs.server_cert),
        "GREETER_TLS_KEY": str(certs.server_key),
        "GREETER_TLS_CA": str(certs.ca),
    }


def get(server: TlsServer, context: ssl.SSLContext, path: str = "/readyz") -> int:
    connection = server.connection(context)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def wait_ready(server: TlsServer, deadline_s: float = 20) -> None:
    end = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < end:
        if server.process.poll() is not None:
            raise AssertionError(f"greeter-serve exited: {server.log.read_text()}")
        try:
            if get(server, server.certs.client_context()) == 200:
                return
        except OSError as error:  # ssl.SSLError is one
            last = str(error)
        time.sleep(0.1)
    raise AssertionError(f"not ready over TLS after {deadline_s} s: {last}\n{server.log.read_text()}")


def compose_certs(directory: Path) -> CertFiles:
    """The command docker-compose.mtls.yml names, as a user runs it."""
    (command,) = re.findall(r"python -m certs\.tls ([^#\n]+)", COMPOSE_MTLS.read_text())
    _folder, *options = shlex.split(command)
    subprocess.run(
        [sys.executable, "-m", "certs.tls", str(directory), *options], cwd=ROOT, check=True, capture_output=True
    )
    return CertFiles(directory)


@pytest.fixture(scope="module", params=[LOCAL, COMPOSE])
def certs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    directory = tmp_path_factory.mktemp("tls") / "tls"
    return mint(directory) if request.param == LOCAL else compose_certs(directory)


@pytest.fixture(scope="module")
def server(certs: CertFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    run = tmp_path_factory.mktemp("tls-greeter")
    port = free_port()
    log = run / "greeter.log"
    process = popen_logged(
        [str(SERVE), "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        log,
        {**os.environ, MULTIPROC_DIR_VARIABLE: str(run / "metrics"), **tls_env(certs)},
    )
    running = TlsServer(process, port, log, certs)
    try:
        wait_ready(running)
        yield running
    finally:
        stop_process(process)


def refused(server: TlsServer, context: ssl.SSLContext) -> BaseException:
    """Connect with `context`, ask for /readyz, and return the error that refused it (fail if it was served)."""
    try:
        status = get(server, context)
    except (ssl.SSLError, ConnectionError, http.client.HTTPException) as error:
        return error
    raise AssertionError(f"served with HTTP {status}")


def handshake_tls12(server: TlsServer, context: ssl.SSLContext) -> None:
    """A TLS 1.2 handshake only. In 1.2 the server checks the client's certificate before the handshake ends, so a
    refusal fails the handshake itself; in 1.3 the client finishes first and the server drops the connection after."""
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        context.wrap_socket(raw, server_hostname="127.0.0.1").close()


def test_a_client_with_a_certificate_from_our_ca_is_served(server: TlsServer) -> None:
    context = server.certs.client_context()

    def send(body: bytes) -> bytes:
        connection = server.connection(context)
        try:
            connection.request("POST", "/statefun", body, {"Content-Type": "application/octet-stream"})
            response = connection.getresponse()
            assert (response.status, response.getheader("Content-Type")) == (200, "application/octet-stream")
            return response.read()
        finally:
            connection.close()

    runtime = RuntimeHarness(send=send, function_type="example/greeter")
    assert greetings(runtime.invoke("Zoë", [greet("Zoë")])) == [("Zoë", "Welcome Zoë")]
    assert greetings(runtime.invoke("Zoë", [greet("Zoë")])) == [("Zoë", "Nice to see you again Zoë")]
    handshake_tls12(server, server.certs.client_context())  # the 1.2 check below fails for the right reason


def without_certificate(server: TlsServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=server.certs.ca)  # trusts the server, shows nothing


def from_another_ca(server: TlsServer, directory: Path) -> ssl.SSLContext:
    other = mint(directory)
    context = ssl.create_default_context(cafile=server.certs.ca)
    context.load_cert_chain(other.client_cert, other.client_key)  # a well-formed client certificate, wrong issuer
    return context


def test_a_client_without_a_certificate_is_refused(server: TlsServer) -> None:
    refused(server, without_certificate(server))
    with pytest.raises(ssl.SSLError):
        handshake_tls12(server, without_certificate(server))


def test_a_client_with_a_certificate_from_another_ca_is_refused(server: TlsServer, tmp_path: Path) -> None:
    refused(server, from_another_ca(server, tmp_path))
    with pytest.raises(ssl.SSLError):
        handshake_tls12(server, from_another_ca(server, tmp_path / "again"))


def test_plain_http_to_the_tls_port_gets_no_answer(server: TlsServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    assert not b"".join(chunks).startswith(b"HTTP/"), b"".join(chunks)


def test_refused_clients_do_not_disturb_the_workers(server: TlsServer) -> None:
    # Both workers first: gunicorn may still be forking the second when the server already answers.
    deadline = time.monotonic() + 30
    while len(workers := _workers(server)) < 2:
        assert time.monotonic() < deadline, f"gunicorn started {len(workers)} of 2 workers"
        time.sleep(0.1)
    for _ in range(10):
        refused(server, ssl.create_default_context(cafile=server.certs.ca))
    assert get(server, server.certs.client_context()) == 200
    after = _workers(server)
    assert sorted(after) == sorted(workers), "a worker died or was replaced"


def test_the_container_health_check_is_served(server: TlsServer) -> None:
    # docker-compose.mtls.yml's health check (the Kubernetes mtls overlay's probe, tests/static holds them equal):
    # it shows the greeter its own certificate, in the container's environment.
    test = yaml.safe_load(COMPOSE_MTLS.read_text())["services"]["greeter"]["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python"
    script = test[3].replace("https://127.0.0.1:8000", f"https://127.0.0.1:{server.port}")
    assert script.count(str(server.port)) == 1, test[3]
    result = subprocess.run(
        [sys.executable, test[2], script, *test[4:]],
        env={**os.environ, **tls_env(server.certs)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_the_compose_certificate_holds_for_the_host_the_runtime_calls(
    server: TlsServer, request: pytest.FixtureRequest
) -> None:
    documents = yaml.safe_load_all((ROOT / "deploy" / "compose" / "module.mtls.yaml").read_text())
    (url,) = [doc["spec"]["urlPathTemplate"] for doc in documents if "urlPathTemplate" in doc["spec"]]
    host = urlsplit(url).hostname
    context = server.certs.client_context()  # checks the name, as StateFun 3.3's client does not
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        if request.node.callspec.params["certs"] == COMPOSE:
            context.wrap_socket(raw, server_hostname=host).close()
        else:
            with pytest.raises(ssl.SSLCertVerificationError, match=f"not valid for '{host}'"):
                context.wrap_socket(raw, server_hostname=host)


def test_the_server_certificate_is_checked_by_the_client(server: TlsServer, tmp_path: Path) -> None:
    # The other side of "mutual": a client that trusts another CA does not accept this server.
    other = mint(tmp_path)
    context = ssl.create_default_context(cafile=other.ca)
    context.load_cert_chain(server.certs.client_cert, server.certs.client_key)
    with pytest.raises(ssl.SSLCertVerificationError):
        get(server, context)


@pytest.mark.parametrize("given", [("GREETER_TLS_CERT",), ("GREETER_TLS_CERT", "GREETER_TLS_KEY"), ("GREETER_TLS_CA",)])
def test_part_of_the_tls_settings_fails_start_up_naming_what_is_missing(
    certs: CertFiles, given: tuple[str, ...]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREETER_TLS_")}
    env.update({name: value for name, value in tls_env(certs).items() if name in given})
    result = subprocess.run([str(SERVE), "--bind", "127.0.0.1:1"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    missing = [name for name in tls_env(certs) if name not in given]
    assert f"{', '.join(missing)} not: mutual TLS needs all of" in result.stderr


def _workers(server: TlsServer) -> list[str]:
    return subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True).stdout.split()
