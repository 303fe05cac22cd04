"""`up` creates the stack's topics through librdkafka's admin client: a request librdkafka dropped with its
connection (seen once on three brokers just started) is asked again; any other refusal is one clear error."""

from concurrent.futures import Future
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from stack import kafka
from stack.config import StackConfig


class Admin:
    """An admin client whose create_topics answers each topic with the next of `answers` (None: created)."""

    def __init__(self, answers: list[int | None]) -> None:
        self.answers = answers
        self.created: set[str] = set()
        self.asked: list[list[str]] = []

    def list_topics(self, timeout: float) -> SimpleNamespace:
        return SimpleNamespace(topics=dict.fromkeys(self.created))

    def create_topics(self, topics: list[NewTopic], request_timeout: float) -> dict[str, Future[None]]:
        self.asked.append([t.topic for t in topics])
        answer = self.answers.pop(0)
        futures = {}
        for topic in topics:
            future: Future[None] = Future()
            if answer is None:
                self.created.add(topic.topic)
                future.set_result(None)
            else:
                future.set_exception(KafkaException(KafkaError(answer)))
            futures[topic.topic] = future
        return futures


def test_a_request_dropped_with_its_connection_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    client = Admin([KafkaError._DESTROY_BROKER, None])
    monkeypatch.setattr(kafka, "admin", lambda config: client)
    kafka.ensure_topics(StackConfig(), ["names", "greetings"])
    assert client.asked == [["names", "greetings"]] * 2 and client.created == {"names", "greetings"}


def test_dropped_every_time_is_an_error_naming_the_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    client = Admin([KafkaError._DESTROY_BROKER] * 3)
    monkeypatch.setattr(kafka, "admin", lambda config: client)
    with pytest.raises(RuntimeError, match="creating topic 'names' failed"):
        kafka.ensure_topics(StackConfig(), ["names"])
    assert len(client.asked) == 3


def test_a_refusal_is_not_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    client = Admin([KafkaError.INVALID_REPLICATION_FACTOR])
    monkeypatch.setattr(kafka, "admin", lambda config: client)
    with pytest.raises(RuntimeError, match="INVALID_REPLICATION_FACTOR"):
        kafka.ensure_topics(StackConfig(), ["names"])
    assert len(client.asked) == 1


def test_existing_topics_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    client = Admin([])
    client.created = {"names"}
    monkeypatch.setattr(kafka, "admin", lambda config: client)
    kafka.ensure_topics(StackConfig(), ["names"])
    assert client.asked == []
