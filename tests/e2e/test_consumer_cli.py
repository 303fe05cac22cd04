"""`greeter-consumer --latency` on the real stack: every greeting of a request produced while it runs is timed
from the request's timestamp on `names` to the moment the greeting is read under read_committed."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from stack.local import LocalStack

from .kafka_io import produce, read_greetings, requests, unique_names

pytestmark = pytest.mark.e2e

NAMES = 20
ROUNDS = 10


@pytest.mark.timeout(180)
def test_latency_is_reported_for_every_greeting_of_a_new_request(stack: LocalStack) -> None:
    bootstrap = stack.config.bootstrap_servers
    consumer = subprocess.Popen(
        [sys.executable, "-m", "consumer", "--bootstrap-servers", bootstrap, "--latency", "--duration", "60"],
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
