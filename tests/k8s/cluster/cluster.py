"""A real single-node Kubernetes cluster (v1.34.2) made of its own processes, for tests: `running_cluster`.

Daemons, in start order, each started with `stack.procs.spawn` (PID and start time recorded) and stopped by PID:
etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (its own socket, root and state under
the cluster's folder), kubelet, kube-proxy; once the node is Ready, kube-router as the NetworkPolicy controller
(its firewall only), as the CNI bridge enforces no policy. CoreDNS and local-path-provisioner run as Deployments
(addons.yaml, which also holds kube-router's rights). Every server listens on loopback or on the node's address,
which is the pod bridge's own address (10.244.0.1): pods reach the API server and kubelet there, and nothing
routes anywhere else. Pods get routes to the pod and service networks only, so no traffic of theirs can leave the
machine.

Teardown (`Cluster.stop`) deletes the workloads and volumes through the API, stops the daemons by PID, and then
`host.clean_up` puts the machine back: see host.py. README.md beside this file says how to run it by hand.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import ssl
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from stack import procs
from tests.support.net import free_port

from . import host, images, pki
from .host import BRIDGE, NODE_IP, NODE_POD_CIDR, POD_CIDR, SERVICE_CIDR, HostState

K8S_VERSION: Final = "v1.34.2"
HERE: Final = Path(__file__).parent
INSTALL: Final = HERE / "install"
ADDONS: Final = HERE / "addons.yaml"
NODE_NAME: Final = "greeter-k8s"
CLUSTER_DOMAIN: Final = "cluster.local"
KUBERNETES_SERVICE_IP: Final = "10.96.0.1"
DNS_IP: Final = "10.96.0.10"
APISERVER_PORT: Final = 6443
KUBELET_PORT: Final = 10250
KUBE_ROUTER_USER: Final = "kube-router"  # its client certificate's CN; addons.yaml binds its ClusterRole to it
CNI_BIN_DIR: Final = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
START_TIMEOUT_S: Final = 180.0
TEARDOWN_TIMEOUT_S: Final = 90.0
STOP_TIMEOUT_S: Final = 20.0
MAX_SOCKET_PATH: Final = 100  # a unix socket's path has 108 bytes at most; containerd adds ".ttrpc"


def install() -> Path:
    """Run the installer (idempotent; under a second once done): the folder holding the cluster's binaries.
    Its progress lines pass through to stderr as they come; on failure they are in the RuntimeError too, so that
    a missing prerequisite is named where the test fails."""
    messages = []
    with subprocess.Popen([str(INSTALL)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as installer:
        assert installer.stdout is not None
        for line in installer.stdout:
            messages.append(line)
            print(line, end="", file=sys.stderr, flush=True)
    if installer.returncode != 0:
        raise RuntimeError(f"{INSTALL} failed ({installer.returncode}):\n{''.join(messages[-20:])}")
    return Path(messages[-1].strip())


class Layout:
    """Where everything of one cluster lives, under its folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pki = root / "pki"  # the CA, every certificate and key, the service-account key pair
        self.config = root / "config"  # kubeconfigs, containerd.toml, kubelet.yaml, kube-proxy.yaml
        self.logs = root / "logs"  # each daemon's log; teardown.log says what the teardown did
        self.etcd = root / "etcd"
        self.containerd = root / "containerd"  # its socket, root/, state/ (mounts, pods' netns) and runc/
        self.containerd_socket = self.containerd / "containerd.sock"
        self.cni = root / "cni"  # net.d/ (the network's config) and ipam/ (the addresses given out)
        self.kubelet = root / "kubelet"  # kubelet's --root-dir (pods' volumes are mounted under it)
        self.pod_logs = root / "pod-logs"
        self.volumes = root / "volumes"  # local-path-provisioner's volumes
        self.images = root / "images"  # image archives on their way into containerd
        self.kube_cache = root / "kube-cache"  # kubectl's discovery cache
        self.kubeconfig = self.config / "admin.kubeconfig"  # cluster-admin (system:masters)

    def bulky(self) -> list[Path]:
        """What a teardown removes: all but the logs, configs and certificates."""
        return [
            self.containerd,
            self.kubelet,
            self.volumes,
            self.images,
            self.etcd,
            self.cni,
            self.pod_logs,
            self.kube_cache,
        ]


@dataclass
class Cluster:
    """One running cluster: its binaries, folders, daemons, and how to talk to it."""

    work_dir: Path
    bin_dir: Path
    layout: Layout = field(init=False)
    state: HostState = field(init=False)
    ports: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _daemons: dict[str, procs.Proc] = field(default_factory=dict)
    _tls: ssl.SSLContext | None = None
    _recorded: bool = False  # the machine's state is noted (and the marker written): stop must put it back

    def __post_init__(self) -> None:
        self.work_dir = self.work_dir.resolve()
        self.layout = Layout(self.work_dir)
        self.state = HostState(str(self.work_dir))

    # ----- talking to it --------------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (cluster-admin through system:masters): for kubectl and clients."""
        return self.layout.kubeconfig

    @property
    def containerd_socket(self) -> Path:
        """The cluster's containerd socket (for `ctr --address`)."""
        return self.layout.containerd_socket

    def kubectl(self, *argv: str, input: str | None = None, timeout: float = 120, check: bool = True) -> str:
        """Run the built kubectl as the admin; its stdout (with its stderr when `check` is off), or RuntimeError
        with its output."""
        command = [
            str(self.bin_dir / "kubectl"),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.layout.kube_cache}",  # not ~/.kube/cache
            *argv,
        ]
        return _run(command, input=input, timeout=timeout, check=check)

    def ctr(self, *argv: str, timeout: float = 120) -> str:
        """Run containerd's `ctr` against this cluster's containerd, in the namespace the kubelet uses."""
        return _run(["ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *argv], timeout=timeout)

    def import_image(self, tar: Path) -> None:
        """Load an image archive (`docker save` format, or OCI) for pods to run with `imagePullPolicy: Never`
        (or IfNotPresent): nothing is ever pulled."""
        self.ctr("images", "import", str(tar), timeout=600)

    def api(self, path: str) -> tuple[int, bytes]:
        """GET `path` from the API server as the admin: the status and body (0 and b"" when it does not answer)."""
        if self._tls is None:
            context = ssl.create_default_context(cafile=str(self.layout.pki / "ca.crt"))
            context.load_cert_chain(str(self.layout.pki / "admin.crt"), str(self.layout.pki / "admin.key"))
            self._tls = context
        connection = http.client.HTTPSConnection(NODE_IP, APISERVER_PORT, context=self._tls, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return 0, b""
        finally:
            connection.close()

    def api_json(self, path: str) -> dict[str, Any] | None:
        """GET `path` as JSON; None unless the answer is 200."""
        status, body = self.api(path)
        return json.loads(body) if status == 200 else None

    def daemon_pid(self, name: str) -> int:
        """The PID of one of the cluster's daemons (RuntimeError when it no longer runs)."""
        self.check_daemons()
        return self._daemons[name].pid

    def rss_mib(self, name: str) -> float:
        """The resident memory of one of the cluster's daemons, in MiB."""
        for line in Path(f"/proc/{self.daemon_pid(name)}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        raise RuntimeError(f"{name} has no VmRSS")

    def wait(self, what: str, condition: Callable[[], bool], timeout: float = START_TIMEOUT_S) -> float:
        """Poll `condition` until true; the seconds it took. Fails naming `what` when the deadline passes or a
        daemon of the cluster exits meanwhile (with the end of its log)."""
        start = time.monotonic()
        while not condition():
            self.check_daemons()
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"{what}: not so after {timeout:.0f} s; the daemons' logs are in {self.layout.logs}")
            time.sleep(0.2)
        return time.monotonic() - start

    def check_daemons(self) -> None:
        """RuntimeError naming any daemon that is no longer running, with the end of its log."""
        for name, proc in self._daemons.items():
            if not procs.is_running(proc):
                tail = "\n".join(Path(proc.log).read_text(errors="replace").splitlines()[-30:])
                raise RuntimeError(f"{name} exited ({procs.exit_code(proc)}); the end of {proc.log}:\n{tail}")

    def node_ready(self) -> bool:
        """The node is registered and its Ready condition is True."""
        node = self.api_json(f"/api/v1/nodes/{NODE_NAME}")
        conditions = node.get("status", {}).get("conditions", []) if node else []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def deployment_available(self, namespace: str, name: str) -> bool:
        """The Deployment has as many available replicas as it wants (at least one)."""
        deployment = self.api_json(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        if deployment is None:
            return False
        wanted = deployment["spec"].get("replicas", 1)
        return bool(deployment["status"].get("availableReplicas", 0) >= max(wanted, 1))

    # ----- starting -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Bring the cluster up: node Ready, NetworkPolicy enforced, CoreDNS and the volume provisioner available."""
        self._prepare()
        started = time.monotonic()
        self._start_control_plane()
        self._start_node()
        self.wait("the node is Ready", self.node_ready)
        self.timings["start_to_node_ready_s"] = round(time.monotonic() - started, 1)
        self._apply_addons()  # kube-router's rights among them
        self._start_firewall()
        self.timings["start_to_firewall_s"] = round(time.monotonic() - started, 1)
        self._wait_for_addons()
        self.timings["start_to_addons_ready_s"] = round(time.monotonic() - started, 1)

    def _prepare(self) -> None:
        if len(str(self.containerd_socket)) > MAX_SOCKET_PATH:
            raise RuntimeError(
                f"the cluster's folder {self.work_dir} is too deep for a unix socket path: choose a shorter one"
            )
        if host.mounts_under(self.work_dir):
            raise RuntimeError(f"{self.work_dir} has mounts of an earlier cluster: {host.mounts_under(self.work_dir)}")
        shutil.rmtree(self.work_dir, ignore_errors=True)
        layout = self.layout
        for folder in (layout.pki, layout.logs, layout.config, layout.containerd, layout.kubelet, layout.pod_logs):
            folder.mkdir(parents=True, exist_ok=True)
        layout.volumes.mkdir()
        self.state = HostState.record(self.work_dir)
        self.state.save()
        self._recorded = True
        self._make_pki()
        self._make_network()
        for name in ("etcd_client", "etcd_peer", "controller_manager", "scheduler", "kubelet_healthz", "proxy_healthz"):
            self.ports[name] = free_port()
        self.ports["proxy_metrics"] = free_port()

    def _make_pki(self) -> None:
        folder = self.layout.pki
        ca = pki.make_ca(folder, "greeter-k8s-ca")
        pki.issue(
            ca, folder, "apiserver", user="kube-apiserver", client=False,
            server_names=("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                          f"kubernetes.default.svc.{CLUSTER_DOMAIN}", "localhost"),
            server_ips=(NODE_IP, KUBERNETES_SERVICE_IP, "127.0.0.1"),
        )  # fmt: skip
        pki.issue(
            ca, folder, "apiserver-kubelet-client", user="kube-apiserver-kubelet-client", groups=("system:masters",)
        )
        pki.issue(ca, folder, "kubelet", user=f"system:node:{NODE_NAME}", groups=("system:nodes",))
        pki.issue(
            ca,
            folder,
            "kubelet-serving",
            user=NODE_NAME,
            client=False,
            server_names=(NODE_NAME,),
            server_ips=(NODE_IP,),
        )
        pki.issue(ca, folder, "admin", user="greeter-admin", groups=("system:masters",))
        pki.issue(ca, folder, "controller-manager", user="system:kube-controller-manager")
        pki.issue(ca, folder, "scheduler", user="system:kube-scheduler")
        pki.issue(ca, folder, "kube-proxy", user="system:kube-proxy")
        pki.issue(ca, folder, "kube-router", user=KUBE_ROUTER_USER)
        pki.make_service_account_keys(folder)
        for user in ("admin", "controller-manager", "scheduler", "kubelet", "kube-proxy", "kube-router"):
            self._write_kubeconfig(user)

    def _write_kubeconfig(self, user: str) -> None:
        pki_dir = self.layout.pki
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": NODE_NAME,
                    "cluster": {
                        "server": f"https://{NODE_IP}:{APISERVER_PORT}",
                        "certificate-authority": str(pki_dir / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate": str(pki_dir / f"{user}.crt"),
                        "client-key": str(pki_dir / f"{user}.key"),
                    },
                }
            ],
            "contexts": [{"name": NODE_NAME, "context": {"cluster": NODE_NAME, "user": user}}],
            "current-context": NODE_NAME,
        }
        _write_yaml(self.layout.config / f"{user}.kubeconfig", config)

    def _make_network(self) -> None:
        """The pod bridge, made before any daemon so that the node's address exists: it carries 10.244.0.1 (the
        pods' gateway, the API server's and kubelet's address); the service network is routed onto it, so that
        an address of it that no rule translates goes nowhere."""
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        # No IPv6 on it: the cluster is IPv4 only, and the bridge would otherwise send router solicitations.
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv6/conf/{BRIDGE}/disable_ipv6").write_text("1")
        _run(["ip", "addr", "add", f"{NODE_IP}/{NODE_POD_CIDR.split('/')[1]}", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])
        _run(["ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP])
        # Pods on one bridge reach each other through a service only if the bridge's traffic passes iptables.
        if host.read_sysctl("net/bridge/bridge-nf-call-iptables") is None:
            _run(["modprobe", "br_netfilter"], check=False)
        if host.read_sysctl("net/bridge/bridge-nf-call-iptables") is None:
            raise RuntimeError("the kernel module br_netfilter is missing (modprobe br_netfilter failed)")
        Path("/proc/sys/net/bridge/bridge-nf-call-iptables").write_text("1")

    def _spawn(self, name: str, argv: list[str]) -> procs.Proc:
        proc = procs.spawn(name, argv, self.layout.logs / f"{name}.log", cwd=self.work_dir)
        self._daemons[name] = proc
        self.state.add(proc)
        return proc

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _start_control_plane(self) -> None:
        pki_dir, config = self.layout.pki, self.layout.config
        client, peer = self.ports["etcd_client"], self.ports["etcd_peer"]
        self._spawn(
            "etcd",
            [
                "etcd", "--name", NODE_NAME, "--data-dir", str(self.layout.etcd),
                "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"{NODE_NAME}=http://127.0.0.1:{peer}",
            ],
        )  # fmt: skip
        self.wait("etcd answers", lambda: _http_ok(f"http://127.0.0.1:{client}/health"))
        self._spawn(
            "kube-apiserver",
            [
                self._bin("kube-apiserver"),
                f"--bind-address={NODE_IP}", f"--advertise-address={NODE_IP}", f"--secure-port={APISERVER_PORT}",
                f"--etcd-servers=http://127.0.0.1:{client}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--client-ca-file={pki_dir / 'ca.crt'}",
                f"--tls-cert-file={pki_dir / 'apiserver.crt'}", f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
                f"--kubelet-client-certificate={pki_dir / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki_dir / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={pki_dir / 'ca.crt'}",
                # The node's address, never its name: a name would be looked up in the machine's DNS.
                "--kubelet-preferred-address-types=InternalIP",
                f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
                f"--service-account-key-file={pki_dir / 'service-account.pub'}",
                f"--service-account-signing-key-file={pki_dir / 'service-account.key'}",
                "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true", "--profiling=false",
            ],
        )  # fmt: skip
        self.wait("the API server is ready", lambda: self.api("/readyz")[0] == 200)
        common = [
            "--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false",
        ]  # fmt: skip
        cm_config = config / "controller-manager.kubeconfig"
        self._spawn(
            "kube-controller-manager",
            [
                self._bin("kube-controller-manager"), *common,
                f"--secure-port={self.ports['controller_manager']}",
                f"--kubeconfig={cm_config}", f"--authentication-kubeconfig={cm_config}",
                f"--authorization-kubeconfig={cm_config}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki_dir / 'service-account.key'}",
                f"--root-ca-file={pki_dir / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki_dir / 'ca.crt'}", f"--cluster-signing-key-file={pki_dir / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}", f"--cluster-cidr={POD_CIDR}",
                f"--cluster-name={NODE_NAME}",
            ],
        )  # fmt: skip
        scheduler_config = config / "scheduler.kubeconfig"
        self._spawn(
            "kube-scheduler",
            [
                self._bin("kube-scheduler"), *common,
                f"--secure-port={self.ports['scheduler']}",
                f"--kubeconfig={scheduler_config}", f"--authentication-kubeconfig={scheduler_config}",
                f"--authorization-kubeconfig={scheduler_config}",
            ],
        )  # fmt: skip

    def _start_node(self) -> None:
        self._write_containerd_config()
        self._write_cni_config()
        self._spawn("containerd", ["containerd", "--config", str(self.layout.config / "containerd.toml")])
        self.wait("containerd answers", self._containerd_answers)
        self._import_system_images()
        self._write_kubelet_config()
        self._spawn(
            "kubelet",
            [
                self._bin("kubelet"),
                f"--config={self.layout.config / 'kubelet.yaml'}",
                f"--kubeconfig={self.layout.config / 'kubelet.kubeconfig'}",
                f"--root-dir={self.layout.kubelet}",
                f"--cert-dir={self.layout.pki}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
            ],
        )
        self._write_proxy_config()
        self._spawn("kube-proxy", [self._bin("kube-proxy"), f"--config={self.layout.config / 'kube-proxy.yaml'}"])

    def _start_firewall(self) -> None:
        """kube-router v2.1.0's NetworkPolicy controller alone, as a daemon on the machine (as its DaemonSet would
        run it with hostNetwork): it needs the node registered, and writes iptables chains (KUBE-ROUTER-*,
        KUBE-NWPLCY-*, KUBE-POD-FW-*) and ipsets (KUBE-SRC-*, KUBE-DST-*). Its health server would listen on
        every address (it takes a port, not an address), so it is off, as are metrics; with the router off it
        runs no BGP speaker, and pprof is off by default: it listens on nothing. Ready once its top-level chains
        are hooked into FORWARD, just before its first full sync."""
        self._spawn(
            "kube-router",
            [
                self._bin("kube-router"),
                f"--kubeconfig={self.layout.config / 'kube-router.kubeconfig'}",
                "--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
                "--run-loadbalancer=false", "--enable-cni=false",
                f"--hostname-override={NODE_NAME}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--enable-ipv4=true", "--enable-ipv6=false",
                "--health-port=0", "--metrics-port=0",
            ],
        )  # fmt: skip
        self.wait("kube-router's chains are in place", _firewall_hooked)

    def _containerd_answers(self) -> bool:
        try:
            self.ctr("version", timeout=10)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def _write_containerd_config(self) -> None:
        base = self.layout.containerd
        text = f"""\
# containerd for this cluster only: its own socket, root and state; nothing under /var/lib/containerd.
version = 2
root = "{base / "root"}"
state = "{base / "state"}"

[grpc]
  address = "{self.containerd_socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{images.PAUSE}"
  # Root here lacks CAP_SYS_RESOURCE: runc cannot set the negative oom_score_adj kubelet asks for.
  restrict_oom_score_adj = true
  # Pods' network namespaces under the state folder, not /var/run/netns.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{self.layout.cni / "net.d"}"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{base / "runc"}"
"""
        (self.layout.config / "containerd.toml").write_text(text)

    def _write_cni_config(self) -> None:
        """The bridge with host-local addresses; routes to the pod and service networks only (no default
        route: a pod cannot send anywhere else); portmap for hostPort; firewall for FORWARD. loopback is
        containerd's own."""
        config = {
            "cniVersion": "1.0.0",
            "name": host.NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": NODE_POD_CIDR, "gateway": NODE_IP}]],
                        "routes": [{"dst": POD_CIDR}, {"dst": SERVICE_CIDR}],
                        "dataDir": str(self.layout.cni / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
                # Accepts the pods' forwarded traffic in iptables' FORWARD chain (CNI-FORWARD), which a Docker
                # engine's DROP policy would otherwise drop: bridged traffic passes iptables (br_netfilter).
                {"type": "firewall"},
            ],
        }
        folder = self.layout.cni / "net.d"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "10-greeter-k8s.conflist").write_text(json.dumps(config, indent=2))

    def _import_system_images(self) -> None:
        folder = self.layout.images
        tars = [
            images.binary_image(self.bin_dir / "pause", images.PAUSE, folder / "pause.tar"),
            images.binary_image(self.bin_dir / "coredns", images.COREDNS, folder / "coredns.tar"),
            images.binary_image(
                self.bin_dir / "local-path-provisioner", images.LOCAL_PATH_PROVISIONER, folder / "local-path.tar"
            ),
            images.busybox_image(folder / "busybox.tar"),
        ]
        for tar in tars:
            self.import_image(tar)
            tar.unlink()  # containerd keeps its own copy

    def _write_kubelet_config(self) -> None:
        pki_dir = self.layout.pki
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.ports["kubelet_healthz"],
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki_dir / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(pki_dir / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki_dir / "kubelet-serving.key"),
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,  # this machine has cgroup v1; kubelet 1.35 refuses it by default
            "failSwapOn": False,
            "oomScoreAdj": 0,  # -999 needs CAP_SYS_RESOURCE
            "clusterDNS": [DNS_IP],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": "",  # pods get none of the machine's name servers
            "podLogsDir": str(self.layout.pod_logs),
            "volumePluginDir": str(self.layout.kubelet / "volume-plugins"),
            "shutdownGracePeriod": "0s",
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            # A test machine's disk is often fuller than production's thresholds like; nothing is ever pulled,
            # so no image may be collected either.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
                "imagefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
        }
        _write_yaml(self.layout.config / "kubelet.yaml", config)

    def _write_proxy_config(self) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.layout.config / "kube-proxy.kubeconfig")},
            "mode": "iptables",
            "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_IP,
            "healthzBindAddress": f"127.0.0.1:{self.ports['proxy_healthz']}",
            "metricsBindAddress": f"127.0.0.1:{self.ports['proxy_metrics']}",
            "clusterCIDR": POD_CIDR,
            "nodePortAddresses": [f"{NODE_IP}/32"],
            "oomScoreAdj": 0,
            # 0: leave the machine's conntrack table size and timeouts as they are.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
        }
        _write_yaml(self.layout.config / "kube-proxy.yaml", config)

    def _apply_addons(self) -> None:
        text = string.Template(ADDONS.read_text()).substitute(
            cluster_domain=CLUSTER_DOMAIN,
            dns_ip=DNS_IP,
            coredns_image=images.COREDNS,
            local_path_image=images.LOCAL_PATH_PROVISIONER,
            helper_image=images.BUSYBOX,
            volumes_dir=str(self.layout.volumes),
            kube_router_user=KUBE_ROUTER_USER,
        )
        self.kubectl("apply", "-f", "-", input=text)

    def _wait_for_addons(self) -> None:
        self.wait(
            "the default service account exists",
            lambda: self.api("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
        )
        self.wait("CoreDNS is available", lambda: self.deployment_available("kube-system", "coredns"))
        self.wait(
            "local-path-provisioner is available",
            lambda: self.deployment_available("local-path-storage", "local-path-provisioner"),
        )

    # ----- stopping -------------------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Delete the workloads and volumes, stop every daemon by PID and put the machine back (host.clean_up).
        What it did, as notes; RuntimeError when anything of the cluster is still there afterwards."""
        if not self._recorded:
            return []  # start failed before it changed anything on the machine
        notes: list[str] = []
        if "kube-apiserver" in self._daemons and procs.is_running(self._daemons["kube-apiserver"]):
            try:
                notes += self._delete_workloads()
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                notes.append(f"deleting the workloads failed: {error}")
        order = [
            "kube-router",  # first: it would put back the chains of the pods and policies it still knows
            "kube-proxy",
            "kubelet",
            "kube-scheduler",
            "kube-controller-manager",
            "kube-apiserver",
            "containerd",
        ]
        for name in order:
            if name in self._daemons:
                notes.append(f"{name}: {procs.stop(self._daemons[name], STOP_TIMEOUT_S)}")
        notes += host.kill_containers(self.containerd_socket, self.layout.containerd / "state")
        if "etcd" in self._daemons:
            notes.append(f"etcd: {procs.stop(self._daemons['etcd'], STOP_TIMEOUT_S)}")
        notes += clean_up(self.state, self.bin_dir)
        (self.layout.logs / "teardown.log").write_text("\n".join(notes) + "\n")
        return notes

    def _delete_workloads(self) -> list[str]:
        """The workloads first, then the claims, whose volumes the provisioner removes while it still runs, then
        the cluster's own Deployments. Controllers are deleted leaving their pods (so that nothing deletes those
        with their own, often 30 s, grace period), then the pods with a second's grace. A pod is gone from the API
        once kubelet has stopped it; one that outlives the deadline is force-deleted. Ends when containerd runs
        no container and no pod network namespace is left."""
        notes = []
        system = ("kube-system", "local-path-storage")
        namespaces = self._names("/api/v1/namespaces")
        self._delete_controllers([namespace for namespace in namespaces if namespace not in system])
        notes.append(f"workload pods: {self._delete_pods(skip=system)}")
        self.kubectl("delete", "persistentvolumeclaims", "--all", "--all-namespaces", "--wait=false")
        took = self._settle("volumes gone", lambda: not self._names("/api/v1/persistentvolumes"))
        notes.append(f"volumes gone after {took:.1f} s")
        self._delete_controllers(list(system))
        notes.append(f"all pods: {self._delete_pods(skip=())}")
        notes.append(f"containers stopped after {self._settle('containers stopped', self._no_containers):.1f} s")
        return notes

    def _delete_controllers(self, namespaces: list[str]) -> None:
        kinds = "deployments,statefulsets,daemonsets,replicasets,jobs,cronjobs,replicationcontrollers"
        for namespace in namespaces:
            self.kubectl("delete", kinds, "--all", "-n", namespace, "--cascade=orphan", "--wait=false")

    def _names(self, path: str) -> list[str]:
        """The names of a list's items ("namespace/name" for namespaced objects)."""
        listing = self.api_json(path)
        if listing is None:
            raise RuntimeError(f"the API server did not list {path}")
        return [
            "/".join(filter(None, (item["metadata"].get("namespace"), item["metadata"]["name"])))
            for item in listing["items"]
        ]

    def _delete_pods(self, skip: tuple[str, ...]) -> str:
        """Delete every pod outside the `skip` namespaces with a second's grace (again while their controllers,
        being deleted, may still make new ones) until none is left; force-delete them after the deadline."""

        def delete(*flags: str) -> bool:
            by_namespace: dict[str, list[str]] = {}
            for pod in self._names("/api/v1/pods"):
                namespace, name = pod.split("/")
                if namespace not in skip:
                    by_namespace.setdefault(namespace, []).append(name)
            for namespace, names in by_namespace.items():
                self.kubectl("delete", "pods", *names, "-n", namespace, "--ignore-not-found", "--wait=false", *flags)
            return not by_namespace

        try:
            return f"gone after {self._settle('pods gone', lambda: delete('--grace-period=1')):.1f} s"
        except RuntimeError:
            delete("--force", "--grace-period=0")
            return f"force-deleted after {TEARDOWN_TIMEOUT_S:.0f} s"

    def _settle(self, what: str, condition: Callable[[], bool]) -> float:
        start = time.monotonic()
        while not condition():
            if time.monotonic() - start > TEARDOWN_TIMEOUT_S:
                raise RuntimeError(f"{what}: not after {TEARDOWN_TIMEOUT_S:.0f} s")
            time.sleep(0.5)
        return time.monotonic() - start

    def _no_containers(self) -> bool:
        running = [line for line in self.ctr("tasks", "list").splitlines()[1:] if "RUNNING" in line]
        return not running and not host.netns_under(self.work_dir)


def clean_up(state: HostState, bin_dir: Path | None) -> list[str]:
    """Put the machine back as `state` recorded it, once the daemons are stopped (by PID): leftover containers,
    iptables chains, ipsets, mounts, the bridge, sysctls, the FORWARD policy, cgroups, host files; then check that
    nothing is left, remove the bulky parts of the cluster's folder (its logs, configs and certificates stay),
    and the marker. RuntimeError listing what is left, if anything."""
    work_dir = Path(state.work_dir)
    layout = Layout(work_dir)
    socket, containerd_state = layout.containerd_socket, layout.containerd / "state"
    notes = [f"{proc.name}: {procs.stop(proc, STOP_TIMEOUT_S)}" for proc in reversed(state.running())]
    notes += host.kill_containers(socket, containerd_state)
    if bin_dir is not None and (bin_dir / "kube-proxy").exists():
        with (work_dir / "logs" / "kube-proxy-cleanup.log").open("ab") as log:
            subprocess.run([str(bin_dir / "kube-proxy"), "--cleanup"], stdout=log, stderr=log, check=False, timeout=60)
    # kube-router's chains are KUBE-* too. Its own `--cleanup-config` is not run: in v2.1.0 its NetworkPolicy
    # part does nothing (the controller it makes has no iptables or ipset handlers), then it runs `modprobe ip_vs`
    # and flushes every IPVS service of the machine, and then panics on a nil pointer (kube-router's pull request
    # #1650, after v2.1.0, gave the cleanup its handlers).
    notes += host.remove_iptables_chains()
    notes += host.remove_ipsets()  # once no rule refers to them
    notes += host.unmount_under(work_dir)
    host.remove_bridge()
    notes += host.restore_sysctls(state.sysctls)
    if host.forward_policy() != state.forward_policy:
        _run(["iptables", "-P", "FORWARD", state.forward_policy])
        notes.append(f"iptables FORWARD policy back to {state.forward_policy}")
    host.remove_cgroups()
    host.remove_host_files(work_dir, layout.containerd / "root", state.missing_dirs)
    left = host.leftovers(state, socket, containerd_state)
    if left:
        notes.append("LEFT BEHIND: " + "; ".join(left))
        raise RuntimeError("the cluster's teardown left behind: " + "; ".join(left))
    for bulky in layout.bulky():
        shutil.rmtree(bulky, ignore_errors=True)
    host.MARKER.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        host.MARKER.parent.rmdir()
    return notes


def clean_up_stale(bin_dir: Path | None) -> list[str]:
    """Clean up after a cluster whose process died without doing so (its marker is still there); refuse when
    that cluster still runs."""
    state = HostState.load()
    if state is None:
        return []
    if running := state.running():
        raise RuntimeError(
            f"a cluster of this project runs already (folder {state.work_dir}, "
            f"{', '.join(f'{p.name} pid {p.pid}' for p in running)}): stop it first"
        )
    return [f"cleaned up after the cluster in {state.work_dir}", *clean_up(state, bin_dir)]


@contextmanager
def running_cluster(work_dir: Path, bin_dir: Path | None = None) -> Iterator[Cluster]:
    """Install what is missing, start a cluster in `work_dir` (emptied first), yield it, and always tear it down."""
    bin_dir = bin_dir or install()
    for note in clean_up_stale(bin_dir):
        print(f"cluster: {note}", file=sys.stderr)
    host.preflight()
    cluster = Cluster(work_dir, bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _run(argv: list[str], *, input: str | None = None, timeout: float = 120, check: bool = True) -> str:
    result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout if check else result.stdout + result.stderr


def _firewall_hooked() -> bool:
    """kube-router's default policy chain exists and FORWARD jumps to its chain."""
    forward = subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True, text=True, check=False)
    return "-j KUBE-ROUTER-FORWARD" in forward.stdout and "KUBE-NWPLCY-DEFAULT" in host.own_chains().get("filter", [])


def _http_ok(url: str) -> bool:
    from urllib.error import URLError
    from urllib.request import urlopen

    try:
        with urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (URLError, OSError):
        return False


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
