"""The limits benchmark at its smallest, end to end: the protocol floor beside the Dispatcher, and Kafka's own
tools against a broker of its own. Keeps the benchmark working; its figures at this size mean nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import limits
from stack.config import HOST
from stack.readiness import port_free

pytestmark = pytest.mark.e2e

RECORDS = 3000


@pytest.mark.timeout(120)
def test_the_floor_does_the_dispatchers_job_and_kafka_moves_every_record(tmp_path: Path) -> None:
    out = tmp_path / "limits.json"

    code = limits.main(["--records", str(RECORDS), "--seconds", "0.05", "--rounds", "1", "--out", str(out)])

    result = json.loads(out.read_text())
    assert code == 0
    assert result["machine"]["protobuf_backend"] == "upb"
    floor = result["protobuf"]
    said = {"greetings": ["Nice to see you at the 4-nth time alice!"], "seen_count": [4]}
    assert floor["floor_reply"] == floor["dispatcher_reply"] == said
    # Speed is the benchmark's to report, not a test's to assert: both were timed, nothing more.
    assert len(floor["rounds_us"]["floor"]) == len(floor["rounds_us"]["dispatcher"]) >= 1
    assert floor["floor_us"] > 0 and floor["dispatcher_us"] > 0
    kafka = result["kafka"]
    assert kafka["partitions"] == 4
    assert 10 <= kafka["record_bytes"]["names"] < kafka["record_bytes"]["greetings"] <= 100
    produced = [(m["topic"], m["transactional"], m["records"]) for m in kafka["produce"]]
    assert produced == [
        ("limits-names-idempotent", False, RECORDS),
        ("limits-names-transactional", True, RECORDS),
        ("limits-greetings-idempotent", False, RECORDS),
        ("limits-greetings-transactional", True, RECORDS),
    ]
    assert [(m["topic"], m["records"]) for m in kafka["consume"]] == [(topic, RECORDS) for topic, _, _ in produced]
    for measure in kafka["produce"] + kafka["consume"]:
        assert measure["records_per_s"] > 0
        assert measure["mb_per_s"] > 0
    port = int(kafka["bootstrap_servers"].rsplit(":", 1)[1])
    assert port_free(HOST, port), "the broker still listens"
