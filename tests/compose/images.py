"""The images tests/compose runs: stand-ins for the public ones (standins/README.md), on a Debian base made with
debootstrap, since no image registry is reachable where the tests run. The base is made once per engine; the
stand-ins are rebuilt each session, from the layer cache when nothing changed."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

from stack.config import REPO_ROOT
from stack.flink import JAVA17_OPTS
from stack.metrics_plugin import PLUGIN_NAME, REPORTER_JAR
from stack.render import FLINK_LOG4J, KAFKA_LOG4J

from .engine import docker

STANDIN_SOURCES: Final = Path(__file__).with_name("standins")
BASE_IMAGE: Final = "greeter-ci/debian:bookworm"
LIB: Final = REPO_ROOT / "stack" / "jvm" / "lib"
MACHINE_CA_BUNDLE: Final = Path("/etc/ssl/certs/ca-certificates.crt")
# The compose file's image variables -> the stand-in's folder and the tag it is built as.
STANDINS: Final = {
    "PYTHON_IMAGE": ("python", "greeter-ci/python:3.11"),
    "KAFKA_IMAGE": ("kafka", "greeter-ci/kafka:3.9.1"),
    "STATEFUN_IMAGE": ("flink-statefun", "greeter-ci/flink-statefun:3.3.0"),
    "PROMETHEUS_IMAGE": ("prometheus", "greeter-ci/prometheus:2.42"),  # the `monitoring` profile's
}


def image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=False).returncode == 0


def debian_mirror(apt_dir: Path = Path("/etc/apt"), suite: str = "bookworm") -> str:
    """The machine's own Debian mirror for `suite`, read from its apt sources (deb822 `*.sources` files and
    one-line `sources.list` entries), so that debootstrap fetches where apt does here."""
    parts = apt_dir / "sources.list.d"
    candidates = [*sorted(parts.glob("*.sources")), apt_dir / "sources.list", *sorted(parts.glob("*.list"))]
    for path in candidates:
        if not path.is_file():
            continue
        text = path.read_text()
        for stanza in text.split("\n\n") if path.suffix == ".sources" else []:
            fields = dict(_deb822_fields(stanza))
            if "deb" in fields.get("Types", "").split() and suite in fields.get("Suites", "").split():
                return fields["URIs"].split()[0]
        for line in text.splitlines() if path.suffix == ".list" else []:
            words = [word for word in line.split() if not word.startswith("[")]
            if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                return words[1]
    raise RuntimeError(f"no apt source for Debian {suite} in {apt_dir}: debootstrap needs a mirror to fetch from")


def _deb822_fields(stanza: str) -> Iterator[tuple[str, str]]:
    for line in stanza.splitlines():
        key, colon, value = line.partition(":")
        if colon and not line.startswith(("#", " ", "\t")):
            yield key.strip(), value.strip()


def make_base_image(tag: str = BASE_IMAGE) -> None:
    """Debian bookworm (minbase) from the machine's Debian mirror, imported as `tag`; kept once made."""
    if image_exists(tag):
        return
    with tempfile.TemporaryDirectory(prefix="bookworm-") as root:
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", root, debian_mirror()],
            check=True,
            capture_output=True,
        )
        # The context manager closes tar's stdout pipe and waits for it.
        with subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE) as tar:
            docker("import", "-", tag, stdin=tar.stdout)
        if tar.returncode != 0:
            raise RuntimeError("tar of the debootstrap tree failed")


def _copy_jars(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for jar in sorted(source.glob("*.jar")):
        shutil.copy2(jar, target / jar.name)


def _extras(name: str, context: Path) -> None:
    """What each stand-in's build context gets beside its own folder: jars, logging, the CA bundle (Prometheus's:
    nothing, its Dockerfile installs Debian's package)."""
    if name == "python":
        shutil.copy2(MACHINE_CA_BUNDLE, context / "ca-certificates.crt")  # never committed
    elif name == "kafka":
        _copy_jars(LIB / "kafka", context / "libs")
        (context / "log4j.properties").write_text(KAFKA_LOG4J)
    elif name == "flink-statefun":
        _copy_jars(LIB / "flink", context / "lib")
        # StateFun's launcher looks for the job's jar at this fixed path (Constants.FLINK_JOB_JAR_PATH).
        shutil.copy2(next((LIB / "job").glob("statefun-flink-core-*.jar")), context / "lib" / "statefun-flink-core.jar")
        (context / "conf").mkdir()
        (context / "conf" / "log4j-console.properties").write_text(FLINK_LOG4J)
        (context / "java17.opts").write_text("".join(f"{option}\n" for option in JAVA17_OPTS))
        # The public image's plugins/metrics-prometheus: Flink's own reporter only (the local stack's loopback
        # factory beside it is for processes on the host).
        (context / "plugins" / PLUGIN_NAME).mkdir(parents=True)
        shutil.copy2(LIB / "plugins" / PLUGIN_NAME / REPORTER_JAR, context / "plugins" / PLUGIN_NAME / REPORTER_JAR)


def build_standins() -> Mapping[str, str]:
    """Build the stand-ins; returns the compose file's image variables set to them."""
    make_base_image()
    for name, tag in STANDINS.values():
        with tempfile.TemporaryDirectory(prefix=f"standin-{name}-") as directory:
            context = Path(directory) / name
            shutil.copytree(STANDIN_SOURCES / name, context)
            _extras(name, context)
            docker("build", "--quiet", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--tag", tag, str(context))
    return {variable: tag for variable, (_name, tag) in STANDINS.items()}
