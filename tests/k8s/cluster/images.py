"""Container images without a registry or a Docker engine: a folder becomes a one-layer image in the format
`docker save` writes (manifest.json, the config as <sha256>.json, <sha256>/layer.tar), which
`ctr images import` loads into the cluster's containerd.

Image names start with `localhost/`: a name is never pulled (the pods say `imagePullPolicy: Never`), and were
one ever tried, it would go to this machine and nowhere else.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

PATH_ENV: Final = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PAUSE: Final = "localhost/greeter-k8s/pause:v1.34.2"
COREDNS: Final = "localhost/greeter-k8s/coredns:v1.12.1"
LOCAL_PATH_PROVISIONER: Final = "localhost/greeter-k8s/local-path-provisioner:v0.0.30"
BUSYBOX: Final = "localhost/greeter-k8s/busybox:1.35.0"
BUSYBOX_BINARY: Final = Path("/bin/busybox")  # Debian's busybox-static: no shared libraries


def _architecture() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Owned by root, dated the epoch: the same folder always makes the same layer."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(_reset(info), io.BytesIO(data))


def image_tar(
    root: Path,
    reference: str,
    out: Path,
    *,
    entrypoint: Sequence[str] = (),
    cmd: Sequence[str] = (),
    env: Sequence[str] = (PATH_ENV,),
) -> Path:
    """Write `root`'s tree as the image `reference` to `out` (docker-save format); returns `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    layer = out.with_name(out.name + ".layer")
    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(root.rglob("*")):
            archive.add(path, arcname=str(path.relative_to(root)), recursive=False, filter=_reset)
    digest = hashlib.sha256()
    with layer.open("rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            digest.update(chunk)
    diff_id = digest.hexdigest()
    config = {
        "architecture": _architecture(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Env": list(env), "Entrypoint": list(entrypoint) or None, "Cmd": list(cmd) or None},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "tests/k8s/cluster/images.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [reference], "Layers": [f"{diff_id}/layer.tar"]}]
    try:
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as archive:
            _add_bytes(archive, config_name, config_bytes)
            archive.add(layer, arcname=f"{diff_id}/layer.tar", filter=_reset)
            _add_bytes(archive, "manifest.json", json.dumps(manifest).encode())
    finally:
        layer.unlink()
    return out


def binary_image(binary: Path, reference: str, out: Path, *, args: Sequence[str] = ()) -> Path:
    """An image of one static binary at its root, run as its entrypoint."""
    root = out.with_name(out.name + ".root")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    try:
        shutil.copy2(binary, root / binary.name)
        (root / "tmp").mkdir(mode=0o1777)
        return image_tar(root, reference, out, entrypoint=[f"/{binary.name}", *args])
    finally:
        shutil.rmtree(root)


def busybox_root(root: Path) -> Path:
    """A folder with Debian's static busybox as /bin/busybox, a link for each of its applets, and /tmp."""
    if not BUSYBOX_BINARY.is_file():
        raise RuntimeError(f"{BUSYBOX_BINARY} is missing: install Debian's busybox-static (tests/k8s/cluster/install)")
    (root / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX_BINARY, root / "bin" / "busybox")
    listing = subprocess.run([str(BUSYBOX_BINARY), "--list-full"], capture_output=True, text=True, check=True)
    for applet in listing.stdout.split():
        link = root / applet
        if applet != "bin/busybox" and not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink("/bin/busybox", link)
    (root / "tmp").mkdir(mode=0o1777, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    return root


def busybox_image(out: Path, reference: str = BUSYBOX, extra: dict[str, str] | None = None) -> Path:
    """The busybox image (a shell and the usual tools), with `extra` files (path in the image -> text) added."""
    root = out.with_name(out.name + ".root")
    shutil.rmtree(root, ignore_errors=True)
    try:
        busybox_root(root)
        for name, text in (extra or {}).items():
            target = root / name.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        return image_tar(root, reference, out, cmd=["sh"])
    finally:
        shutil.rmtree(root)
