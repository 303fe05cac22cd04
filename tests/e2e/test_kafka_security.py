"""The secured broker, as a user starts it: `greeter-stack up --kafka-security sasl-ssl` (single mode), then the
product's CLIs with the credential files it wrote. The pipeline is exact through it; whoever cannot log in is
refused in one line; each principal can do its own job and nothing else; and no secret reaches a log, a command
line or `status`. The cluster mode's TaskManager kill on the secured broker is in tests/faults.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

# re-exported by confluent_kafka.admin without __all__
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from certs.tls import mint_kafka
from clitools.kafka_security import KafkaSecurity
from stack.config import REPO_ROOT, Ports, port_env_var
from stack.kafka_auth import ADMIN, CLIENTS, CONSUMER, GENERATOR, MONITOR, RUNTIME, KafkaAuthFiles, client_flags
from stack.local import LocalStack

pytestmark = pytest.mark.e2e

VENV_BIN = REPO_ROOT / ".venv" / "bin"
NAMES, PER_NAME = 40, 10


def _run(argv: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, dict[str, str], str]]:
    """The stack `greeter-stack up --fresh --kafka-security sasl-ssl` started, on free ports, its environment,
    and what `up` printed; stopped by `down` whatever happens."""
    run_dir = tmp_path_factory.mktemp("secured-stack-run")
    ports = Ports.free()
    env = {**os.environ, "GREETER_STACK_RUN_DIR": str(run_dir), "GREETER_SEEN_COUNT_TTL": "0"}
    env |= {port_env_var(p.name): str(getattr(ports, p.name)) for p in fields(Ports)}
    try:
        up = _run([str(VENV_BIN / "greeter-stack"), "up", "--fresh", "--kafka-security", "sasl-ssl"], env)
        assert up.returncode == 0, f"up failed:\n{up.stderr[-3000:]}"
        yield LocalStack.attach(run_dir), env, up.stdout + up.stderr
    finally:
        down = _run([str(VENV_BIN / "greeter-stack"), "down"], env)
        print(down.stderr, file=sys.stderr)


def _settings(stack: LocalStack, principal: str, **extra: object) -> dict[str, object]:
    security = KafkaAuthFiles(stack.config.run_dir).security(principal).librdkafka()
    return {"bootstrap.servers": stack.config.bootstrap_servers, "log_level": 0, **security, **extra}


@pytest.mark.timeout(300)
def test_the_pipeline_is_exact_through_the_secured_broker(secured: tuple[LocalStack, dict[str, str], str]) -> None:
    stack, env, _ = secured
    load = ["--names", str(NAMES), "--seed", "29", "--count", str(NAMES * PER_NAME), "--no-progress"]
    generator = _run([str(VENV_BIN / "greeter-generator"), *client_flags(stack.config, GENERATOR), *load], env)
    assert generator.returncode == 0, generator.stderr
    assert f"delivered {NAMES * PER_NAME}, failed 0" in generator.stderr

    verify = _run(
        [
            str(VENV_BIN / "greeter-consumer"),
            "verify",
            *client_flags(stack.config, CONSUMER),
            "--from-names",
            "--timeout",
            "120",
        ],
        env,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"verify: OK: {NAMES * PER_NAME} greetings, {NAMES} names" in verify.stdout + verify.stderr

    # `status` reads the ingress lag as the monitor principal, from the run folder.
    status = _run([str(VENV_BIN / "greeter-stack"), "status"], env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "lag          group greeter on names:" in status.stdout, status.stdout
    assert "lag unavailable" not in status.stdout
    assert stack.failure_count() == 0, "the job never failed: the runtime's ACLs let it read, write and commit"


@pytest.mark.timeout(300)
def test_the_clis_find_their_login_in_the_run_folder(secured: tuple[LocalStack, dict[str, str], str]) -> None:
    """The contract's command lines, unchanged: pointed at the secured stack's broker with nothing else said, the
    generator and the consumer log in as themselves from the run folder (GREETER_STACK_RUN_DIR), saying so."""
    stack, env, _ = secured
    env = {**env, "GREETER_BOOTSTRAP_SERVERS": stack.config.bootstrap_servers}
    generate = [str(VENV_BIN / "greeter-generator"), "--names", "10", "--seed", "7", "--count", "50", "--no-progress"]
    generator = _run(generate, env)
    assert generator.returncode == 0, generator.stderr
    login = KafkaAuthFiles(stack.config.run_dir).client_file(GENERATOR)
    assert f"generator: the local stack's Kafka is secured: logging in as generator ({login})" in generator.stderr
    verify = [str(VENV_BIN / "greeter-consumer"), "--from-beginning", "--verify", "--expect-from-names"]
    consumer = _run([*verify, "--timeout", "120"], env)
    assert consumer.returncode == 0, consumer.stdout + consumer.stderr
    assert "logging in as consumer" in consumer.stderr and "verify: OK" in consumer.stdout + consumer.stderr


def _refusal(argv: list[str], env: dict[str, str]) -> str:
    """Run a CLI that must be refused: its exit 1 and its last stderr line (no traceback, no retry loop)."""
    result = _run(argv, env, timeout=60)
    assert result.returncode == 1, f"exit {result.returncode}:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith(("generator: Kafka", "consumer: error"))]
    assert len(ours) == 1, result.stderr
    return ours[0]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("login", "says"),
    [
        ("none", "accepts connections but closes them at the first request: it expects TLS or SASL"),
        ("wrong password", "authentication failed"),
        ("another CA", "fails verification against"),
    ],
)
def test_a_client_that_cannot_log_in_is_refused_in_one_line(
    secured: tuple[LocalStack, dict[str, str], str], tmp_path: Path, login: str, says: str
) -> None:
    stack, stack_env, _ = secured
    # A stranger's shell: no run folder to find the stack's logins in.
    env = {key: value for key, value in stack_env.items() if key != "GREETER_STACK_RUN_DIR"}
    good = KafkaAuthFiles(stack.config.run_dir).security(CONSUMER)
    config = tmp_path / "client.properties"
    if login == "none":
        flags = ["--bootstrap-servers", stack.config.bootstrap_servers]
    else:
        lines = [f"{k}={v}" for k, v in good.librdkafka().items()]
        if login == "wrong password":
            lines = [line if not line.startswith("sasl.password=") else "sasl.password=not-it" for line in lines]
        else:
            other_ca, _ = mint_kafka(tmp_path / "other-ca")
            lines = [
                line if not line.startswith("ssl.ca.location=") else f"ssl.ca.location={other_ca}" for line in lines
            ]
        config.write_text("\n".join(lines) + "\n")
        flags = ["--bootstrap-servers", stack.config.bootstrap_servers, "--kafka-client-config", str(config)]
    for tool, argv in (
        ("generator", [str(VENV_BIN / "greeter-generator"), *flags, "--count", "5", "--no-progress"]),
        ("consumer", [str(VENV_BIN / "greeter-consumer"), "tail", *flags, "--from-beginning", "--timeout", "5"]),
    ):
        line = _refusal(argv, env)
        assert says in line, f"{tool}: {line}"


@contextmanager
def _tls_listener(key_store: Path) -> Iterator[str]:
    """A TLS server on loopback that shows the certificate in `key_store` and hangs up: enough for a client's
    handshake to verify it. Its address; stopped on exit."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(key_store)
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                return  # closed
            with contextlib.suppress(OSError), context.wrap_socket(connection, server_side=True):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        server.close()
        thread.join(timeout=10)


@pytest.mark.timeout(120)
def test_an_expired_broker_certificate_is_named(tmp_path: Path) -> None:
    ca, key_store = mint_kafka(tmp_path / "expired", validity=datetime.timedelta(minutes=-30))
    config = tmp_path / "client.properties"
    KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "consumer", "any-password", ca).write_client_file(config)
    with _tls_listener(key_store) as address:
        flags = ["--bootstrap-servers", address, "--kafka-client-config", str(config)]
        for argv in (
            [str(VENV_BIN / "greeter-generator"), *flags, "--count", "1", "--no-progress"],
            [str(VENV_BIN / "greeter-consumer"), "tail", *flags, "--timeout", "5"],
        ):
            line = _refusal(argv, dict(os.environ))
            assert f"the certificate of {address} fails verification against {ca}: certificate has expired" in line


def _topic_error(settings: dict[str, object], topic: str) -> KafkaError | None:
    consumer = Consumer({"group.id": "greeter-consumer-acl-probe", **settings})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        return metadata.error  # type: ignore[no-any-return]
    finally:
        consumer.close()


def _write_error(settings: dict[str, object], topic: str) -> str:
    """The delivery error of one record written to `topic` (non-idempotent: only the topic's ACL decides)."""
    errors: list[KafkaError | None] = []
    producer = Producer({**settings, "enable.idempotence": False, "message.timeout.ms": 10000})
    producer.produce(topic, key=b"k", value=b"v", on_delivery=lambda error, _m: errors.append(error))
    producer.flush(20)
    assert errors and errors[0] is not None, f"a record was written to {topic}"
    return str(errors[0].name())


@pytest.mark.timeout(300)
def test_each_principal_can_do_its_own_job_and_nothing_else(secured: tuple[LocalStack, dict[str, str], str]) -> None:
    stack, _, _ = secured
    denied = "TOPIC_AUTHORIZATION_FAILED"
    # The generator writes `names` and cannot read greetings.
    generator = _settings(stack, GENERATOR)
    error = _topic_error(generator, "greetings")
    assert error is not None and error.name() == denied, error
    # The consumer reads and cannot write `names`.
    consumer = _settings(stack, CONSUMER)
    assert _topic_error(consumer, "names") is None
    assert _write_error(consumer, "names") == denied
    # The monitor sees the lag and reads nothing.
    monitor = _settings(stack, MONITOR)
    assert _write_error(monitor, "names") == denied
    # The runtime cannot create or delete topics.
    runtime = AdminClient(_settings(stack, RUNTIME))
    for what, futures in (
        ("create", runtime.create_topics([NewTopic("greeter-acl-probe", 1, 1)], request_timeout=15)),
        ("delete", runtime.delete_topics(["greetings"], request_timeout=15)),
    ):
        for future in futures.values():
            with pytest.raises(KafkaException) as refused:
                future.result()
            assert "AUTHORIZATION_FAILED" in refused.value.args[0].name(), f"{what}: {refused.value}"
    # A stranger with a valid login and the right CA, but no ACL, can do nothing.
    admin = AdminClient(_settings(stack, ADMIN))
    password = "stranger-password-0123456789"
    upsert = UserScramCredentialUpsertion(
        "stranger", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode()
    )
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result()
    stranger = {**consumer, "sasl.username": "stranger", "sasl.password": password, "group.id": "stranger"}
    for topic in ("names", "greetings", "names-dlq"):
        error = _topic_error(stranger, topic)
        assert error is not None and error.name() == denied, f"{topic}: {error}"
        assert _write_error(stranger, topic) == denied
    assert stack.failure_count() == 0


@pytest.mark.timeout(600)
def test_rotated_logins_lock_out_the_old_passwords_and_lose_no_greeting(
    secured: tuple[LocalStack, dict[str, str], str], tmp_path: Path
) -> None:
    """SECURITY.md's rotation: `rotate-kafka-credentials`, then the runtime restarted by `down` and `up`."""
    stack, env, _ = secured
    files = KafkaAuthFiles(stack.config.run_dir)
    old_consumer = tmp_path / "old-consumer.properties"
    old_consumer.write_text(files.client_file(CONSUMER).read_text())
    old_runtime_jaas = files.runtime_jaas.read_text()
    stack_cli = str(VENV_BIN / "greeter-stack")

    rotate = _run([stack_cli, "rotate-kafka-credentials"], env)
    assert rotate.returncode == 0, rotate.stderr
    assert "new Kafka passwords for runtime, generator, consumer, monitor" in rotate.stderr
    assert files.runtime_jaas.read_text() != old_runtime_jaas
    old = ["--bootstrap-servers", stack.config.bootstrap_servers, "--kafka-client-config", str(old_consumer)]
    line = _refusal([str(VENV_BIN / "greeter-consumer"), "tail", *old, "--timeout", "5"], env)
    assert "authentication failed" in line

    # Requests before the runtime restart (it still holds its open connections) and after it.
    generate = [str(VENV_BIN / "greeter-generator"), *client_flags(stack.config, GENERATOR), "--names", "20"]
    generate += ["--seed", "31", "--count", "100", "--no-progress"]
    assert _run(generate, env).returncode == 0
    down = _run([stack_cli, "down"], env)
    assert down.returncode == 0, down.stderr
    # Without the flag the secured storage is refused, never served in the clear.
    plain = _run([stack_cli, "up"], env)
    assert plain.returncode == 1 and "was made with --kafka-security sasl-ssl" in plain.stderr, plain.stderr
    up = _run([stack_cli, "up", "--kafka-security", "sasl-ssl"], env)
    assert up.returncode == 0, up.stderr[-3000:]
    assert _run(generate, env).returncode == 0
    verify = [str(VENV_BIN / "greeter-consumer"), "verify", *client_flags(stack.config, CONSUMER), "--from-names"]
    result = _run([*verify, "--timeout", "120"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify: OK" in result.stdout + result.stderr


def _secrets(run_dir: Path) -> dict[str, str]:
    """Every password the stack made, by the file that holds it."""
    files = KafkaAuthFiles(run_dir)
    found = {p: str(files.security(p).password) for p in CLIENTS}
    found["controller"] = files.controller_password.read_text().strip()
    assert all(len(secret) >= 24 for secret in found.values()), "a password too short to search for"
    return found


# The files that hold secrets on purpose, each its owner's only: searched for everything else.
_SECRET_FILES = ("kafka-clients", "conf/server.properties")


@pytest.mark.timeout(300)
def test_no_secret_in_a_log_a_command_line_or_status(secured: tuple[LocalStack, dict[str, str], str]) -> None:
    recorded, env, up_output = secured
    run_dir = recorded.config.run_dir
    stack = LocalStack.attach(run_dir)  # the processes now, after any restart above
    assert len(stack.running()) >= 3, "the stack is up: its command lines are searched"
    secrets = _secrets(run_dir)
    # The search looks for what is really in use: the broker's own login is the admin's password.
    assert secrets[ADMIN] in (run_dir / "conf/server.properties").read_text()
    for holder in (
        run_dir / "kafka-clients",
        *(run_dir / "kafka-clients").iterdir(),
        run_dir / "conf/server.properties",
    ):
        mode = holder.stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{holder} is {oct(mode)}: others can read it"

    searched: dict[str, str] = {"greeter-stack up": up_output}
    status = _run([str(VENV_BIN / "greeter-stack"), "status"], env)
    searched["greeter-stack status"] = status.stdout + status.stderr
    logs = _run([str(VENV_BIN / "greeter-stack"), "logs", "-n", "100000"], env)
    searched["greeter-stack logs"] = logs.stdout + logs.stderr
    for path in run_dir.rglob("*"):
        relative = path.relative_to(run_dir).as_posix()
        if path.is_file() and not relative.startswith(_SECRET_FILES) and path.suffix in (".log", ".yaml", ".json", ""):
            searched[relative] = path.read_text(encoding="utf-8", errors="replace")
    for proc in stack.running():  # every process's command line, as `ps` shows it to any user
        searched[f"argv of {proc.name}"] = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
        for child in Path("/proc").glob("[0-9]*"):
            try:
                if f"{proc.pid}" == (child / "stat").read_text().split()[3]:
                    searched[f"argv of {proc.name}'s child {child.name}"] = (child / "cmdline").read_bytes().decode()
            except OSError:
                continue
    for key in ("/jobmanager/config",):
        searched[f"Flink REST {key}"] = str(stack.rest.get(key))
    assert any(name.endswith(".log") for name in searched), sorted(searched)
    assert "runtime.log" in searched and "kafka.log" in searched
    for name, text in searched.items():
        for holder, secret in secrets.items():
            assert secret not in text, f"{holder}'s password is in {name}"
        for jaas in ("LoginModule required", 'password="'):
            assert jaas not in text, f"a JAAS line ({jaas!r}) is in {name}"
