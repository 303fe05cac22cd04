"""Resolve the stack's jars from Maven Central into stack/jvm/lib/{flink,job,kafka}.

One `mvn -q dependency:copy-dependencies` in stack/jvm (an aggregator of three dependency lists, one per
lib folder so the Flink and Kafka classpaths never mix). A stamp file holding the hash of the poms and
versions makes a second run a no-op.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from .config import FLINK_VERSION, JOB_JAR_GLOB, KAFKA_VERSION, STATEFUN_VERSION, StackConfig
from .metrics_plugin import fetch_plugin

LIB_FOLDERS = ("flink", "job", "kafka")
MIN_JAVA = 17


class PrerequisiteError(RuntimeError):
    """A tool the stack needs is missing; the message says which and how to get it."""


def java_executable() -> str | None:
    """$JAVA_HOME/bin/java when it exists, else java on PATH; None when neither."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def java_major(version_output: str) -> int | None:
    """The major version from `java -version` output: '17.0.15', '21', or the old '1.8.0_392'."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_prerequisites(need_maven: bool = True) -> str:
    """Return the java executable; raise naming everything missing."""
    problems: list[str] = []
    java = java_executable()
    if java is None:
        problems.append(
            f"java (JDK {MIN_JAVA}+) not found on PATH or in JAVA_HOME; e.g. apt-get install openjdk-17-jdk-headless"
        )
    else:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
        major = java_major(out.stderr + out.stdout)
        if major is None or major < MIN_JAVA:
            problems.append(f"{java} is Java {major}, the stack needs {MIN_JAVA}+")
    if need_maven and shutil.which("mvn") is None:
        problems.append("mvn (Apache Maven) not found on PATH; e.g. apt-get install maven")
    if problems:
        raise PrerequisiteError("local stack prerequisites missing: " + "; ".join(problems))
    assert java is not None
    return java


def maven_properties() -> list[str]:
    """The version flags that override stack/jvm/pom.xml's defaults, so stack/config.py decides."""
    return [
        f"-Dflink.version={FLINK_VERSION}",
        f"-Dstatefun.version={STATEFUN_VERSION}",
        f"-Dkafka.version={KAFKA_VERSION}",
    ]


def pom_files(jvm_dir: Path) -> list[Path]:
    """stack/jvm's aggregator pom and its modules' poms, in a stable order."""
    return sorted(jvm_dir.glob("pom.xml")) + sorted(jvm_dir.glob("*/pom.xml"))


def fingerprint(jvm_dir: Path) -> str:
    """A hash of the poms and the version flags: what the stamp holds after a successful fetch."""
    digest = hashlib.sha256()
    for pom in pom_files(jvm_dir):
        digest.update(pom.relative_to(jvm_dir).as_posix().encode() + b"\0" + pom.read_bytes() + b"\0")
    digest.update(" ".join(maven_properties()).encode())
    return digest.hexdigest()


def stamp_file(jvm_dir: Path) -> Path:
    """The stamp file: the fingerprint of the last successful fetch."""
    return jvm_dir / "lib" / ".stamp"


def is_fresh(jvm_dir: Path) -> bool:
    """True when every lib folder holds jars and the stamp matches the current poms and versions."""
    stamp = stamp_file(jvm_dir)
    folders_full = all(any((jvm_dir / "lib" / name).glob("*.jar")) for name in LIB_FOLDERS)
    return folders_full and stamp.is_file() and stamp.read_text().strip() == fingerprint(jvm_dir)


def fetch(config: StackConfig, *, force: bool = False) -> bool:
    """Resolve the jars unless the stamp says they are current, then the metrics plugin (stack/metrics_plugin.py)
    unless it is; True if either was made.
    """
    resolved = _resolve_jars(config, force=force)
    made_plugin = fetch_plugin(config.jvm_dir, config.lib_flink, force=force)
    return resolved or made_plugin


def _resolve_jars(config: StackConfig, *, force: bool) -> bool:
    if not force and is_fresh(config.jvm_dir):
        return False
    check_prerequisites(need_maven=True)
    lib = config.jvm_dir / "lib"
    for name in LIB_FOLDERS:  # a changed pom must not leave stale jars on a classpath
        shutil.rmtree(lib / name, ignore_errors=True)
    stamp_file(config.jvm_dir).unlink(missing_ok=True)
    command = ["mvn", "-q", "-B", *maven_properties(), "dependency:copy-dependencies"]
    result = subprocess.run(command, cwd=config.jvm_dir, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(command)}` in {config.jvm_dir} failed ({result.returncode}):\n"
            f"{(result.stdout + result.stderr)[-4000:]}"
        )
    stamp_file(config.jvm_dir).write_text(fingerprint(config.jvm_dir) + "\n")
    return True


def job_jar(config: StackConfig) -> Path:
    """The one statefun-flink-core jar in lib/job; RuntimeError when there is none or more than one."""
    jars = sorted(config.lib_job.glob(JOB_JAR_GLOB))
    if len(jars) != 1:
        raise RuntimeError(
            f"expected one statefun-flink-core jar in {config.lib_job}, found {len(jars)}: run `python -m stack fetch`"
        )
    return jars[0]
