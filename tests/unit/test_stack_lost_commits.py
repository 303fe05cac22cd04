"""`greeter-stack status` reports a completed checkpoint's transaction the runtime could not commit after a restore
(the broker had aborted it at its timeout): from the runtime's own log lines, as Flink 1.16.2 writes them (copied
from a TaskManager log of tests/faults/test_kafka_timeouts.py)."""

from pathlib import Path

from stack.config import StackConfig
from stack.logs import LostCommit, LostCommitScanner, RetryCounter, delivery_retries, lost_commits
from stack.status import StackStatus, format_status

TXN = "KafkaTransactionState [transactionalId=feedback-union -> functions -> Sink: example-greets-egress-be0146a9481fb47da7328992b4e31e7b-{n}, producerId={producer}, epoch={epoch}]"  # noqa: E501
FENCED = (
    "{at} WARN  org.apache.flink.streaming.connectors.kafka.FlinkKafkaProducer [] - Unable to commit recovered "
    "transaction ({txn}) because its producer is already fenced. This means that you either have a different "
    "producer with the same 'transactional.id' or recovery took longer than 'transaction.timeout.ms' (15000ms). In "
    "both cases this most likely signals data loss, please consult the Flink documentation for more details.\n"
    "org.apache.kafka.common.errors.ProducerFencedException: There is a newer producer with the same transactionalId "
    "which fences the current one.\n"
)
# What most restores log: the restored checkpoint's transaction had been committed before the failure.
INVALID_STATE = (
    "{at} WARN  org.apache.flink.streaming.connectors.kafka.FlinkKafkaProducer [] - Unable to commit recovered "
    "transaction ({txn}) because it's in an invalid state. Most likely the transaction has been aborted for some "
    "reason. Please check the Kafka logs for more details.\n"
)


def _line(template: str, at: str, n: int, producer: int, epoch: int) -> str:
    return template.format(at=at, txn=TXN.format(n=n, producer=producer, epoch=epoch))


def test_only_a_fenced_recovered_commit_is_a_lost_transaction_in_every_task_log(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path, mode="cluster", parallelism=2)
    (tmp_path / "taskmanager.log").write_text(
        _line(INVALID_STATE, "2026-12-07 18:10:13,194", 4, 8, 1) + _line(FENCED, "2026-12-07 18:29:26,710", 0, 20, 1)
    )
    (tmp_path / "taskmanager-2.log").write_text(_line(FENCED, "2026-12-07 18:20:01,001", 3, 7, 2))
    (tmp_path / "kafka.log").write_text(_line(FENCED, "2026-12-07 18:00:00,000", 1, 1, 1))  # not a task log
    prefix = "feedback-union -> functions -> Sink: example-greets-egress-be0146a9481fb47da7328992b4e31e7b-"
    assert lost_commits(config) == [
        LostCommit("2026-12-07 18:20:01,001", prefix + "3", 7, 2),
        LostCommit("2026-12-07 18:29:26,710", prefix + "0", 20, 1),
    ]


def test_a_kept_scanner_reads_only_what_the_logs_gained_and_a_line_once_complete(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path)  # single mode: the runtime's log is the task log
    log = tmp_path / "runtime.log"
    first = _line(FENCED, "2026-12-07 18:20:01,001", 3, 7, 2)
    second = _line(FENCED, "2026-12-07 18:29:26,710", 0, 20, 1)
    log.write_text(first + second[:60])  # the second line half written
    scanner = LostCommitScanner()
    assert [lost.producer_id for lost in scanner.scan(config)] == [7]
    with log.open("a") as handle:
        handle.write(second[60:])
    assert [lost.producer_id for lost in scanner.scan(config)] == [7, 20]
    assert [lost.producer_id for lost in scanner.scan(config)] == [7, 20], "nothing found twice"
    log.write_text(second)  # truncated and written anew (a --fresh start)
    assert [lost.producer_id for lost in scanner.scan(config)] == [20]


def test_no_task_log_no_lost_transaction(tmp_path: Path) -> None:
    assert lost_commits(StackConfig(run_dir=tmp_path)) == []


def test_status_names_each_lost_transaction_with_its_time() -> None:
    lost = LostCommit("2026-12-07 18:29:26,710", "t-0", 20, 1)
    status = StackStatus("/run", (), [], None, None, None, None, None, [], lost_commits=(lost,))
    line = next(line for line in format_status(status).splitlines() if line.startswith("LOST"))
    assert "2026-12-07 18:29:26,710" in line and "producer 20, epoch 1" in line
    assert "greetings are lost" in line and "transactionTimeout" in line


def test_a_kept_retry_counter_counts_each_retry_once(tmp_path: Path) -> None:
    config = StackConfig(run_dir=tmp_path)
    log = tmp_path / "runtime.log"
    retry = "2026-12-07 22:47:45,749 INFO  NettyRequest [] - Retry #{n} ToFunctionRequestSummary(...)\n"
    log.write_text(retry.format(n=1) + retry.format(n=2))
    counter = RetryCounter()
    assert counter.count(config) == 2
    with log.open("a") as handle:
        handle.write(retry.format(n=3))
    assert counter.count(config) == 3 == delivery_retries(config)
