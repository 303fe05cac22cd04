"""Raw-socket clients for tests/http/test_hostile.py: hostile ones that hold a connection their own way, a
well-behaved one that keeps asking while they do, and what /proc shows of the server's workers.

Every loop here is bounded by a count or a deadline; every time is time.monotonic().
"""

import contextlib
import http.client
import os
import resource
import selectors
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from statefun.request_reply_pb2 import FromFunction

from certs.tls import CertFiles
from greeter.protocol.messages import build_request, kafka_records, typed_value
from greeter.web.metrics import MULTIPROC_DIR_VARIABLE
from tests.http.test_tls import TlsServer, tls_env, wait_ready
from tests.protocol.messages import greet, greetings
from tests.support.net import free_port
from tests.support.processes import popen_logged, stop_process
from tests.support.waiting import wait_for

SERVE = Path(sys.executable).with_name("greeter-serve")
HOST = "127.0.0.1"
SEEN_COUNT = "type.googleapis.com/example.SeenCount"

# A plan: (seconds after the connect, bytes) pairs, in order. A hostile client sends each at its time.
Plan = Iterable[tuple[float, bytes]]


def head(*lines: str) -> bytes:
    """A request head: the lines, each ended by CRLF, and the empty line."""
    return "".join(line + "\r\n" for line in lines).encode() + b"\r\n"


def at_once(data: bytes) -> Plan:
    return [(0.0, data)]


def trickle(data: bytes, every: float, chunk: int = 1) -> Plan:
    """`chunk` bytes of `data` every `every` seconds, the first at once."""
    return [(i / chunk * every, data[i : i + chunk]) for i in range(0, len(data), chunk)]


@dataclass
class Outcome:
    """What one hostile connection saw. Times are seconds from its first byte sent (its connect if none was)."""

    connected_at: float
    first_byte_at: float | None = None
    answered_at: float | None = None  # first byte of the server's answer
    closed_at: float | None = None  # the server's FIN or RST
    ended: str = "open"  # "eof", "reset", or "open" (still open when the client gave up)
    sent: int = 0
    send_failed: bool = False  # a send met EPIPE/ECONNRESET: the server had closed
    received: bytes = b""

    @property
    def start(self) -> float:
        return self.first_byte_at if self.first_byte_at is not None else self.connected_at

    @property
    def status(self) -> int | None:
        if not self.received.startswith(b"HTTP/1."):
            return None
        return int(self.received.split(b" ", 2)[1])

    @property
    def answered_after(self) -> float | None:
        return None if self.answered_at is None else self.answered_at - self.start

    @property
    def closed_after(self) -> float | None:
        return None if self.closed_at is None else self.closed_at - self.start

    def header(self, name: str) -> str | None:
        head_text = self.received.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        for line in head_text.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    def describe(self) -> str:
        answered = "no answer" if self.answered_after is None else f"answered after {self.answered_after:.2f} s"
        closed = "not closed" if self.closed_after is None else f"{self.ended} after {self.closed_after:.2f} s"
        return f"status {self.status}, {answered}, {closed}, {self.sent} bytes sent, {self.received[:120]!r}"


def _read(sock: socket.socket, outcome: Outcome) -> None:
    """One read: record the answer's bytes, or the close."""
    try:
        data = sock.recv(65536)
    except (BlockingIOError, InterruptedError):
        return
    except ConnectionResetError:
        outcome.closed_at, outcome.ended = time.monotonic(), "reset"
        return
    if not data:
        outcome.closed_at, outcome.ended = time.monotonic(), "eof"
        return
    if outcome.answered_at is None:
        outcome.answered_at = time.monotonic()
    if len(outcome.received) < 1 << 20:
        outcome.received += data


def exchange(port: int, plan: Plan, *, within: float, keep_sending: bool = False) -> Outcome:
    """Connect, send `plan` on its schedule while reading, until the server closes or `within` seconds pass.

    The socket is non-blocking: a server that stops reading cannot block the client, and the answer is read
    while the rest of the plan is still being written. With keep_sending=False the client stops sending once
    an answer arrives (a real client would); with True it goes on until the server closes.
    """
    items = iter(plan)
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.setblocking(False)
    outcome = Outcome(connected_at=time.monotonic())
    give_up = outcome.connected_at + within
    pending = b""
    due: tuple[float, bytes] | None = next(items, None)
    try:
        while outcome.closed_at is None:
            now = time.monotonic()
            if now >= give_up:
                break
            if not pending and due is not None and now >= outcome.connected_at + due[0]:
                pending, due = due[1], next(items, None)
            stop_sending = outcome.send_failed or (outcome.answered_at is not None and not keep_sending)
            want_write = bool(pending) and not stop_sending
            wake = give_up
            if not pending and due is not None and not stop_sending:
                wake = min(wake, outcome.connected_at + due[0])
            readable, writable = select_one(sock, want_write, max(0.0, wake - now))
            if readable:
                _read(sock, outcome)
            if writable and outcome.closed_at is None:
                try:
                    written = sock.send(pending[: 1 << 20])
                except (BlockingIOError, InterruptedError):
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    outcome.send_failed, pending = True, b""
                    continue
                if outcome.first_byte_at is None:
                    outcome.first_byte_at = time.monotonic()
                outcome.sent += written
                pending = pending[written:]
    finally:
        sock.close()
    return outcome


def select_one(sock: socket.socket, want_write: bool, timeout: float) -> tuple[bool, bool]:
    with selectors.DefaultSelector() as selector:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
        selector.register(sock, events)
        ready = selector.select(timeout)
    mask = ready[0][1] if ready else 0
    return bool(mask & selectors.EVENT_READ), bool(mask & selectors.EVENT_WRITE)


def in_threads(calls: list[Callable[[], Outcome]]) -> list[Outcome]:
    """Run the hostile clients side by side; their outcomes in the order given."""
    results: list[Outcome | BaseException | None] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as error:  # handed to the caller below
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    outcomes = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        assert result is not None, "a hostile client did not finish within 60 s"
        outcomes.append(result)
    return outcomes


def open_idle(port: int, count: int) -> list[tuple[socket.socket, Outcome]]:
    """`count` connections that send nothing."""
    opened: list[tuple[socket.socket, Outcome]] = []
    try:
        for _ in range(count):
            sock = socket.create_connection((HOST, port), timeout=5)
            opened.append((sock, Outcome(connected_at=time.monotonic())))
            sock.setblocking(False)
    except BaseException:
        close_all(opened)
        raise
    return opened


def await_closes(opened: list[tuple[socket.socket, Outcome]], within: float) -> list[Outcome]:
    """Read every connection until the server closes it or `within` seconds pass; then close them all."""
    give_up = time.monotonic() + within
    with selectors.DefaultSelector() as selector:
        for sock, outcome in opened:
            selector.register(sock, selectors.EVENT_READ, outcome)
        remaining = len(opened)
        while remaining and (now := time.monotonic()) < give_up:
            for key, _ in selector.select(give_up - now):
                outcome = key.data
                _read(key.fileobj, outcome)  # type: ignore[arg-type]
                if outcome.closed_at is not None:
                    selector.unregister(key.fileobj)
                    remaining -= 1
    close_all(opened)
    return [outcome for _, outcome in opened]


def close_all(opened: list[tuple[socket.socket, Outcome]]) -> None:
    for sock, _ in opened:
        sock.close()


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def client_hello() -> bytes:
    """The first flight of a real TLS client: its ClientHello record."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="greeter")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16", hello[:16]  # a handshake record
    return hello


# The well-behaved client


def greeting_request(name: str) -> bytes:
    """A first-time greeting for `name`, with the (empty) state the function needs: answered in one round trip."""
    return build_request("example/greeter", name, [greet(name)], {"seen_count": typed_value(SEEN_COUNT, None)})


def check_greeting(status: int, content_type: str | None, body: bytes, name: str) -> None:
    assert (status, content_type) == (200, "application/octet-stream"), (status, content_type, body[:200])
    assert greetings(kafka_records(FromFunction.FromString(body))) == [(name, f"Welcome {name}")]


def greet_over(connection: http.client.HTTPConnection, name: str) -> None:
    """POST /statefun on a fresh connection and check the greeting it answers."""
    try:
        connection.request("POST", "/statefun", greeting_request(name), {"Content-Type": "application/octet-stream"})
        response = connection.getresponse()
        check_greeting(response.status, response.getheader("Content-Type"), response.read(), name)
    finally:
        connection.close()


@dataclass
class GoodClient:
    """Asks again and again, a fresh connection each time, from its own thread, until stopped."""

    ask: Callable[[int], None]  # one request, raising on a wrong answer; the argument numbers the requests
    pause: float = 0.02
    max_requests: int = 5000
    max_seconds: float = 60.0
    served: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of each good answer
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        give_up = time.monotonic() + self.max_seconds
        for number in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() > give_up:
                return
            started = time.monotonic()
            try:
                self.ask(number)
            except Exception as error:  # every failure is reported by the test
                self.failures.append(f"request {number} at {started:.2f}: {type(error).__name__}: {error}")
            else:
                self.served.append((started, time.monotonic()))
            self._stop.wait(self.pause)

    def __enter__(self) -> "GoodClient":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            assert not self._thread.is_alive(), "the good client hangs"

    def served_between(self, start: float, end: float) -> int:
        """Requests both begun and answered in [start, end]."""
        return sum(1 for begun, done in self.served if start <= begun and done <= end)

    @property
    def slowest(self) -> float:
        return max((done - begun for begun, done in self.served), default=0.0)

    def summary(self) -> str:
        return f"{len(self.served)} served (slowest {self.slowest:.3f} s), {len(self.failures)} failed"

    def await_served(self, more: int = 1, within: float = 30.0) -> None:
        """Return once `more` requests beyond those answered so far have been answered, or as soon as one failed
        (`check` reports it). AssertionError when neither happens within `within` seconds."""
        target = len(self.served) + more
        wait_for(f"{more} more good answers", lambda: len(self.served) >= target or bool(self.failures), within, 0.01)

    def check(self, at_least: int = 1) -> None:
        assert not self.failures, "\n".join(self.failures[:10])
        assert len(self.served) >= at_least, self.summary()


def plain_good_client(port: int) -> GoodClient:
    return GoodClient(lambda n: greet_over(http.client.HTTPConnection(HOST, port, timeout=5), f"good-{n}"))


def tls_good_client(port: int, context: ssl.SSLContext) -> GoodClient:
    return GoodClient(
        lambda n: greet_over(http.client.HTTPSConnection(HOST, port, timeout=5, context=context), f"good-{n}")
    )


def get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


# The server's processes, as /proc shows them


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def workers(master: int, expected: int, within: float = 20.0) -> list[int]:
    """The master's worker PIDs, once all `expected` are up."""
    give_up = time.monotonic() + within
    while len(found := children(master)) < expected and time.monotonic() < give_up:
        time.sleep(0.1)
    assert len(found) == expected, f"gunicorn {master} has workers {found}, expected {expected}"
    return found


def sockets(pid: int) -> int:
    """How many sockets process `pid` holds open."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd).startswith("socket:")
    return count


def connections(pid: int, port: int) -> int:
    """How many TCP connections to local `port` process `pid` holds open (by socket inode in /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], fields[9]
            held += local_port == port and state != "0A" and inode in inodes  # 0A: LISTEN
    return held


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@contextlib.contextmanager
def rss_peak(pids: list[int]) -> Iterator[dict[int, int]]:
    """Sample the processes' RSS every 5 ms meanwhile; the dict ends up holding each one's growth in KiB."""
    base = {pid: rss_kib(pid) for pid in pids}
    peak = dict(base)
    stop = threading.Event()

    def sample() -> None:
        for _ in range(20_000):  # 100 s at most
            if stop.is_set():
                return
            for pid in pids:
                peak[pid] = max(peak[pid], rss_kib(pid))
            stop.wait(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    growth: dict[int, int] = {}
    try:
        yield growth
    finally:
        stop.set()
        thread.join(timeout=5)
        growth.update({pid: peak[pid] - base[pid] for pid in pids})


class Watch:
    """A server's health across one test: same workers at the end, and no traceback logged meanwhile."""

    def __init__(self, master: int, log: Path, expected_workers: int) -> None:
        self.master, self.log = master, log
        self.workers = workers(master, expected_workers)
        self.offset = log.stat().st_size

    def new_log(self) -> str:
        with self.log.open("rb") as handle:
            handle.seek(self.offset)
            return handle.read().decode(errors="replace")

    def check(self) -> None:
        text = self.new_log()
        assert "Traceback" not in text, text
        assert "WORKER TIMEOUT" not in text and "Booting worker" not in text, text
        assert children(self.master) == self.workers, f"workers were {self.workers}, now {children(self.master)}"


def raise_fd_limit(needed: int) -> None:
    """Raise this process's soft limit on open files towards the hard one (servers started later inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = hard if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    assert soft == resource.RLIM_INFINITY or soft >= needed, f"open files limited to {soft}, {needed} needed"


def start_tls(run: Path, certs: CertFiles, workers: int, **env: str) -> TlsServer:
    port = free_port()
    log = run / "greeter.log"
    process = popen_logged(
        [str(SERVE), "--bind", f"{HOST}:{port}", "--workers", str(workers)],
        log,
        {**os.environ, MULTIPROC_DIR_VARIABLE: str(run / "metrics"), **tls_env(certs), **env},
    )
    server = TlsServer(process, port, log, certs)
    try:
        wait_ready(server)
    except BaseException:
        stop_tls(server)
        raise
    return server


def stop_tls(server: TlsServer) -> None:
    stop_process(server.process)
