"""docker-compose.mtls.yml, checked without a Docker engine: merged onto docker-compose.yml by the Compose
specification's merge rules, it validates against the vendored schema, mounts exactly the files that the rendered
deploy/compose/module.mtls.yaml and GREETER_TLS_* name, and probes the greeter the way the Kubernetes mtls overlay
does. That the greeter serves the runtime's certificate and the health check: tests/http/test_tls.py."""

import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from certs.tls import CertFiles, main
from deploy_render.manifests import COMPOSE_MODULE_MTLS, COMPOSE_TLS_DIR, RUNTIME_TLS_DIR, render_compose_module_mtls
from greeter.config.settings import Settings
from greeter.web.app import create_app

from .compose_files import ROOT, SCHEMA, assert_read_only_bind_of, merge, mounts, volume_target

OVERRIDE = ROOT / "docker-compose.mtls.yml"
K8S_GREETER_TLS = ROOT / "deploy" / "k8s" / "overlays" / "mtls" / "greeter-tls.yaml"
IMAGE_MODULE_YAML = "/opt/statefun/modules/greeter/module.yaml"  # where the StateFun image reads the module
ENDPOINT = "io.statefun.endpoints.v2/http"
TRANSPORT_FILES = {"trust_cacerts": "ca", "client_cert": "client_cert", "client_key": "client_key"}
GREETER_FILES = {"GREETER_TLS_CERT": "server_cert", "GREETER_TLS_KEY": "server_key", "GREETER_TLS_CA": "ca"}
RUNTIMES = ("statefun-master", "statefun-worker")
UP = "docker compose -f docker-compose.yml -f docker-compose.mtls.yml up --build"


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


@pytest.fixture(scope="module")
def override() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(OVERRIDE.read_text())
    return document


@pytest.fixture(scope="module")
def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = merge(base, override)
    return result


def k8s_greeter() -> dict[str, Any]:
    """The greeter container of the Kubernetes mtls overlay's patch (its probe, its TLS variables)."""
    patch = yaml.safe_load(K8S_GREETER_TLS.read_text())
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    return dict(container)


def rendered_module() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc["spec"] for doc in yaml.safe_load_all(COMPOSE_MODULE_MTLS.read_text())}


def tls_source(name: str) -> str:
    """How the override names a file of deploy/compose/tls/: relative to the base file, as Compose wants."""
    return f"./{(COMPOSE_TLS_DIR / name).relative_to(ROOT)}"


def test_the_merged_stack_and_the_override_validate_against_the_compose_specification(
    merged: dict[str, Any], override: dict[str, Any]
) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(override, schema, cls=jsonschema.Draft7Validator)
    jsonschema.validate(merged, schema, cls=jsonschema.Draft7Validator)


def test_the_override_changes_only_the_greeter_and_the_runtime(
    base: dict[str, Any], override: dict[str, Any], merged: dict[str, Any]
) -> None:
    assert set(override) == {"services"}
    assert set(override["services"]) == {"greeter", *RUNTIMES}
    assert set(merged["services"]) == set(base["services"])
    for name, service in base["services"].items():
        if name not in override["services"]:
            assert merged["services"][name] == service, name
    for name in RUNTIMES:  # the rest of what they mount stays
        kept = {volume_target(v) for v in base["services"][name]["volumes"]} - {IMAGE_MODULE_YAML}
        assert kept and kept <= set(mounts(merged["services"][name])), name


def test_the_runtime_mounts_the_rendered_module_in_place_of_the_plain_one(merged: dict[str, Any]) -> None:
    for name in RUNTIMES:
        module = mounts(merged["services"][name])[IMAGE_MODULE_YAML]
        assert_read_only_bind_of(module, f"./{COMPOSE_MODULE_MTLS.relative_to(ROOT)}")


def test_the_files_are_where_the_kubernetes_overlay_has_them(merged: dict[str, Any]) -> None:
    k8s_env = {item["name"]: item["value"] for item in k8s_greeter()["env"]}
    compose_env = merged["services"]["greeter"]["environment"]
    assert {name: compose_env[name] for name in GREETER_FILES} == {name: k8s_env[name] for name in GREETER_FILES}


def test_the_runtime_mounts_every_file_the_rendered_transport_names(merged: dict[str, Any]) -> None:
    transport = rendered_module()[ENDPOINT]["transport"]
    names = CertFiles(Path("/"))
    for name in RUNTIMES:
        found = mounts(merged["services"][name])
        for key, attribute in TRANSPORT_FILES.items():
            url = urlsplit(transport[key])
            assert url.scheme == "file" and Path(url.path).parent == RUNTIME_TLS_DIR, (name, key, transport[key])
            assert_read_only_bind_of(found[url.path], tls_source(getattr(names, attribute).name))
        tls_mounts = {target for target in found if target.startswith(f"{RUNTIME_TLS_DIR}/")}
        assert tls_mounts == {urlsplit(transport[key]).path for key in TRANSPORT_FILES}, "the runtime's files only"


def test_the_greeter_tls_variables_name_its_mounted_files(merged: dict[str, Any]) -> None:
    greeter = merged["services"]["greeter"]
    names = CertFiles(Path("/"))
    found = mounts(greeter)
    for variable, attribute in GREETER_FILES.items():
        target = greeter["environment"][variable]
        assert_read_only_bind_of(found[target], tls_source(getattr(names, attribute).name))
    sources = {v["source"] for v in found.values() if isinstance(v, dict)}
    assert tls_source(names.client_key.name) not in sources, "the greeter gets no runtime key"


def test_only_the_minted_certificates_are_missing_from_the_repository(override: dict[str, Any]) -> None:
    names = {path.name for path in CertFiles(COMPOSE_TLS_DIR).all}
    for service in override["services"].values():
        for volume in service.get("volumes", []):
            source = ROOT / volume["source"]
            if source.parent == COMPOSE_TLS_DIR:
                assert source.name in names, source
            else:
                assert source.is_file(), source


def test_the_certificates_stay_out_of_git_and_the_image_build() -> None:
    folder = COMPOSE_TLS_DIR.relative_to(ROOT)
    assert f"/{folder}/" in (ROOT / ".gitignore").read_text().splitlines()
    assert f"{folder}/" in (ROOT / ".dockerignore").read_text().splitlines()


def test_the_documented_command_mints_what_the_override_mounts(
    override: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (command,) = re.findall(r"python -m certs\.tls ([^#\n]+)", OVERRIDE.read_text())
    readme = (ROOT / "README.md").read_text()
    assert f"python -m certs.tls {command.strip()}" in readme and UP in readme
    argv = shlex.split(command)
    assert argv[0] == str(COMPOSE_TLS_DIR.relative_to(ROOT))
    assert main([str(tmp_path / "tls"), *argv[1:]]) == 0
    capsys.readouterr()
    for service in override["services"].values():
        for volume in service.get("volumes", []):
            source = ROOT / volume["source"]
            if source.parent == COMPOSE_TLS_DIR:
                assert (tmp_path / "tls" / source.name).is_file(), source.name
    # The runtime reaches the greeter by the host in module.mtls.yaml: the certificate names it.
    assert f"--host {urlsplit(rendered_module()[ENDPOINT]['urlPathTemplate']).hostname}" in command


def test_the_rendered_module_is_current() -> None:
    assert COMPOSE_MODULE_MTLS.read_text() == render_compose_module_mtls(), "run: .venv/bin/python -m deploy_render"


def test_the_rendered_module_is_module_yaml_with_https_and_the_tls_files_only(merged: dict[str, Any]) -> None:
    tls = rendered_module()
    plain = {doc["kind"]: doc["spec"] for doc in yaml.safe_load_all((ROOT / "module.yaml").read_text())}
    url = urlsplit(tls[ENDPOINT]["urlPathTemplate"])
    assert url.scheme == "https" and url.hostname == "greeter"
    assert merged["services"]["greeter"]["environment"]["GREETER_BIND"] == f"0.0.0.0:{url.port}"
    for key in TRANSPORT_FILES:
        del tls[ENDPOINT]["transport"][key]
    tls[ENDPOINT]["urlPathTemplate"] = url._replace(scheme="http").geturl()
    assert tls == plain


def test_the_health_check_is_the_kubernetes_overlays_probe(merged: dict[str, Any]) -> None:
    healthcheck = merged["services"]["greeter"]["healthcheck"]
    liveness = k8s_greeter()["livenessProbe"]["exec"]["command"]
    assert healthcheck["test"] == ["CMD", *liveness], "the same probe as deploy/k8s/overlays/mtls"
    routes = {rule.rule for rule in create_app(Settings()).url_map.iter_rules()}
    assert healthcheck["test"][-1] == "/healthz" in routes
    bind_port = merged["services"]["greeter"]["environment"]["GREETER_BIND"].rsplit(":", 1)[1]
    assert re.findall(r"https://127\.0\.0\.1:(\d+)", healthcheck["test"][3]) == [bind_port]
    # A Python start and a handshake get more, and the probe gives up first.
    urlopen_timeout = float(re.findall(r"timeout=(\d+)", healthcheck["test"][3])[0])
    assert urlopen_timeout < float(healthcheck["timeout"].removesuffix("s"))
