"""What the cluster changes on the machine itself, recorded before it changes it and put back afterwards.

A cluster that runs as root on the host leaves traces outside its own folder: kernel settings (kubelet's and the
CNI bridge's sysctls), iptables chains (kube-proxy's and kube-router's KUBE-* and the CNI plugins' CNI-*),
kube-router's ipsets, a bridge, network namespaces and mounts, container shims that outlive containerd, kubelet's
cgroups and its /var/log/containers links. `HostState` records what was there before the first change (and the
daemons, by PID and start time) in a marker file outside the cluster's folder, so that a run that died half-way is
cleaned up by the next one; `clean_up` puts everything back and `leftovers` says what, if anything, is still
there.

Only what is provably the cluster's own is touched: its processes by recorded PID (shims by the containerd socket
path in their command line, which lies in the cluster's folder), mounts under its folder, its own bridge name,
iptables chains named KUBE-*/CNI-* and ipsets named as kube-router names them (start refuses when such chains or
ipsets exist before it, so they are its own).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final, cast

from stack import procs

MARKER: Final = Path("/run/greeter-k8s/cluster.json")
BRIDGE: Final = "greeter-k8s0"
NETWORK: Final = "greeter-k8s"  # the CNI network's name: its cache files in /var/lib/cni/results start with it
# The network the cluster's addresses come from: pods, services. The node's own address is the bridge's
# gateway address, inside the pod network, so that pods reach the API server and kubelet without a route out.
POD_CIDR: Final = "10.244.0.0/16"
NODE_POD_CIDR: Final = "10.244.0.0/24"
NODE_IP: Final = "10.244.0.1"
SERVICE_CIDR: Final = "10.96.0.0/16"
OWN_CHAIN_PREFIXES: Final = ("KUBE-", "CNI-")
# kube-router's NetworkPolicy controller (v2.1.0, pkg/controllers/netpol and pkg/utils/ipset.go) names its ipsets
# KUBE-SRC-*/KUBE-DST-* and the temporary ones of an atomic swap TMP-*; its other controllers (not run here) use
# kube-router-*. IPv6 sets carry an "inet6:" prefix.
OWN_IPSET_PREFIXES: Final = ("KUBE-SRC-", "KUBE-DST-", "TMP-", "kube-router-")
IPTABLES_TABLES: Final = ("filter", "nat", "mangle", "raw")
# kubelet sets the first six (its setupKernelTunables); the bridge plugin sets ip_forward; br_netfilter's setting
# lets kube-proxy see traffic between pods on the bridge.
SYSCTLS: Final = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
)
# Host folders kubelet and containerd create outside the cluster's folder (paths fixed in their code).
HOST_DIRS: Final = (
    "/var/log/containers",
    "/var/lib/cni/results",
    "/var/lib/cni",
    "/var/lib/kubelet/device-plugins",
    "/var/lib/kubelet",
    "/run/containerd/s",
    "/run/containerd",
)
KUBELET_DEVICE_SOCKET: Final = Path("/var/lib/kubelet/device-plugins/kubelet.sock")  # fixed, whatever --root-dir
CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
SHIM_SOCKET_DIR: Final = Path("/run/containerd/s")  # containerd 1.6 puts every shim's socket there


def _run(*argv: str, check: bool = True) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stdout}{result.stderr}")
    return result.stdout


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name


def read_sysctl(name: str) -> str | None:
    """The current value, None when this kernel has no such setting."""
    try:
        return _sysctl_path(name).read_text().strip()
    except OSError:
        return None


@dataclass
class HostState:
    """What the cluster will change, as it was before; the daemons it started. Saved as JSON in MARKER."""

    work_dir: str
    sysctls: dict[str, str] = field(default_factory=dict)
    forward_policy: str = "ACCEPT"
    missing_dirs: list[str] = field(default_factory=list)  # of HOST_DIRS: absent before, removed if empty after
    started: list[dict[str, object]] = field(default_factory=list)  # the daemons, as procs.Proc fields

    @classmethod
    def record(cls, work_dir: Path) -> HostState:
        """Take note of the machine before the first change."""
        state = cls(str(work_dir))
        state.sysctls = {name: value for name in SYSCTLS if (value := read_sysctl(name)) is not None}
        state.forward_policy = forward_policy()
        state.missing_dirs = [path for path in HOST_DIRS if not Path(path).exists()]
        return state

    def save(self) -> None:
        """Write the marker (atomically): the record a later run cleans up from, should this one die."""
        MARKER.parent.mkdir(parents=True, exist_ok=True)
        partial = MARKER.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(self), indent=2))
        partial.replace(MARKER)

    @classmethod
    def load(cls) -> HostState | None:
        """The marker of a cluster that runs, or of one that died without cleaning up."""
        try:
            data = json.loads(MARKER.read_text())
        except FileNotFoundError:
            return None
        return cls(**data)

    def add(self, proc: procs.Proc) -> None:
        """Record a daemon just started, in the marker too."""
        self.started.append(asdict(proc))
        self.save()

    def daemons(self) -> list[procs.Proc]:
        """The recorded daemons, in start order."""
        return [
            procs.Proc(
                str(entry["name"]),
                int(str(entry["pid"])),
                int(str(entry["start_ticks"])),
                str(entry["log"]),
                tuple(str(arg) for arg in cast(list[str], entry["argv"])),
            )
            for entry in self.started
        ]

    def running(self) -> list[procs.Proc]:
        """The recorded daemons that still run (the same processes: PID and start time)."""
        return [proc for proc in self.daemons() if procs.is_running(proc)]


def forward_policy() -> str:
    """The iptables FORWARD chain's policy."""
    for line in _run("iptables", "-S", "FORWARD").splitlines():
        if line.startswith("-P FORWARD "):
            return line.split()[2]
    return "ACCEPT"


# ----- what start checks ------------------------------------------------------------------------------------------


def own_chains(binary: str = "iptables") -> dict[str, list[str]]:
    """KUBE-*/CNI-* chains per table."""
    chains: dict[str, list[str]] = {}
    for table in IPTABLES_TABLES:
        listing = _run(binary, "-w", "-t", table, "-S", check=False)
        names = [line.split()[1] for line in listing.splitlines() if line.startswith("-N ")]
        if mine := [name for name in names if name.startswith(OWN_CHAIN_PREFIXES)]:
            chains[table] = mine
    return chains


def own_ipsets() -> list[str]:
    """The ipsets named as kube-router names its own (none where the ipset tool is missing: then nothing made
    any)."""
    try:
        listing = _run("ipset", "list", "-n")
    except FileNotFoundError:
        return []
    return [name for name in listing.split() if name.removeprefix("inet6:").startswith(OWN_IPSET_PREFIXES)]


def _networks_overlap(a: str, b: str) -> bool:
    return ipaddress.ip_network(a, strict=False).overlaps(ipaddress.ip_network(b, strict=False))


def preflight() -> None:
    """Refuse to start where the cluster would collide with what the machine has: its addresses routed
    elsewhere, another Kubernetes' iptables chains or kube-router's ipsets, or kubelet's cgroups of another
    kubelet."""
    if os.geteuid() != 0:
        raise RuntimeError("the cluster runs as root (containerd, kubelet and kube-proxy need it)")
    for line in _run("ip", "-4", "route", "show", "table", "all").splitlines():
        words = line.split()
        if not words or f"dev {BRIDGE}" in line or words[0] in ("broadcast", "local", "multicast", "unreachable"):
            continue
        destination = words[0]
        if destination == "default" or not destination[0].isdigit():
            continue
        for ours in (POD_CIDR, SERVICE_CIDR):
            if _networks_overlap(destination, ours):
                raise RuntimeError(f"the machine routes {destination}, which overlaps the cluster's {ours}: {line}")
    for binary in ("iptables", "ip6tables"):
        if chains := own_chains(binary):
            raise RuntimeError(
                f"{binary} already has Kubernetes or CNI chains ({chains}): another cluster runs on this machine, "
                "or one left them behind; remove them before starting this one"
            )
    if sets := own_ipsets():
        raise RuntimeError(
            f"ipsets named as kube-router names its own exist already ({', '.join(sets)}): another kube-router runs "
            "on this machine, or one left them behind; remove them before starting this one"
        )
    if stray := [str(path) for path in CGROUP_ROOT.glob("*/kubepods")]:
        raise RuntimeError(f"kubelet's cgroups exist already ({', '.join(stray)}): another kubelet runs here")


# ----- what clean_up undoes ---------------------------------------------------------------------------------------


def _proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _all_pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def shims(containerd_socket: Path) -> list[int]:
    """containerd shims serving the containerd at this socket (the `-address` in their command line)."""
    found = []
    for pid in _all_pids():
        argv = _proc_cmdline(pid)
        if (
            argv
            and Path(argv[0]).name.startswith("containerd-shim")
            and _arg(argv, "-address") == str(containerd_socket)
        ):
            found.append(pid)
    return found


def _arg(argv: list[str], flag: str) -> str | None:
    for index, word in enumerate(argv[:-1]):
        if word == flag:
            return argv[index + 1]
    return None


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, deepest last."""
    found = []
    pending = [pid]
    while pending:
        for child in procs.children(pending.pop()):
            found.append(child)
            pending.append(child)
    return found


def kubepods_cgroups() -> list[Path]:
    """kubelet's cgroup folders in every hierarchy, deepest first."""
    found = []
    for top in CGROUP_ROOT.glob("*/kubepods"):
        found.extend(sorted((Path(root) for root, _dirs, _files in os.walk(top)), key=lambda p: -len(p.parts)))
    return found


def cgroup_pids(cgroups: list[Path]) -> set[int]:
    """The processes in these cgroups."""
    pids: set[int] = set()
    for cgroup in cgroups:
        with contextlib.suppress(OSError):
            pids.update(int(pid) for pid in (cgroup / "cgroup.procs").read_text().split())
    return pids


def _kill(pids: set[int] | list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _wait_gone(pids: set[int] | list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if (fields := _stat_state(pid)) is not None and fields not in ("Z", "X")]
        if alive:
            time.sleep(0.05)
    return alive


def _stat_state(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()[0]


def kill_containers(containerd_socket: Path, containerd_state: Path) -> list[str]:
    """SIGKILL what containerd left running: its shims (found by their socket address) with everything below
    them, and any process still in kubelet's cgroups; then remove the shims' sockets. Notes what it did."""
    notes = []
    victims: set[int] = set()
    for shim in shims(containerd_socket):
        victims.update(descendants(shim))
        victims.add(shim)
    victims.update(cgroup_pids(kubepods_cgroups()))
    if victims:
        notes.append(f"killed {len(victims)} leftover container processes and shims: {sorted(victims)}")
        _kill(victims)
        _wait_gone(victims, 10)
    for socket_file in shim_sockets(containerd_state):
        socket_file.unlink(missing_ok=True)
        notes.append(f"removed the shim socket {socket_file}")
    return notes


def shim_sockets(containerd_state: Path) -> list[Path]:
    """The shims' sockets still there: containerd 1.6 puts them in /run/containerd/s, whatever its state folder,
    and writes each one's address into the task's bundle in its state folder."""
    found = set()  # the containers of a pod share its sandbox's shim
    for address in containerd_state.glob("io.containerd.runtime.v2.task/*/*/address"):
        with contextlib.suppress(OSError):
            path = Path(address.read_text().strip().removeprefix("unix://"))
            if path.parent == SHIM_SOCKET_DIR and path.is_socket():
                found.add(path)
    return sorted(found)


def mounts_under(folder: Path) -> list[str]:
    """Mount points at or below `folder` (mountinfo's escapes undone), deepest first."""
    prefix = str(folder.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=lambda p: -p.count("/"))


def unmount_under(folder: Path) -> list[str]:
    """Unmount everything below `folder`, deepest first; lazily where a plain unmount is refused."""
    notes = []
    for _round in range(5):
        points = mounts_under(folder)
        if not points:
            break
        for point in points:
            if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
                notes.append(f"unmounted lazily: {point}")
    return notes


def remove_iptables_chains() -> list[str]:
    """Delete the rules that jump to KUBE-*/CNI-* chains from other chains, then flush and delete those chains,
    in every table of IPv4 and IPv6."""
    notes = []
    for binary in ("iptables", "ip6tables"):
        for table, chains in own_chains(binary).items():
            for line in _run(binary, "-w", "-t", table, "-S", check=False).splitlines():
                words = shlex.split(line)
                if len(words) < 2 or words[0] != "-A" or words[1].startswith(OWN_CHAIN_PREFIXES):
                    continue
                if any(target in chains for target in _targets(words)):
                    _run(binary, "-w", "-t", table, "-D", *words[1:], check=False)
            for chain in chains:
                _run(binary, "-w", "-t", table, "-F", chain, check=False)
            for chain in chains:
                _run(binary, "-w", "-t", table, "-X", chain, check=False)
            notes.append(f"{binary} {table}: removed {len(chains)} chains")
    return notes


def remove_ipsets() -> list[str]:
    """Destroy kube-router's ipsets, once no iptables rule refers to them (remove_iptables_chains first)."""
    sets = own_ipsets()
    for name in sets:
        _run("ipset", "destroy", name, check=False)
    return [f"destroyed {len(sets)} ipsets: {', '.join(sets)}"] if sets else []


def _targets(words: list[str]) -> list[str]:
    return [words[index + 1] for index, word in enumerate(words[:-1]) if word in ("-j", "-g", "--jump", "--goto")]


def remove_bridge() -> None:
    """Delete the pod bridge, with any veth still attached (their routes go with them)."""
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        return
    for port in Path(f"/sys/class/net/{BRIDGE}/brif").iterdir():
        _run("ip", "link", "delete", port.name, check=False)
    _run("ip", "link", "delete", BRIDGE, check=False)


def restore_sysctls(saved: dict[str, str]) -> list[str]:
    """Put back each recorded setting that differs now."""
    notes = []
    for name, value in saved.items():
        now = read_sysctl(name)
        if now is not None and now != value:
            with contextlib.suppress(OSError):
                _sysctl_path(name).write_text(value)
                notes.append(f"{name.replace('/', '.')}: {now} -> {value}")
    return notes


def remove_cgroups() -> None:
    """rmdir kubelet's (by now empty) cgroup folders, deepest first."""
    for cgroup in kubepods_cgroups():
        with contextlib.suppress(OSError):
            cgroup.rmdir()


def remove_host_files(work_dir: Path, containerd_root: Path, missing_dirs: list[str]) -> None:
    """kubelet's links in /var/log/containers into our folder and its device-plugin socket, the CNI plugins'
    cache entries of our network and of our pods' loopback, and the host folders that did not exist before (when
    empty)."""
    logs = Path("/var/log/containers")
    if logs.is_dir():
        for link in logs.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(str(work_dir)):
                    link.unlink()
    if KUBELET_DEVICE_SOCKET.is_socket():
        KUBELET_DEVICE_SOCKET.unlink()
    for entry in cni_cache_entries(containerd_root):
        entry.unlink(missing_ok=True)
    for path in missing_dirs:
        with contextlib.suppress(OSError):
            Path(path).rmdir()


def cni_cache_entries(containerd_root: Path) -> list[Path]:
    """The CNI cache files (/var/lib/cni/results) of our network and of our pod sandboxes' loopback (containerd
    names those by the sandbox's id, a folder of its root)."""
    results = Path("/var/lib/cni/results")
    if not results.is_dir():
        return []
    sandboxes = [path.name for path in (containerd_root / "io.containerd.grpc.v1.cri" / "sandboxes").glob("*")]
    return [
        entry
        for entry in results.iterdir()
        if entry.name.startswith(f"{NETWORK}-") or any(f"-{sandbox}-" in entry.name for sandbox in sandboxes)
    ]


def netns_under(work_dir: Path) -> list[str]:
    """The pods' network namespaces still mounted (containerd keeps them under its state folder)."""
    return [point for point in mounts_under(work_dir) if "/netns/" in point]


def leftovers(state: HostState, containerd_socket: Path, containerd_state: Path) -> list[str]:
    """What is still on the machine of this cluster: processes, shims, mounts, bridge, chains, ipsets, cgroups."""
    work_dir = Path(state.work_dir)
    found = [f"process {proc.name} (pid {proc.pid})" for proc in state.running()]
    found += [f"containerd shim pid {pid}" for pid in shims(containerd_socket)]
    found += [f"shim socket {path}" for path in shim_sockets(containerd_state)]
    found += [f"CNI cache entry {path}" for path in cni_cache_entries(containerd_state.with_name("root"))]
    if KUBELET_DEVICE_SOCKET.exists():
        found.append(f"kubelet's socket {KUBELET_DEVICE_SOCKET}")
    found += [f"mount {point}" for point in mounts_under(work_dir)]
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        found.append(f"bridge {BRIDGE}")
    for binary in ("iptables", "ip6tables"):
        found += [
            f"{binary} -t {table} chain {chain}" for table, chains in own_chains(binary).items() for chain in chains
        ]
    found += [f"ipset {name}" for name in own_ipsets()]
    found += [f"cgroup {path}" for path in kubepods_cgroups()]
    found += [
        f"sysctl {name.replace('/', '.')} = {now} (was {value})"
        for name, value in state.sysctls.items()
        if (now := read_sysctl(name)) is not None and now != value
    ]
    if (policy := forward_policy()) != state.forward_policy:
        found.append(f"iptables FORWARD policy {policy} (was {state.forward_policy})")
    return found
