"""Poison records produced into `names` mid-run: dead-lettered with their reasons, the job never fails."""

from __future__ import annotations

import uuid

import pytest

from consumer.stored_names import dead_letter_problems
from protos.generated.greeter_pb2 import DeadLetter, DeadLetterReason, GreetRequest, GreetResponse
from stack.local import LocalStack

from .kafka_io import Record, produce, read, read_greetings, requests, stored_names, unique_names

pytestmark = pytest.mark.e2e

PER_NAME = 10


def poison_corpus(token: str) -> dict[bytes, tuple[bytes, int]]:
    """key -> (value, expected reason); each key unique to this run."""
    long_name = f"{token}-" + "x" * 61_440  # 60 KiB: fits the topic, over the greeter's name bound
    return {
        f"bad-protobuf-{token}".encode(): (b"\xff\xff\xff\xff", DeadLetterReason.UNDECODABLE),
        f"bad-utf8-{token}".encode(): (b"\x0a\x03Ad\xff", DeadLetterReason.INVALID_UTF8),
        f"empty-name-{token}".encode(): (GreetRequest(name="").SerializeToString(), DeadLetterReason.EMPTY_NAME),
        long_name.encode(): (GreetRequest(name=long_name).SerializeToString(), DeadLetterReason.NAME_TOO_LONG),
        f"mismatch-{token}".encode(): (
            GreetRequest(name="somebody").SerializeToString(),
            DeadLetterReason.NAME_MISMATCH,
        ),
        f"layout-{token}".encode(): (
            GreetResponse(name=f"layout-{token}", greeting="hi").SerializeToString(),
            DeadLetterReason.UNDECODABLE,
        ),
    }


def one_letter_per_poison_record(letters: list[Record], poison: dict[bytes, tuple[bytes, int]]) -> list[DeadLetter]:
    """Assert that `letters` (read from names-dlq) are one per record of `poison`, keyed by its key, with the
    expected reason and the original bytes; the decoded letters, in the order read."""
    assert sorted(r.key for r in letters) == sorted(poison), "one dead letter per poison record, keyed by its key"
    decoded = []
    for record in letters:
        letter = DeadLetter.FromString(record.value)
        value, reason = poison[record.key]
        assert DeadLetterReason.Name(letter.reason) == DeadLetterReason.Name(reason), letter.detail
        assert letter.value == value, "the original bytes are kept"
        decoded.append(letter)
    return decoded


@pytest.mark.timeout(600)
def test_poison_is_dead_lettered_and_good_records_keep_flowing(stack: LocalStack) -> None:
    bootstrap = stack.config.bootstrap_servers
    failures_before = stack.failure_count()
    names = unique_names(20)
    poison = poison_corpus(uuid.uuid4().hex[:8])

    produce(bootstrap, "names", requests(names, PER_NAME // 2))
    produce(bootstrap, "names", [(key, value) for key, (value, _reason) in poison.items()])
    produce(bootstrap, "names", requests(names, PER_NAME - PER_NAME // 2))

    report = read_greetings(bootstrap, names, PER_NAME, settle_s=3 * stack.config.checkpoint_interval_ms / 1000)
    assert report.ok, "\n".join(report.summary())

    letters = read(bootstrap, "names-dlq", set(poison), len(poison), deadline_s=60, settle_s=2)
    # Each poison record of `names` as stored has exactly one dead letter with its bytes, and nothing else.
    expected_letters = stored_names(bootstrap, set(poison)).dead_letters
    assert expected_letters.total() == len(poison), "the greeter's validation judges every corpus record poison"
    assert dead_letter_problems(expected_letters, [r.value for r in letters]) == []
    for record, letter in zip(letters, one_letter_per_poison_record(letters, poison), strict=True):
        assert letter.value_typename == "type.googleapis.com/example.GreetRequest"
        assert letter.address_id.encode() == record.key
        assert letter.detail

    # No greeting for any poison key, and the job never failed because of them.
    assert not read(bootstrap, "greetings", set(poison), 1, deadline_s=5, settle_s=0)
    assert stack.failure_count() == failures_before, "the job failed while the poison records went through"
