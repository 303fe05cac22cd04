"""Kafka security as every client takes it: the settings, the credential files, the CLI flags, the refusal
messages, and what the local stack renders from them (module.yaml, server.properties, flink-conf)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from clitools.kafka_args import add_kafka_arguments, kafka_config, stack_login
from clitools.kafka_security import KafkaSecurity, KafkaSecurityError, access_problem
from stack import kafka, kafka_auth
from stack.config import REPO_ROOT, Ports, StackConfig
from stack.flinkconf import render_flink_conf
from stack.readiness import StartError
from stack.render import RenderError, with_kafka_properties

PASSWORD = "s3cret-password-for-tests"


def test_sasl_needs_a_username_and_a_password_and_names_what_is_missing() -> None:
    with pytest.raises(KafkaSecurityError, match="needs a SASL username"):
        KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", None, PASSWORD)
    with pytest.raises(KafkaSecurityError, match="needs a SASL password"):
        KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "me", None)
    with pytest.raises(KafkaSecurityError, match="SASL mechanism 'GSSAPI'"):
        KafkaSecurity("SASL_SSL", "GSSAPI", "me", PASSWORD)
    with pytest.raises(KafkaSecurityError, match="use SASL_SSL"):
        KafkaSecurity("SSL", None, "me", PASSWORD)
    with pytest.raises(KafkaSecurityError, match="only SSL and SASL_SSL"):
        KafkaSecurity("SASL_PLAINTEXT", "PLAIN", "me", PASSWORD, Path(__file__))
    with pytest.raises(KafkaSecurityError, match="not found"):
        KafkaSecurity("SSL", ca_file=Path("/no/such/ca.pem"))


def test_the_password_is_in_the_librdkafka_settings_only(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    security = KafkaSecurity("SASL_SSL", "SCRAM-SHA-256", "runtime", PASSWORD, ca)
    assert PASSWORD not in repr(security)
    assert security.librdkafka()["sasl.password"] == PASSWORD
    java = security.java_properties()
    assert java == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca),
    }
    jaas = security.jaas_file_text()
    assert "ScramLoginModule required" in jaas and f'password="{PASSWORD}"' in jaas
    assert "PlainLoginModule" in KafkaSecurity("SASL_SSL", "PLAIN", "key", PASSWORD).jaas_file_text()
    with pytest.raises(KafkaSecurityError, match="quote"):
        KafkaSecurity("SASL_SSL", "PLAIN", "key", 'pa"ss').jaas_file_text()


def test_a_credentials_file_round_trips_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "clients" / "generator.properties"
    written = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "generator", PASSWORD)
    written.write_client_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert KafkaSecurity.from_client_file(path) == written
    path.write_text("security.protocol=SASL_SSL\nbootstrap.servers=elsewhere:9092\n")
    with pytest.raises(KafkaSecurityError, match="line 2: expected KEY=VALUE"):
        KafkaSecurity.from_client_file(path)
    with pytest.raises(KafkaSecurityError, match="No such file"):
        KafkaSecurity.from_client_file(tmp_path / "missing.properties")


def _args(argv: list[str], env: dict[str, str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_kafka_arguments(parser, env=env or {})
    return parser.parse_args(argv)


def test_plaintext_adds_no_security_setting() -> None:
    assert kafka_config(_args([]), {}) == {"bootstrap.servers": "127.0.0.1:9092"}
    # The last release's way still works: -X for the protocol.
    assert kafka_config(_args(["-X", "security.protocol=SSL"]), {})["security.protocol"] == "SSL"


def test_no_secret_is_taken_from_the_command_line() -> None:
    for key in ("sasl.password", "sasl.jaas.config"):
        with pytest.raises(argparse.ArgumentError, match="shows in `ps`"):
            _args(["-X", f"{key}=x"])
    # Refused by name, not taken for an abbreviated --sasl-password-file.
    with pytest.raises(argparse.ArgumentError, match="shows in `ps`: use --sasl-password-file"):
        _args(["--sasl-password", "x"])


def test_the_password_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    base = ["--security-protocol", "sasl_ssl", "--sasl-username", "me"]
    from_env = kafka_config(_args(base, {"GREETER_KAFKA_SASL_PASSWORD": PASSWORD}), {})
    assert from_env["sasl.password"] == PASSWORD and from_env["sasl.mechanism"] == "SCRAM-SHA-512"
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    from_file = kafka_config(_args([*base, "--sasl-password-file", str(secret)]), {})
    assert from_file["sasl.password"] == PASSWORD
    with pytest.raises(KafkaSecurityError, match="needs a SASL password"):
        kafka_config(_args(base), {})


def test_flags_override_the_credentials_file_and_contradictions_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "consumer.properties"
    KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "consumer", PASSWORD).write_client_file(path)
    config = kafka_config(_args(["--kafka-client-config", str(path), "--sasl-username", "other"]), {})
    assert config["sasl.username"] == "other" and config["sasl.password"] == PASSWORD
    env = {"GREETER_KAFKA_CLIENT_CONFIG": str(path)}
    assert kafka_config(_args([], env), {})["sasl.username"] == "consumer"
    with pytest.raises(KafkaSecurityError, match="conflicts"):
        kafka_config(_args(["--security-protocol", "SSL", "-X", "security.protocol=SASL_SSL"]), {})


class _Error:
    def __init__(self, name: str, text: str) -> None:
        self._name, self._text = name, text

    def name(self) -> str:
        return self._name

    def str(self) -> str:
        return self._text


def test_only_a_refusal_stops_a_client() -> None:
    assert access_problem(_Error("_AUTHENTICATION", "SASL authentication error")) is not None
    assert "TLS handshake failed" in str(access_problem(_Error("_SSL", "certificate verify failed")))
    for transient in ("_TRANSPORT", "_ALL_BROKERS_DOWN", "_MSG_TIMED_OUT"):
        assert access_problem(_Error(transient, "Connection refused")) is None


@pytest.fixture
def secured_config(tmp_path: Path) -> StackConfig:
    config = StackConfig(run_dir=tmp_path / "run", ports=Ports(kafka=19092), kafka_security="sasl-ssl")
    assert kafka_auth.prepare(config, storage_formatted=False)
    return config


def test_the_runtime_gets_its_settings_in_module_yaml_and_its_login_in_a_jaas_file(
    secured_config: StackConfig,
) -> None:
    source = (REPO_ROOT / "module.yaml").read_text()
    security = kafka_auth.client_security(secured_config, kafka_auth.RUNTIME)
    assert security is not None
    rendered = with_kafka_properties(source, security.java_properties())
    assert rendered.count("- security.protocol: SASL_SSL") == 2  # the ingress and the egress
    assert rendered.count("- sasl.mechanism: SCRAM-SHA-512") == 2
    assert "- linger.ms: 20" in rendered  # the egress's own properties are kept
    assert str(security.password) not in rendered and "jaas" not in rendered
    with pytest.raises(RenderError, match=r"already sets the Kafka property security\.protocol"):
        with_kafka_properties(rendered, security.java_properties())
    conf = render_flink_conf(secured_config, "file:///module.yaml")
    jaas = kafka_auth.KafkaAuthFiles(secured_config.run_dir).runtime_jaas
    assert f"env.java.opts.taskmanager: -Djava.security.auth.login.config={jaas}" in conf
    assert f"env.java.opts.client: -Djava.security.auth.login.config={jaas}" in conf
    assert "env.java.opts.jobmanager" not in conf  # the JobManager runs no Kafka client
    assert str(security.password) in jaas.read_text()


def test_the_secured_broker_speaks_only_sasl_ssl_and_refuses_what_no_acl_allows(secured_config: StackConfig) -> None:
    properties = kafka.server_properties(secured_config)
    assert "\nlisteners=SASL_SSL://127.0.0.1:19092,CONTROLLER://" in properties
    assert "PLAINTEXT://" not in properties.replace("SASL_PLAINTEXT", "")
    assert "\nallow.everyone.if.no.acl.found=false\n" in properties
    assert "\nsuper.users=User:admin;User:controller\n" in properties
    assert "\nauthorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n" in properties
    granted = {(g.principal, g.operation, g.resource, g.name) for g in kafka_auth.ACLS}
    assert ("generator", "WRITE", "TOPIC", "names") in granted
    assert not any(p == "admin" for p, *_ in granted), "the super user needs no grant"
    assert all(op in ("READ", "WRITE", "DESCRIBE") for _, op, *_ in granted), "no one may create or alter"


def test_a_storage_formatted_without_security_is_refused_with_what_to_do(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path / "run", kafka_security="sasl-ssl")
    with pytest.raises(StartError, match=r"formatted without --kafka-security sasl-ssl.*--fresh"):
        kafka_auth.prepare(config, storage_formatted=True)


def test_the_clis_find_the_local_stacks_login_only_for_its_broker_and_only_when_nothing_else_is_said(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "kafka-clients").mkdir(parents=True)
    login = run_dir / "kafka-clients" / "generator.properties"
    KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "generator", PASSWORD).write_client_file(login)
    (run_dir / "stack.json").write_text('{"config": {"ports": {"kafka": 19092}}}')
    env = {"GREETER_STACK_RUN_DIR": str(run_dir)}
    assert stack_login(_args(["--bootstrap-servers", "127.0.0.1:19092"], env), "generator") == login
    assert stack_login(_args(["--bootstrap-servers", "127.0.0.1:19093"], env), "generator") is None  # another broker
    assert stack_login(_args(["--bootstrap-servers", "127.0.0.1:19092"], env), "consumer") is None  # no such login
    said = ["--bootstrap-servers", "127.0.0.1:19092", "--security-protocol", "SSL"]
    assert stack_login(_args(said, env), "generator") is None  # the user's settings win
    assert stack_login(_args(["--bootstrap-servers", "127.0.0.1:19092"], {}), "generator") is None  # run/ of the repo


def test_the_properties_join_a_list_as_its_source_indents_it() -> None:
    """module.yaml as written (items indented) and as yaml.dump writes it (not: bench-tuning's variants)."""
    source = (REPO_ROOT / "module.yaml").read_text()
    dumped = "---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in yaml.safe_load_all(source))
    added = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}
    for text in (source, dumped):
        documents = {doc["kind"]: doc["spec"] for doc in yaml.safe_load_all(with_kafka_properties(text, added))}
        assert documents["io.statefun.kafka.v1/ingress"]["properties"] == [{k: v} for k, v in added.items()]
        egress = documents["io.statefun.kafka.v1/egress"]["properties"]
        assert egress == [*({k: v} for k, v in added.items()), {"linger.ms": 20}, {"batch.size": 262144}]
