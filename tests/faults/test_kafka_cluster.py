"""Kafka's own failures on three brokers (`--brokers 3`: one KRaft quorum of three combined nodes, every topic and
the transaction log at replication factor 3 with min.insync.replicas 2), each under the scenario's load and each
exact under read_committed. One stack for the module, the faults in sequence, each started on a healthy cluster
(every broker up, every replica in sync) and leaving one: the egress's transaction coordinator, the active
controller and a `names` leader killed with -9, a rolling restart, two brokers of three down together, and the
egress's transaction coordinator cut off from the other brokers by a network partition. Each broker runs in a
cgroup of its own (the stack's broker_cgroup), by which iptables tells its traffic from the clients'.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from stack import brokers, kafka, procs
from stack.config import TOPICS
from stack.faults import BrokerPartition, kill, respawn
from stack.kafka_auth import CONSUMER, client_flags
from stack.local import LocalStack
from tests.support.stacks import running_stack
from tests.support.waiting import wait_for

from .schedule import ROUNDS, FaultResult, Scenario, consumer_verdict

pytestmark = pytest.mark.e2e

REPLICATED = (*TOPICS, brokers.TRANSACTION_LOG, "__consumer_offsets")
# Two brokers of three down longer than a few checkpoint intervals: nothing can commit, and nothing may be lost.
MAJORITY_DOWN_S = 10
# A transaction commit that had reached the brokers when two were killed may still be read just after: the
# watcher fetches every 100 ms.
IN_FLIGHT_READ_S = 2.0
# A partition longer than Kafka 3.9's broker.session.timeout.ms (9 s: the controller fences a broker it has not
# heard from) and replica.lag.time.max.ms (30 s: a leader drops a follower that stopped fetching), the brokers'
# defaults here: the cluster must act on it, not wait it out.
PARTITION_S = 40


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    run_dir = tmp_path_factory.mktemp("kafka-cluster") / "run"
    parent = f"greeter-faults-{uuid.uuid4().hex[:12]}"  # the brokers' cgroups go in it: this stack's only
    folder = procs.cgroup2_root() / parent
    folder.mkdir()
    try:
        with running_stack(run_dir, "kafka cluster", mode="cluster", brokers=3, broker_cgroup=parent) as local:
            yield local
    finally:
        folder.rmdir()  # `down` removed the brokers' own


@pytest.fixture
def partition(cluster: LocalStack) -> Iterator[Callable[[str], BrokerPartition]]:
    """Makes a network partition of a broker; each one made is healed when the test ends, passed or failed."""
    made: list[BrokerPartition] = []

    def make(name: str) -> BrokerPartition:
        made.append(BrokerPartition(cluster.config, name))
        return made[-1]

    try:
        yield make
    finally:
        for cut in made:
            cut.heal()


@pytest.fixture(autouse=True)
def _healthy_cluster(cluster: LocalStack) -> Iterator[None]:
    """Each fault starts on every broker up and in sync; a test that failed half way leaves one for the next."""
    down = [name for name in kafka.broker_names(cluster.config) if not procs.is_running(cluster.state.proc(name))]
    if down:
        respawn(cluster, *down)
    await_full_isr(cluster)
    yield


def await_full_isr(stack: LocalStack, deadline_s: float = 120) -> None:
    """Every replica in sync as each broker serves the metadata (one cut off from the controller would still serve
    the ISRs it last knew)."""
    config = stack.config
    wait_for(
        "every replica back in sync",
        lambda: not any(brokers.short_isr(config, asked=n) for n in config.broker_numbers),
        deadline_s,
    )


def await_exit(stack: LocalStack, name: str, old: procs.Proc) -> None:
    wait_for(f"{name} to exit", lambda: not procs.is_running(old), 10)


def kill_broker_under_load(stack: LocalStack, run: Scenario, role: str, pick: Callable[[], str]) -> FaultResult:
    """The scenario's first third produced, then `pick`: it produces the second and names the broker to kill -9
    right after it; the last third produced while that broker is down. It comes back once the pipeline has
    recovered without it.
    """
    run.produce_until(ROUNDS // 3)
    run.ready_to_strike()
    name = pick()
    old = stack.state.proc(name)
    fault = run.strike(f"kill -9 of the {role} ({name})", lambda: kill(stack, name))
    await_exit(stack, name, old)
    run.produce_until(ROUNDS)
    run.await_recovery(fault, deadline_s=180)
    respawn(stack, name)
    await_full_isr(stack)
    report, result = run.finish(deadline_s=300, expect_failure=False, broker=name)
    assert report.ok, "\n".join(report.summary())
    assert result.lost == 0 and result.duplicated == 0, result
    return result


def test_three_brokers_replicate_everything_and_the_pipeline_is_exact(cluster: LocalStack) -> None:
    config = cluster.config
    topics = kafka.admin(config).list_topics(timeout=5).topics
    for name in REPLICATED:
        for number, partition in topics[name].partitions.items():
            assert sorted(partition.replicas) == [1, 2, 3], f"{name}-{number} replicas {partition.replicas}"
    for name, value in brokers.topic_setting(config, TOPICS, "min.insync.replicas").items():
        assert value == "2", f"{name}: min.insync.replicas {value}"
    assert brokers.topic_setting(config, [brokers.TRANSACTION_LOG], "min.insync.replicas") == {
        brokers.TRANSACTION_LOG: "2"
    }

    env = {**os.environ, "GREETER_STACK_RUN_DIR": str(config.run_dir)}
    venv = config.venv_bin
    generator = [str(venv / "greeter-generator"), "--bootstrap-servers", config.bootstrap_servers, "--names", "50"]
    sent = subprocess.run([*generator, "--count", "2000", "--no-progress"], capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0 and "delivered 2000" in sent.stdout + sent.stderr, sent.stdout + sent.stderr
    verdict = consumer_verdict(client_flags(config, CONSUMER), 3 * config.checkpoint_interval_ms / 1000)
    assert verdict.returncode == 0 and "OK: 2000 greetings" in verdict.stdout, verdict.stdout + verdict.stderr

    shown = subprocess.run([str(venv / "greeter-stack"), "status"], env=env, capture_output=True, text=True, timeout=60)
    lines = shown.stdout.splitlines()
    for name in ("kafka", "kafka-2", "kafka-3"):
        assert any(line.split()[:1] == [name] and " up " in line for line in lines), shown.stdout
    controller = brokers.active_controller(cluster.java(), config)  # the quorum's own answer (DescribeQuorum)
    assert f"broker {controller} ({kafka.broker_name(controller)})" in shown.stdout, shown.stdout
    assert any(line.startswith("short isr") and "none" in line for line in lines), shown.stdout


def egress_coordinator(stack: LocalStack, run: Scenario) -> str:
    """Produce the scenario's second third; the broker coordinating the egress's transaction that takes its first
    greetings, found as its producer finds it (FindCoordinator) the moment the transaction opens."""
    # Every greeting so far committed first: the egress's open transaction then holds none, so the second third's
    # first greeting opens one after the reader is positioned. (Greetings of the first third still on their way
    # could keep the transaction that was open before it, and the reader never see it open: CI.)
    run.await_committed(run.produced)
    with brokers.TransactionLog(stack.config) as log:
        run.produce_until(2 * ROUNDS // 3)  # the egress opens a transaction for their greetings
        transactional_id = log.next_open_egress_transaction()
    return kafka.broker_name(brokers.find_transaction_coordinator(stack.config, transactional_id))


@pytest.mark.timeout(600)
def test_transaction_coordinator_killed(
    cluster: LocalStack, scenario_on: Callable[[LocalStack, str], Scenario]
) -> None:
    """The broker coordinating the egress's open transaction killed while the transaction holds greetings of the
    second third."""
    run = scenario_on(cluster, "kill -9 of the egress's transaction coordinator, 3 brokers")
    kill_broker_under_load(cluster, run, "egress's transaction coordinator", lambda: egress_coordinator(cluster, run))


@pytest.mark.timeout(600)
def test_active_controller_killed(cluster: LocalStack, scenario_on: Callable[[LocalStack, str], Scenario]) -> None:
    run = scenario_on(cluster, "kill -9 of the active controller, 3 brokers")
    controller = kafka.broker_name(brokers.active_controller(cluster.java(), cluster.config))

    def pick() -> str:
        run.produce_until(2 * ROUNDS // 3)
        return controller

    kill_broker_under_load(cluster, run, "active controller", pick)
    elected = brokers.active_controller(cluster.java(), cluster.config)
    assert kafka.broker_name(elected) != controller, f"{controller} still leads the quorum after its kill"


@pytest.mark.timeout(600)
def test_names_partition_leader_killed(cluster: LocalStack, scenario_on: Callable[[LocalStack, str], Scenario]) -> None:
    run = scenario_on(cluster, "kill -9 of the leader of names-0, 3 brokers")

    def leader() -> str:
        run.produce_until(2 * ROUNDS // 3)
        return kafka.broker_name(brokers.partition_leader(cluster.config, "names", 0))

    kill_broker_under_load(cluster, run, "leader of names-0", leader)


@pytest.mark.timeout(600)
def test_rolling_restart(cluster: LocalStack, scenario_on: Callable[[LocalStack, str], Scenario]) -> None:
    """Each broker stopped (SIGTERM) and started again in turn, the next only once every replica is back in sync,
    as an upgrade goes; the load goes on between them."""
    run = scenario_on(cluster, "rolling restart of 3 brokers")
    run.produce_until(ROUNDS // 3)
    run.ready_to_strike()
    run.produce_until(ROUNDS // 2)
    names = kafka.broker_names(cluster.config)
    per_broker: dict[str, float] = {}

    def restart(name: str) -> None:
        began = time.monotonic()
        respawn(cluster, name)
        await_full_isr(cluster)
        per_broker[name] = round(time.monotonic() - began, 1)

    fault = run.strike("rolling restart", lambda: restart(names[0]))
    for index, name in enumerate(names[1:], start=1):
        run.produce_until(ROUNDS // 2 + index * ROUNDS // 6)
        restart(name)
    run.produce_until(ROUNDS)
    run.await_recovery(fault, deadline_s=180)
    report, result = run.finish(deadline_s=300, expect_failure=False, restart_s=per_broker)
    assert report.ok, "\n".join(report.summary())
    assert result.lost == 0 and result.duplicated == 0, result
    assert all(procs.is_running(cluster.state.proc(name)) for name in names)


@pytest.mark.timeout(600)
def test_two_of_three_brokers_down(cluster: LocalStack, scenario_on: Callable[[LocalStack, str], Scenario]) -> None:
    """A majority down: no quorum, no ISR of 2. Nothing commits while it lasts, the job waits rather than
    losing anything, and it goes on once they are back."""
    run = scenario_on(cluster, f"kill -9 of 2 of 3 brokers, {MAJORITY_DOWN_S} s down")
    run.produce_until(ROUNDS // 3)
    run.ready_to_strike()
    run.produce_until(2 * ROUNDS // 3)
    victims = kafka.broker_names(cluster.config)[1:]
    old = [cluster.state.proc(name) for name in victims]
    fault = run.strike(
        f"kill -9 of {' and '.join(victims)}, {MAJORITY_DOWN_S} s down", lambda: [kill(cluster, n) for n in victims]
    )
    for name, proc in zip(victims, old, strict=True):
        await_exit(cluster, name, proc)
    time.sleep(MAJORITY_DOWN_S)  # the outage itself
    back_at = time.monotonic()
    committed_while_down = [s for s in run.watcher.seen() if fault.at + IN_FLIGHT_READ_S < s.at < back_at]
    respawn(cluster, *victims)
    await_full_isr(cluster)
    run.produce_until(ROUNDS)
    run.await_recovery(fault, deadline_s=300)
    report, result = run.finish(deadline_s=300, expect_failure=False, committed_while_down=len(committed_while_down))
    assert not committed_while_down, f"{len(committed_while_down)} greetings committed with 2 of 3 brokers down"
    assert report.ok, "\n".join(report.summary())
    assert result.lost == 0 and result.duplicated == 0, result


@pytest.mark.timeout(600)
def test_transaction_coordinator_partitioned(
    cluster: LocalStack,
    scenario_on: Callable[[LocalStack, str], Scenario],
    partition: Callable[[str], BrokerPartition],
) -> None:
    """The broker coordinating the egress's open transaction cut off from the other two for PARTITION_S while the
    transaction holds greetings of the second third; the runtime and the test's clients still reach all three
    brokers, the cut one included, as in a partition of the brokers' own network. The last third is produced while
    the partition lasts. The two others must fence it (it drops out of every ISR in their metadata, and out of the
    quorum's lead if it held it), and once healed it must come back in sync, with every greeting exactly once."""
    config = cluster.config
    run = scenario_on(cluster, f"network partition of the egress's transaction coordinator, {PARTITION_S} s, 3 brokers")
    run.produce_until(ROUNDS // 3)
    run.ready_to_strike()
    name = egress_coordinator(cluster, run)
    number = kafka.broker_number(name)
    majority = [n for n in config.broker_numbers if n != number]
    controller = brokers.recorded_controller(config)
    cut = partition(name)
    fault = run.strike(f"network partition of the egress's transaction coordinator ({name}), {PARTITION_S} s", cut.cut)

    def still_in_sync() -> list[brokers.PartitionIsr]:
        return [p for p in brokers.partition_isrs(config, asked=majority[0]) if number in p.isr]

    wait_for(
        f"{name} out of every ISR, as {kafka.broker_name(majority[0])} serves them", lambda: not still_in_sync(), 60
    )
    out_of_isr_s = round(time.monotonic() - fault.at, 1)
    if controller == number:
        wait_for(
            f"a controller other than {name}", lambda: brokers.recorded_controller(config) not in (number, None), 30
        )
    with ThreadPoolExecutor(1) as pool:
        # Produced while the partition lasts: a client may well ask the cut-off broker, and wait for its heal.
        last_third = pool.submit(run.produce_until, ROUNDS, PARTITION_S + 60)
        time.sleep(max(0.0, fault.at + PARTITION_S - time.monotonic()))  # the partition itself
        cut.heal()
        healed_s = round(time.monotonic() - fault.at, 1)
        last_third.result()
    assert procs.is_running(cluster.state.proc(name)), f"{name} exited: a partition must leave it running"
    await_full_isr(cluster)
    run.await_recovery(fault, deadline_s=180)
    report, result = run.finish(
        deadline_s=300,
        expect_failure=False,
        broker=name,
        controller_partitioned=controller == number,
        out_of_isr_s=out_of_isr_s,
        healed_s=healed_s,
    )
    assert report.ok, "\n".join(report.summary())
    assert result.lost == 0 and result.duplicated == 0, result
