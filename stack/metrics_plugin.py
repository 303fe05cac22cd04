"""Flink's Prometheus reporter as a plugin folder: stack/jvm/lib/plugins/metrics-prometheus/.

Maven Central does not serve `flink-metrics-prometheus` 1.16.2 here; the PyPI sdist `apache-flink-libraries`
1.16.2 carries Flink's whole plugins/ folder, this jar among them (237 MB, pinned by its hash; only the one jar
is kept). Beside it goes the loopback factory (stack/jvm/reporter), compiled with javac: Flink's own reporter
binds every interface, and the local stack binds only 127.0.0.1. A stamp makes a second run a no-op.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Final

from .config import FLINK_VERSION, REPO_ROOT

PLUGIN_NAME: Final = "metrics-prometheus"
REPORTER_JAR: Final = f"flink-metrics-prometheus-{FLINK_VERSION}.jar"
LOOPBACK_JAR: Final = "greeter-loopback-prometheus-reporter.jar"
LOOPBACK_FACTORY: Final = "local.greeter.metrics.LoopbackPrometheusReporterFactory"
SDIST: Final = f"apache-flink-libraries=={FLINK_VERSION}"
SDIST_SHA256: Final = "68f4328b6109e178a63d7eac661fc1f1cd1b70f01a77cd1bbaf93512a76382ab"
SDIST_MEMBER: Final = f"apache-flink-libraries-{FLINK_VERSION}/deps/plugins/{PLUGIN_NAME}/{REPORTER_JAR}"
# The pip that scripts/setup installs uv with; the project's .venv has none.
TOOLS_PIP: Final = REPO_ROOT / ".tools" / "uv" / "bin" / "pip"


def plugins_dir(jvm_dir: Path) -> Path:
    """Flink's plugins folder for the local JVMs (FLINK_PLUGINS_DIR)."""
    return jvm_dir / "lib" / "plugins"


def reporter_sources(jvm_dir: Path) -> list[Path]:
    """The loopback factory's Java sources and its service file, in a stable order."""
    return sorted(path for path in (jvm_dir / "reporter").rglob("*") if path.is_file())


def fingerprint(jvm_dir: Path) -> str:
    """A hash of the pinned sdist and the reporter's sources: what the stamp holds after a successful fetch."""
    digest = hashlib.sha256(f"{SDIST}:{SDIST_SHA256}".encode())
    for path in reporter_sources(jvm_dir):
        digest.update(path.relative_to(jvm_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def stamp_file(jvm_dir: Path) -> Path:
    """The plugin folder's stamp."""
    return plugins_dir(jvm_dir) / ".stamp"


def is_fresh(jvm_dir: Path) -> bool:
    """True when both jars are in place and were made from the current sources."""
    folder = plugins_dir(jvm_dir) / PLUGIN_NAME
    jars_there = (folder / REPORTER_JAR).is_file() and (folder / LOOPBACK_JAR).is_file()
    stamp = stamp_file(jvm_dir)
    return jars_there and stamp.is_file() and stamp.read_text().strip() == fingerprint(jvm_dir)


def fetch_plugin(jvm_dir: Path, lib_flink: Path, *, force: bool = False) -> bool:
    """Make the plugin folder unless it is current; True if it was made. `lib_flink` holds the Flink jars the
    loopback factory compiles against.
    """
    if not force and is_fresh(jvm_dir):
        return False
    folder = plugins_dir(jvm_dir) / PLUGIN_NAME
    shutil.rmtree(folder, ignore_errors=True)
    stamp_file(jvm_dir).unlink(missing_ok=True)
    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="flink-libraries-") as work:
        _extract_reporter(Path(work), folder / REPORTER_JAR)
        _compile_loopback(jvm_dir, Path(work), classpath=[folder / REPORTER_JAR, *sorted(lib_flink.glob("*.jar"))],
                          target=folder / LOOPBACK_JAR)  # fmt: skip
    stamp_file(jvm_dir).write_text(fingerprint(jvm_dir) + "\n")
    return True


def _pip() -> list[str]:
    if TOOLS_PIP.exists():
        return [str(TOOLS_PIP)]
    python = shutil.which("python3")
    if python is None:
        raise RuntimeError("no pip to download the Flink libraries with: run scripts/setup")
    return [python, "-m", "pip"]


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{what}: `{' '.join(command)}` failed ({result.returncode}):\n"
                           f"{(result.stdout + result.stderr)[-4000:]}")  # fmt: skip


def _extract_reporter(work: Path, target: Path) -> None:
    """Download the sdist (hash-checked, from pip's configured index) and copy out the reporter's jar."""
    requirement = work / "requirements.txt"
    requirement.write_text(f"{SDIST} --hash=sha256:{SDIST_SHA256}\n")
    download = work / "download"
    pip_download = [*_pip(), "download", "--quiet", "--disable-pip-version-check", "--no-deps", "--no-binary", ":all:"]
    _run(
        [*pip_download, "--require-hashes", "-r", str(requirement), "-d", str(download)],
        "downloading Flink's libraries",
    )
    (sdist,) = download.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        member = archive.extractfile(SDIST_MEMBER)
        if member is None:
            raise RuntimeError(f"{sdist.name} has no {SDIST_MEMBER}")
        with member, target.open("wb") as out:
            shutil.copyfileobj(member, out)


def _compile_loopback(jvm_dir: Path, work: Path, classpath: list[Path], target: Path) -> None:
    """javac and jar the loopback factory (Java 11 bytecode: the public Flink image runs Java 11)."""
    javac, jar = shutil.which("javac"), shutil.which("jar")
    if javac is None or jar is None:
        raise RuntimeError("javac and jar (a JDK 17+) are needed to build the metrics reporter; "
                           "e.g. apt-get install openjdk-17-jdk-headless")  # fmt: skip
    source = jvm_dir / "reporter"
    classes = work / "classes"
    java_files = [str(path) for path in sorted((source / "src").rglob("*.java"))]
    cp = ":".join(str(path) for path in classpath)
    _run([javac, "--release", "11", "-nowarn", "-cp", cp, "-d", str(classes), *java_files], "compiling the reporter")
    shutil.copytree(source / "resources", classes, dirs_exist_ok=True)
    _run([jar, "--create", "--file", str(target), "-C", str(classes), "."], "packaging the reporter")
