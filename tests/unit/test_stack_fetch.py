"""stack/fetch.py and stack/jvm/: one source of versions, prerequisite messages, the stamp that skips Maven."""

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from stack import config as stack_config
from stack import metrics_plugin
from stack.config import JVM_DIR, StackConfig
from stack.fetch import (
    LIB_FOLDERS,
    PrerequisiteError,
    check_prerequisites,
    fetch,
    fingerprint,
    is_fresh,
    java_major,
    stamp_file,
)

POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def test_pom_versions_match_the_config() -> None:
    properties = ET.parse(JVM_DIR / "pom.xml").getroot().find("m:properties", POM_NS)
    assert properties is not None
    values = {child.tag.split("}")[1]: child.text for child in properties}
    assert values["flink.version"] == stack_config.FLINK_VERSION == "1.16.2"
    assert values["statefun.version"] == stack_config.STATEFUN_VERSION == "3.3.0"
    assert values["kafka.version"] == stack_config.KAFKA_VERSION == "3.9.1"


def test_one_module_per_lib_folder() -> None:
    modules = ET.parse(JVM_DIR / "pom.xml").getroot().find("m:modules", POM_NS)
    assert modules is not None
    assert sorted(m.text or "" for m in modules) == sorted(LIB_FOLDERS)
    distribution = ET.parse(JVM_DIR / "flink" / "pom.xml").getroot()
    for dependency in distribution.iterfind("m:dependencies/m:dependency", POM_NS):
        if dependency.findtext("m:artifactId", namespaces=POM_NS) == "statefun-flink-distribution":
            exclusion = dependency.find("m:exclusions/m:exclusion", POM_NS)
            assert exclusion is not None
            assert exclusion.findtext("m:groupId", namespaces=POM_NS) == "*"
            assert exclusion.findtext("m:artifactId", namespaces=POM_NS) == "*"
            break
    else:
        pytest.fail("statefun-flink-distribution missing from stack/jvm/flink/pom.xml")


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_392"', 8),
        ("garbage", None),
    ],
)
def test_java_major(output: str, major: int | None) -> None:
    assert java_major(output) == major


def test_missing_tools_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(PrerequisiteError) as error:
        check_prerequisites(need_maven=True)
    assert "java (JDK 17+) not found" in str(error.value)
    assert "mvn (Apache Maven) not found" in str(error.value)


def test_an_old_java_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'java version \"1.8.0_392\"' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(PrerequisiteError, match="is Java 8, the stack needs 17"):
        check_prerequisites(need_maven=False)


def _fake_jvm_dir(tmp_path: Path) -> Path:
    jvm = tmp_path / "jvm"
    for name in LIB_FOLDERS:
        (jvm / name).mkdir(parents=True)
        (jvm / name / "pom.xml").write_text(f"<project>{name}</project>")
        (jvm / "lib" / name).mkdir(parents=True)
        (jvm / "lib" / name / f"{name}.jar").write_bytes(b"PK")
    (jvm / "pom.xml").write_text("<project/>")
    (jvm / "reporter" / "src").mkdir(parents=True)
    (jvm / "reporter" / "src" / "Factory.java").write_text("class Factory {}")
    plugin = metrics_plugin.plugins_dir(jvm) / metrics_plugin.PLUGIN_NAME
    plugin.mkdir(parents=True)
    for jar in (metrics_plugin.REPORTER_JAR, metrics_plugin.LOOPBACK_JAR):
        (plugin / jar).write_bytes(b"PK")
    metrics_plugin.stamp_file(jvm).write_text(metrics_plugin.fingerprint(jvm))
    return jvm


def test_the_stamp_skips_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jvm = _fake_jvm_dir(tmp_path)
    assert not is_fresh(jvm)
    stamp_file(jvm).write_text(fingerprint(jvm))
    assert is_fresh(jvm)
    monkeypatch.setenv("PATH", "")  # Maven would not even be found
    assert fetch(StackConfig(jvm_dir=jvm)) is False


def test_the_metrics_plugin_is_made_again_when_the_reporter_source_changes_or_a_jar_is_gone(tmp_path: Path) -> None:
    jvm = _fake_jvm_dir(tmp_path)
    assert metrics_plugin.is_fresh(jvm)
    (jvm / "reporter" / "src" / "Factory.java").write_text("class Factory { int changed; }")
    assert not metrics_plugin.is_fresh(jvm)
    metrics_plugin.stamp_file(jvm).write_text(metrics_plugin.fingerprint(jvm))
    assert metrics_plugin.is_fresh(jvm)
    os.remove(metrics_plugin.plugins_dir(jvm) / metrics_plugin.PLUGIN_NAME / metrics_plugin.LOOPBACK_JAR)
    assert not metrics_plugin.is_fresh(jvm)


def test_a_changed_pom_or_an_empty_folder_is_stale(tmp_path: Path) -> None:
    jvm = _fake_jvm_dir(tmp_path)
    stamp_file(jvm).write_text(fingerprint(jvm))
    (jvm / "kafka" / "pom.xml").write_text("<project>changed</project>")
    assert not is_fresh(jvm)
    stamp_file(jvm).write_text(fingerprint(jvm))
    os.remove(jvm / "lib" / "job" / "job.jar")
    assert not is_fresh(jvm)
