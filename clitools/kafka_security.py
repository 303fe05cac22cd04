"""How a client proves who it is to Kafka: the one description of Kafka security in the project.

Every client takes it from here: the generator and the consumer (librdkafka, through their flags), the local
stack's admin, readiness and `status` (from the credential files it writes into its run folder), the benchmarks'
readers, and the runtime's Kafka ingress and egress (Java, through module.yaml `properties` and a JAAS file).

The password never travels on a command line (argv shows in `ps`): it comes from a file or an environment
variable, and it is never part of a `repr`, a log line or a rendered module.yaml.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Final

from confluent_kafka import KafkaException

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT")
MECHANISMS: Final = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
DEFAULT_MECHANISM: Final = "SCRAM-SHA-512"

# The Java login module of each mechanism, for the runtime's JAAS file.
_LOGIN_MODULES: Final = {
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
}
# Keys that hold a secret: refused on a command line (-X), never rendered into a file that is not a secret.
SECRET_KEYS: Final = frozenset({"sasl.password", "sasl.jaas.config", "ssl.key.password", "ssl.keystore.password"})
# The keys of a client credentials file (`--kafka-client-config`), as librdkafka names them.
FILE_KEYS: Final = ("security.protocol", "sasl.mechanism", "sasl.username", "sasl.password", "ssl.ca.location")


class KafkaSecurityError(ValueError):
    """A security setting that cannot work; the message names the setting."""


@dataclass(frozen=True)
class KafkaSecurity:
    """A client's security protocol, SASL mechanism and credentials, and the CA it trusts (None: the system's)."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityError(f"security protocol {self.protocol!r}: expected one of {', '.join(PROTOCOLS)}")
        if self.sasl:
            if self.mechanism not in MECHANISMS:
                raise KafkaSecurityError(f"SASL mechanism {self.mechanism!r}: expected one of {', '.join(MECHANISMS)}")
            if not self.username:
                raise KafkaSecurityError(f"{self.protocol} needs a SASL username")
            if not self.password:
                raise KafkaSecurityError(f"{self.protocol} needs a SASL password (from a file or the environment)")
        elif self.username or self.password:
            raise KafkaSecurityError(f"a SASL username or password with {self.protocol}: use SASL_SSL")
        if self.ca_file is not None and not self.tls:
            raise KafkaSecurityError(f"a CA file with {self.protocol}: only SSL and SASL_SSL use one")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise KafkaSecurityError(f"CA file {self.ca_file}: not found")

    @property
    def sasl(self) -> bool:
        """The client authenticates with SASL."""
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        """The connection is encrypted."""
        return self.protocol in ("SSL", "SASL_SSL")

    def librdkafka(self) -> dict[str, str]:
        """The settings of a librdkafka client (confluent-kafka), password included."""
        config = {"security.protocol": self.protocol}
        if self.sasl:
            config |= {"sasl.mechanism": str(self.mechanism), "sasl.username": str(self.username)}
            config["sasl.password"] = str(self.password)
        if self.ca_file is not None:
            config["ssl.ca.location"] = str(self.ca_file)
        return config

    def java_properties(self) -> dict[str, str]:
        """The settings of a Java client without its secret (that is in `jaas_file_text`): module.yaml's."""
        return java_client_properties(self.protocol, self.mechanism if self.sasl else None, self.ca_file)

    def jaas_file_text(self) -> str:
        """A JAAS file with the `KafkaClient` login of a Java client (named by -Djava.security.auth.login.config):
        Kafka's clients read it when `sasl.jaas.config` is unset.
        """
        if not self.sasl:
            raise KafkaSecurityError(f"{self.protocol} has no SASL login")
        return (
            "KafkaClient {\n"
            f"  {_LOGIN_MODULES[str(self.mechanism)]} required\n"
            f'  username="{_jaas_quoted(str(self.username))}"\n'
            f'  password="{_jaas_quoted(str(self.password))}";\n'
            "};\n"
        )

    def write_client_file(self, path: Path) -> None:
        """Write this as a client credentials file (owner only): what `--kafka-client-config` reads."""
        lines = [f"{key}={value}" for key, value in self.librdkafka().items()]
        write_secret(path, "\n".join(lines) + "\n")

    @classmethod
    def from_client_file(cls, path: Path) -> KafkaSecurity:
        """The security a credentials file names (KEY=VALUE lines of FILE_KEYS; # comments)."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise KafkaSecurityError(f"Kafka client config {path}: {error.strerror}") from None
        values: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            key, sep, value = line.partition("=")
            key = key.strip()
            if not sep or key not in FILE_KEYS:
                raise KafkaSecurityError(
                    f"Kafka client config {path}, line {number}: expected KEY=VALUE, KEY one of {', '.join(FILE_KEYS)}"
                )
            values[key] = value.strip()
        return from_values(values, f"Kafka client config {path}")


def java_client_properties(protocol: str, mechanism: str | None, ca_file: PurePath | None) -> dict[str, str]:
    """A Java client's protocol, SASL mechanism (with a SASL protocol) and trusted CA (a PEM file), without its
    login. Separate from KafkaSecurity for files rendered ahead of time, whose CA path is a container's or a pod's
    and whose login comes later (deploy/compose, deploy/k8s); the CA None: the JVM's own CAs.
    """
    if protocol not in PROTOCOLS:
        raise KafkaSecurityError(f"security protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    config = {"security.protocol": protocol}
    if protocol.startswith("SASL_"):
        if mechanism not in MECHANISMS:
            raise KafkaSecurityError(f"SASL mechanism {mechanism!r}: expected one of {', '.join(MECHANISMS)}")
        config["sasl.mechanism"] = mechanism
    if ca_file is not None:
        config |= {"ssl.truststore.type": "PEM", "ssl.truststore.location": str(ca_file)}
    return config


def from_values(values: Mapping[str, str], source: str) -> KafkaSecurity:
    """A KafkaSecurity from librdkafka-named `values`; errors name `source`."""
    protocol = values.get("security.protocol", "PLAINTEXT").upper()
    sasl = protocol.startswith("SASL_")
    ca = values.get("ssl.ca.location")
    try:
        return KafkaSecurity(
            protocol=protocol,
            mechanism=(values.get("sasl.mechanism") or DEFAULT_MECHANISM).upper() if sasl else None,
            username=values.get("sasl.username") or None,
            password=values.get("sasl.password") or None,
            ca_file=Path(ca).expanduser() if ca else None,
        )
    except KafkaSecurityError as error:
        raise KafkaSecurityError(f"{source}: {error}") from None


def _jaas_quoted(text: str) -> str:
    if '"' in text or "\\" in text or "\n" in text:
        raise KafkaSecurityError("a SASL username or password with a quote, backslash or newline cannot go in JAAS")
    return text


def write_secret(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only from the moment the file exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)


# librdkafka names the broker it failed on at the start of its message: sasl_ssl://HOST:PORT/ID: ...
_BROKER = re.compile(r"^(?:\w+://)?(?P<host>\[[^\]]+\]|[^:/\s]+):(?P<port>\d+)/")


def tls_verdict(librdkafka_text: str, ca_file: str | None) -> str | None:
    """Why the broker named in `librdkafka_text` fails TLS verification against `ca_file`, as OpenSSL's verify
    result says it (e.g. "certificate has expired"), or None when that cannot be found out.
    """
    match = _BROKER.match(librdkafka_text)
    if match is None:
        return None
    host, port = match["host"].strip("[]"), int(match["port"])
    context = ssl.create_default_context(cafile=ca_file)
    try:
        with socket.create_connection((host, port), timeout=5) as raw, context.wrap_socket(raw, server_hostname=host):
            return None  # verifies here: the failure was something else
    except ssl.SSLCertVerificationError as failed:
        trusted = ca_file or "the system's CAs"
        return f"the certificate of {host}:{port} fails verification against {trusted}: {failed.verify_message}"
    except OSError:
        return None


# librdkafka's error codes for a client that cannot get in: it retries them forever on its own.
_ACCESS_CODES: Final = {"_AUTHENTICATION": "authentication failed", "_SSL": "TLS handshake failed"}


def access_problem(error: Any, ca_file: str | None = None) -> str | None:
    """One line saying why the client cannot get into Kafka, if librdkafka's `error` (a KafkaError) means
    that, else None (a transient error that librdkafka retries, rightly). A failed TLS handshake is checked
    again with Python's ssl and `ca_file` (None: the system's CAs), whose verdict names the cause (expired, signed
    by another CA, issued for another host) where librdkafka says only "certificate verify failed".
    """
    name = error.name()
    text = error.str()
    if name == "_SSL":
        cause = tls_verdict(text, ca_file)
        return f"{_ACCESS_CODES[name]}: {cause or text}"
    if name in _ACCESS_CODES:
        return f"{_ACCESS_CODES[name]}: {text}"
    if name == "_TRANSPORT" and "security.protocol" in text:
        # A plaintext client on a TLS port: the broker drops the connection at the first request.
        return f"the broker closed the connection at the first request: {text}"
    return None


class KafkaAccessRefused(KafkaException):
    """The broker will not let this client in (credentials, TLS, protocol): retrying cannot help."""


@dataclass
class AccessWatch:
    """librdkafka's `error_cb` for a CLI's client: remembers the first sign that the client cannot get in.

    librdkafka retries an authentication or TLS failure forever, and a consumer's poll() never returns it:
    without this a CLI with a wrong password would wait for good.
    """

    protocol: str = "PLAINTEXT"
    ca_file: str | None = None
    bootstrap: str = "Kafka"
    problem: str | None = None
    brokers_down: bool = False

    def on_error(self, error: Any) -> None:
        """The error_cb: keep the first access problem."""
        if error.name() == "_ALL_BROKERS_DOWN":
            self.brokers_down = True
        if self.problem is None:
            self.problem = access_problem(error, self.ca_file)

    def refuse(self, error: Any) -> None:
        """An error_cb that raises KafkaAccessRefused out of the client's poll or consume on an access problem
        (librdkafka logs the other errors itself and retries them).
        """
        self.on_error(error)
        self.raise_if_refused()

    def first_contact(
        self, client: Any, bootstrap: str, timeout: float = 10.0, stopped: Callable[[], bool] = lambda: False
    ) -> None:
        """Ask `client` (built with `on_error` as its error_cb) for the cluster's metadata until it answers or
        `timeout` passes: KafkaAccessRefused, in one line, if the broker refuses it. A broker that cannot be
        reached at all is not refused: librdkafka keeps trying it, and the caller decides how long to wait.
        """
        self.bootstrap = bootstrap
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stopped():
            try:
                client.list_topics(timeout=0.1)
                return
            except KafkaAccessRefused:
                raise
            except KafkaException:  # no metadata within the slice
                client.poll(0)  # serves error_cb
            self.raise_if_refused()
            if self.brokers_down and not self.tls_expected and _accepts_connections(bootstrap):
                raise KafkaAccessRefused(
                    f"Kafka {bootstrap} accepts connections but closes them at the first request: it expects TLS "
                    f"or SASL, and this client uses {self.protocol} (see --security-protocol)"
                )

    @property
    def tls_expected(self) -> bool:
        """The client speaks TLS or SASL itself (so a dropped connection is not a protocol mismatch)."""
        return self.protocol != "PLAINTEXT"

    def raise_if_refused(self) -> None:
        """KafkaAccessRefused if a refusal was seen."""
        if self.problem is not None:
            raise KafkaAccessRefused(f"Kafka {self.bootstrap} refused this client: {self.problem}")


def _accepts_connections(bootstrap: str) -> bool:
    """Whether the first bootstrap server accepts a TCP connection now."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False
