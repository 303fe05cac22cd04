"""python -m deploy_render.compose_kafka (the secured compose broker's files) and python -m
deploy_render.kafka_acls (its ACL job), without a broker: each login is its own principal's with one password
everywhere it appears, the modes are as asked, a folder of other files is refused, and the ACL job grants exactly
stack/kafka_auth.ACLS."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, ClassVar

import pytest

from clitools.kafka_security import KafkaSecurity
from deploy_render import kafka_acls
from deploy_render.compose_kafka import CLIENT_FILES, LOGINS, ComposeKafkaFiles, main, make
from stack.kafka_auth import ADMIN, CONTROLLER, MECHANISM, PROTOCOL, RUNTIME, bindings


@pytest.fixture
def files(tmp_path: Path) -> ComposeKafkaFiles:
    return make(tmp_path / "kafka-auth")


def passwords_of(text: str) -> dict[str, str]:
    """username -> password in JAAS logins and SCRAM arguments."""
    jaas = re.findall(r'username="(\w+)"\s+password="([\w-]+)"', text)
    scram = re.findall(r"name=(\w+),password=([\w-]+)\]", text)
    return dict(jaas + scram)


def test_each_client_file_is_its_principals_login_without_a_ca(files: ComposeKafkaFiles) -> None:
    for principal in CLIENT_FILES:
        security = KafkaSecurity.from_client_file(files.client_file(principal))
        assert (security.protocol, security.mechanism, security.username) == (PROTOCOL, MECHANISM, principal)
        assert security.ca_file is None  # each side gives its own path to the CA (--ssl-ca)


def test_every_login_has_one_password_wherever_it_appears(files: ComposeKafkaFiles) -> None:
    scram = passwords_of(files.scram_argfile.read_text())
    assert set(scram) == set(LOGINS)
    assert len(set(scram.values())) == len(LOGINS), "a password per login"
    for principal in CLIENT_FILES:
        assert KafkaSecurity.from_client_file(files.client_file(principal)).password == scram[principal]
    assert passwords_of(files.admin_jaas.read_text()) == {ADMIN: scram[ADMIN]}
    assert passwords_of(files.runtime_jaas.read_text()) == {RUNTIME: scram[RUNTIME]}
    broker = files.broker_jaas.read_text()
    assert passwords_of(broker)[ADMIN] == scram[ADMIN]
    controller = re.findall(rf'user_{CONTROLLER}="([\w-]+)"', broker)
    assert controller and controller[0] not in scram.values(), "the controller's login is not a SCRAM user's"
    assert [line for line in broker.splitlines() if line.endswith("{")] == [
        "KafkaServer {",
        "controller.KafkaServer {",
        "KafkaClient {",
    ]


def test_the_scram_argument_file_runs_the_storage_tools_format(files: ComposeKafkaFiles) -> None:
    arguments = [line.strip('"') for line in files.scram_argfile.read_text().splitlines()]
    assert arguments[:2] == ["kafka.tools.StorageTool", "format"]
    assert arguments[2::2] == ["--add-scram"] * len(LOGINS)


def test_the_files_are_their_owners_only_unless_asked(tmp_path: Path) -> None:
    private = make(tmp_path / "private")
    shared = make(tmp_path / "shared", world_readable=True)
    for made in (private, shared):
        assert stat.S_IMODE(made.directory.stat().st_mode) == 0o700
        assert stat.S_IMODE(made.ca.stat().st_mode) == 0o644
    assert {stat.S_IMODE(path.stat().st_mode) for path in private.all if path != private.ca} == {0o600}
    assert {stat.S_IMODE(path.stat().st_mode) for path in shared.all} == {0o644}


def test_the_cli_refuses_a_folder_of_other_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exited:
        main([str(tmp_path)])
    assert exited.value.code == 2
    assert "notes.txt" in capsys.readouterr().err
    assert main([str(tmp_path / "new")]) == 0
    assert main([str(tmp_path / "new")]) == 0, "its own files are replaced"


class FakeAdmin:
    """The AdminClient calls kafka_acls makes: metadata answers, every ACL creation succeeds."""

    created: ClassVar[list[Any]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def list_topics(self, timeout: float) -> object:
        return object()

    def poll(self, timeout: float) -> int:
        return 0

    def create_acls(self, acls: list[Any], request_timeout: float) -> dict[Any, Future[None]]:
        FakeAdmin.created.extend(acls)
        results: dict[Any, Future[None]] = {}
        for acl in acls:
            results[acl] = Future()
            results[acl].set_result(None)
        return results


@pytest.fixture
def fake_admin(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeAdmin]]:
    FakeAdmin.created = []
    monkeypatch.setattr(kafka_acls, "AdminClient", FakeAdmin)
    yield FakeAdmin


def test_the_acl_job_grants_the_local_stacks_list(
    fake_admin: type[FakeAdmin], files: ComposeKafkaFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--bootstrap-servers=kafka:9092", "--kafka-client-config", str(files.client_file(ADMIN))]
    assert kafka_acls.main([*argv, "--ssl-ca", str(files.ca)]) == 0
    assert sorted(map(str, fake_admin.created)) == sorted(map(str, bindings()))
    assert "12 ACLs in place" in capsys.readouterr().out


def test_the_acl_job_says_why_in_one_line_when_the_settings_cannot_work(
    fake_admin: type[FakeAdmin], capsys: pytest.CaptureFixture[str]
) -> None:
    assert kafka_acls.main(["--security-protocol", "SASL_SSL"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SASL username" in err[0], err
    assert fake_admin.created == []
