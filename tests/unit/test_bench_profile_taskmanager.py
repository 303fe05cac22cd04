"""bench/profile_taskmanager.py's reading of JFR samples: which component and thread a sample counts for."""

from typing import Any

import pytest

from bench.profile_taskmanager import component, duration_ms, frames, thread_group


def sample(thread: str, *classes: str) -> dict[str, Any]:
    """An execution sample as `jfr print --json` writes it, innermost frame first, classes with slashes."""
    stack = [{"method": {"type": {"name": name.replace(".", "/")}, "name": "run"}} for name in classes]
    return {"values": {"sampledThread": {"javaName": thread}, "stackTrace": {"frames": stack}}}


def test_frames_read_as_class_and_method_innermost_first() -> None:
    found = frames(sample("t", "java.util.HashMap", "org.rocksdb.RocksDB"))
    assert found == ["java.util.HashMap.run", "org.rocksdb.RocksDB.run"]


@pytest.mark.parametrize(
    ("classes", "expected"),
    [
        (("java.util.HashMap", "org.rocksdb.RocksDB", "org.apache.flink.statefun.flink.core.functions.X"), "RocksDB"),
        (("org.apache.flink.statefun.sdk.shaded.com.google.protobuf.CodedOutputStream",), "protobuf"),
        (("org.apache.flink.statefun.flink.core.nettyclient.NettyClient",), "HTTP to the greeter"),
        (("org.apache.kafka.clients.producer.KafkaProducer",), "Kafka client: producer"),
        (("org.apache.flink.statefun.flink.core.functions.Reductions",), "StateFun"),
        (("java.lang.Thread",), "the JDK only"),
    ],
)
def test_the_innermost_known_frame_names_the_component(classes: tuple[str, ...], expected: str) -> None:
    assert component(frames(sample("t", *classes))).startswith(expected)


@pytest.mark.parametrize(
    ("thread", "expected"),
    [
        ("Kafka Fetcher for Source: example-names-ingress (1/1)#0", "Kafka consumer thread"),
        ("Legacy Source Thread - Source: example-names-ingress -> router (names) (1/1)#0", "the ingress's source"),
        ("feedback-union -> functions -> example-greetings-egress (1/1)#0", "the task threads"),
        ("netty-http-worker", "HTTP client threads"),
        ("kafka-producer-network-thread | producer-3", "Kafka producer I/O threads"),
        ("something else", "other threads"),
    ],
)
def test_threads_are_grouped_by_what_they_serve(thread: str, expected: str) -> None:
    assert thread_group(sample(thread, "java.lang.Thread")).startswith(expected)


def test_jfr_durations_are_read_in_milliseconds() -> None:
    assert duration_ms("PT0.012345S") == pytest.approx(12.345)
    assert duration_ms("PT1M2.5S") == pytest.approx(62_500)
