"""The local stack's --tls option: the rendered module.yaml, the greeter's environment, the flag and variable."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from certs.tls import CertFiles
from stack.cli import _config, _parser
from stack.config import REPO_ROOT, ConfigError, StackConfig, from_env
from stack.daemons import env
from stack.render import RenderError, render_module_yaml, write_module_yaml

SOURCE = (REPO_ROOT / "module.yaml").read_text(encoding="utf-8")
TLS_KEYS = ("trust_cacerts", "client_cert", "client_key", "client_key_password")
CERTS = CertFiles(Path("/run dir/tls"))  # a space: the files are named by URL, percent-encoded
ENDPOINT = "io.statefun.endpoints.v2/http"


def documents(text: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(text))


def endpoint(text: str) -> dict[str, Any]:
    [spec] = [d["spec"] for d in documents(text) if d["kind"] == ENDPOINT]
    return dict(spec)


def test_tls_makes_the_endpoint_https_with_the_async_transport_and_our_files() -> None:
    spec = endpoint(render_module_yaml(SOURCE, 18000, "127.0.0.1:19092", CERTS))
    assert spec["urlPathTemplate"] == "https://127.0.0.1:18000/statefun"
    assert spec["transport"] == {
        **endpoint(SOURCE)["transport"],  # the repository's transport settings are kept
        "type": "io.statefun.transports.v1/async",
        "trust_cacerts": "file:///run%20dir/tls/ca.pem",
        "client_cert": "file:///run%20dir/tls/runtime.pem",
        "client_key": "file:///run%20dir/tls/runtime-key.pem",
    }
    assert "client_key_password" not in spec["transport"]  # the key is unencrypted PKCS#8


def test_tls_changes_nothing_else() -> None:
    plain = documents(render_module_yaml(SOURCE, 18000, "127.0.0.1:19092"))
    tls = documents(render_module_yaml(SOURCE, 18000, "127.0.0.1:19092", CERTS))
    for document in tls:
        if document["kind"] == ENDPOINT:
            for key in TLS_KEYS:
                document["spec"]["transport"].pop(key, None)
            document["spec"]["urlPathTemplate"] = document["spec"]["urlPathTemplate"].replace("https:", "http:")
    assert tls == plain
    assert not any(key in SOURCE for key in TLS_KEYS), "the repository's module.yaml stays free of TLS files"


def test_without_tls_the_rendering_is_as_before() -> None:
    rendered = render_module_yaml(SOURCE, 18000, "127.0.0.1:19092")
    assert not any(key in rendered for key in TLS_KEYS)
    assert "https" not in rendered


# The repository's module.yaml without its transport block, to try other transport blocks on.
WITHOUT_TRANSPORT = re.sub(r"  # StateFun 3.3's default transport.*?    call: 1min\n", "", SOURCE, flags=re.S)


def with_transport(lines: str) -> str:
    assert "transport:" not in WITHOUT_TRANSPORT
    return WITHOUT_TRANSPORT.replace(
        "  maxNumBatchRequests: 10000\n", f"  maxNumBatchRequests: 10000\n  transport:\n{lines}"
    )


def test_an_async_transport_in_the_source_keeps_its_settings_and_gains_the_files() -> None:
    source = with_transport("    type: io.statefun.transports.v1/async\n    # why\n    call: 1min\n")
    transport = endpoint(render_module_yaml(source, 1, "127.0.0.1:2", CERTS))["transport"]
    assert transport["call"] == "1min" and transport["type"] == "io.statefun.transports.v1/async"
    assert transport["client_cert"] == "file:///run%20dir/tls/runtime.pem"


def test_a_transport_without_type_is_the_async_one_and_gains_the_files() -> None:
    transport = endpoint(render_module_yaml(with_transport("    pool_ttl: 15s\n"), 1, "127.0.0.1:2", CERTS))[
        "transport"
    ]
    assert transport["pool_ttl"] == "15s" and transport["trust_cacerts"].endswith("/ca.pem")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("    type: io.statefun.transports.v1/okhttp\n", "transport is io.statefun.transports.v1/okhttp"),
        ("    client_cert: /etc/x.pem\n", "already names TLS files"),
    ],
)
def test_a_transport_the_stack_cannot_complete_fails(lines: str, message: str) -> None:
    with pytest.raises(RenderError, match=re.escape(message)):
        render_module_yaml(with_transport(lines), 1, "127.0.0.1:2", CERTS)


def test_the_written_module_yaml_points_at_the_run_folders_files(tmp_path: Path) -> None:
    write_module_yaml(StackConfig(run_dir=tmp_path, tls=True))
    transport = endpoint((tmp_path / "conf" / "module.yaml").read_text())["transport"]
    assert transport["client_key"] == (tmp_path / "tls" / "runtime-key.pem").as_uri()


def test_the_greeter_gets_the_server_files_only_with_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREETER_TLS_CERT", "/from/the/shell.pem")  # not ours: would make module.yaml wrong
    assert not {k for k in env(StackConfig(run_dir=tmp_path), "greeter") if k.startswith("GREETER_TLS_")}
    values = env(StackConfig(run_dir=tmp_path, tls=True), "greeter")
    assert values["GREETER_TLS_CERT"] == str(tmp_path / "tls" / "greeter.pem")
    assert values["GREETER_TLS_KEY"] == str(tmp_path / "tls" / "greeter-key.pem")
    assert values["GREETER_TLS_CA"] == str(tmp_path / "tls" / "ca.pem")


def test_the_greeter_url_is_https_with_tls(tmp_path: Path) -> None:
    assert StackConfig(run_dir=tmp_path, tls=True).greeter_url.startswith("https://127.0.0.1:")
    assert StackConfig(run_dir=tmp_path).greeter_url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("true", True), ("ON", True), ("0", False), ("no", False)]
)
def test_the_environment_variable(value: str, expected: bool) -> None:
    assert from_env({"GREETER_STACK_TLS": value}).tls is expected


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="GREETER_STACK_TLS='maybe'"):
        from_env({"GREETER_STACK_TLS": "maybe"})


@pytest.mark.parametrize(
    ("environ", "argv", "expected"),
    [
        ({}, [], False),
        ({}, ["--tls"], True),
        ({"GREETER_STACK_TLS": "1"}, [], True),
        ({"GREETER_STACK_TLS": "1"}, ["--no-tls"], False),
    ],
)
def test_the_flag_overrides_the_environment(environ: dict[str, str], argv: list[str], expected: bool) -> None:
    defaults = from_env(environ)
    args = _parser(defaults).parse_args(["up", *argv])
    assert _config(args, defaults).tls is expected


def test_help_names_the_flag_and_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser(StackConfig()).parse_args(["up", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--tls, --no-tls" in out and "GREETER_STACK_TLS" in out


def test_the_config_round_trips_through_the_state_file(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path, tls=True)
    assert StackConfig.from_json(config.to_json()) == config
