"""`greeter-consumer` on the real stack: `latency` times every greeting of a request produced while it runs,
from the request's timestamp on `names` to the moment the greeting is read under read_committed; `verify
--from-names` passes a pipeline that did its job (greetings and dead letters), and so does the contract's flat
line that external checks use; `tail` prints the greetings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from greeter.function.greeting import compute_greeting
from stack.local import LocalStack

from .kafka_io import produce, read, read_greetings, requests, unique_names

pytestmark = pytest.mark.e2e

NAMES = 20
ROUNDS = 10
# The installed entry point, as external checks run it.
GREETER_CONSUMER = str(Path(sys.executable).with_name("greeter-consumer"))


@pytest.mark.timeout(180)
def test_latency_is_reported_for_every_greeting_of_a_new_request(stack: LocalStack) -> None:
    bootstrap = stack.config.bootstrap_servers
    consumer = subprocess.Popen(  # the Kafka flags before the subcommand, as greeter-stack --with-consumer puts them
        # Ended by the test's SIGTERM: a --duration a loaded machine could outrun (60 s was, in a cold CI run, while
        # Kubernetes built beside it) would print the summary into the loop below that reads the running lines.
        [sys.executable, "-m", "consumer", "--bootstrap-servers", bootstrap, "latency", "--duration", "600"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert consumer.stderr is not None
        started = consumer.stderr.readline()
        # It counts what `names` already holds (other tests' requests) before it times anything.
        assert "requests stored before the start counted; timing the new ones" in started, started
        time.sleep(1)  # then it opens `greetings` at its end
        names = unique_names(NAMES)
        for _ in range(ROUNDS):  # a trickle over ~5 s, not one burst
            produce(bootstrap, "names", requests(names, 1))
            time.sleep(0.5)
        # Once every greeting is committed, the consumer sees them in its next polls: two more running lines.
        committed = read_greetings(bootstrap, names, ROUNDS, settle_s=0.0, deadline_s=90)
        assert committed.ok, committed.summary()
        deadline = time.monotonic() + 60
        running_lines = []
        while time.monotonic() < deadline and len(running_lines) < 2:
            line = consumer.stderr.readline()
            if not line:
                break  # it exited early: the assertions below show what it printed
            if line.startswith("consumer: latency, last"):
                running_lines.append(line)
        consumer.terminate()  # SIGTERM: stops reading and prints the summary
        rest = consumer.communicate(timeout=30)[1]
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    assert running_lines, "no running latency line on stderr"
    summary = re.search(r"latency, produce to visible under read_committed: (\d+) greetings: p50 ([\d.]+) s", rest)
    assert summary is not None, rest
    assert int(summary.group(1)) == NAMES * ROUNDS, rest  # every new request's greeting was timed
    assert 0 < float(summary.group(2)) < 60, rest


def _greeter_consumer(bootstrap: str, *argv: str) -> subprocess.CompletedProcess[str]:
    command = [GREETER_CONSUMER, "--bootstrap-servers", bootstrap, *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.mark.timeout(420)
def test_verify_tail_and_the_flat_contract_on_a_pipeline_that_did_its_job(stack: LocalStack) -> None:
    bootstrap = stack.config.bootstrap_servers
    names = unique_names(10)
    poison_key = f"bad-protobuf-{uuid.uuid4().hex[:8]}".encode()
    produce(bootstrap, "names", requests(names, 2))
    produce(bootstrap, "names", [(poison_key, b"\xff\xff\xff\xff")])
    produce(bootstrap, "names", requests(names, 1))
    committed = read_greetings(bootstrap, names, 3, settle_s=0.0)
    assert committed.ok, committed.summary()
    assert read(bootstrap, "names-dlq", {poison_key}, 1, deadline_s=60, settle_s=0), "no dead letter yet"

    # `names` holds every test's requests so far: the whole topic must check out, dead letters included.
    verified = _greeter_consumer(bootstrap, "verify", "--from-names", "--settle", "2", "--timeout", "120")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("verify: OK: "), verified.stdout
    assert re.search(r"^dead letters: OK: [1-9]\d* expected$", verified.stdout, re.MULTILINE), verified.stdout
    assert "deprecated" not in verified.stderr
    assert "ended by --settle" in verified.stderr, verified.stderr

    # The contract's flat line, as external checks run it: an alias of verify --from-names, the same verdict.
    flat = _greeter_consumer(bootstrap, "--from-beginning", "--verify", "--expect-from-names", "--timeout", "120")
    assert flat.returncode == 0, flat.stdout + flat.stderr
    assert flat.stdout.startswith("verify: OK: "), flat.stdout
    assert re.search(r"^dead letters: OK: [1-9]\d* expected$", flat.stdout, re.MULTILINE), flat.stdout
    assert "deprecated" not in flat.stderr

    # tail prints every greeting, these names' in their order.
    tailed = _greeter_consumer(bootstrap, "tail", "--from-beginning", "--json", "--timeout", "5")
    assert tailed.returncode == 0, tailed.stderr
    lines = [json.loads(line) for line in tailed.stdout.splitlines()]
    ours = [(line["name"], line["greeting"]) for line in lines if line["name"] in set(names)]
    assert len(ours) == 3 * len(names)
    for name in names:
        assert [greeting for who, greeting in ours if who == name] == [compute_greeting(name, n) for n in (1, 2, 3)]
    assert "deprecated" not in tailed.stderr
