"""LocalStack, the stack's lifecycle: start Kafka, the greeter, Flink and the StateFun job in order, each ready
before the next; stop them in reverse; say how they are. What changes a running stack is in stack/operations.py
(savepoint, rescale, greeter upgrade, Kafka logins); what only tests do to it is in stack/faults.py.
"""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from certs.tls import mint

from . import daemons, kafka, kafka_auth, procs
from .config import HOST, JOB_ENTRY_CLASS, StackConfig, port_env_var
from .fetch import check_prerequisites, fetch, is_fresh, job_jar
from .flinkconf import write_flink_conf
from .readiness import StartError, wait_until
from .render import write_logging_configs, write_module_yaml
from .rest import Checkpoint, FlinkRest
from .state import StackState, latest_retained_checkpoint, prune_other_jobs, run_lock
from .status import StackStatus, collect_status


def restore_point(path: Path, fresh: bool) -> Path:
    """`path` (a savepoint or retained checkpoint folder, or its `file:` URI as Flink prints it) checked for
    restoring from; StartError saying what is wrong.
    """
    if fresh:
        raise StartError("--fresh wipes the Kafka offsets a savepoint resumes from: give one or the other")
    folder = Path(str(path).removeprefix("file:")).expanduser().resolve()
    if not (folder / "_metadata").is_file():
        raise StartError(f"{folder} holds no savepoint or checkpoint (no _metadata file)")
    return folder


class NotRunning(RuntimeError):
    """The command needs the stack up, and it is not: the message names its state and what to do."""


def _stderr(line: str) -> None:
    print(f"[stack] {line}", file=sys.stderr, flush=True)


class LocalStack:
    """One stack in one run folder: `up` in order, `down` in reverse, `status`, and the steps that start one daemon
    or the job, which the operations (stack/operations.py) and the tests' faults (stack/faults.py) take too.
    """

    def __init__(
        self, config: StackConfig, *, stop: threading.Event | None = None, report: Callable[[str], None] = _stderr
    ) -> None:
        self.config = config
        self.stop_event = stop or threading.Event()
        self.report = report
        self.state = StackState.load(config.run_dir) or StackState(config)
        self.rest = FlinkRest(config.rest_url)
        self._java = ""

    @classmethod
    def attach(
        cls, run_dir: Path, *, stop: threading.Event | None = None, report: Callable[[str], None] = _stderr
    ) -> LocalStack:
        """The stack recorded in a run folder (for down/status/logs from another process)."""
        state = StackState.load(run_dir)
        if state is None:
            raise RuntimeError(f"no stack recorded in {run_dir} (no {run_dir / 'stack.json'})")
        return cls(state.config, stop=stop, report=report)

    @property
    def job_id(self) -> str | None:
        """The id of the job the last `up` submitted; None before."""
        return self.state.job_id

    def refresh(self) -> None:
        """Take up the processes and job that another command (rescale, a greeter upgrade) recorded since."""
        recorded = StackState.load(self.config.run_dir)
        if recorded is not None:
            self.state.procs, self.state.job_id, self.state.jar_id = recorded.procs, recorded.job_id, recorded.jar_id

    def running(self) -> list[procs.Proc]:
        """The recorded processes still alive."""
        return [p for p in self.state.procs if procs.is_running(p)]

    def reconfigure(self, config: StackConfig) -> None:
        """Take `config` as the stack's from now on, and record it in the run folder."""
        self.config = self.state.config = config
        self.state.save()

    def java(self) -> str:
        """The java command the daemons run with, checked once (fetching the jars is `up`'s); PrerequisiteError
        when there is none.
        """
        self._java = self._java or check_prerequisites(need_maven=False)
        return self._java

    # ---- up ----
    def up(self, fresh: bool = False, restore_from: Path | None = None) -> None:
        """Start everything; on any failure or interrupt, stop what was started and re-raise. The job resumes
        from `restore_from` (a savepoint or retained checkpoint) when given, else from the newest retained
        checkpoint unless `fresh`.
        """
        if restore_from is not None:
            restore_from = restore_point(restore_from, fresh)
        with run_lock(self.config.run_dir):
            alive = self.running()
            if alive:
                names = ", ".join(p.name for p in alive)
                raise RuntimeError(
                    f"stack in {self.config.run_dir} is already up ({names}): run `greeter-stack down` first"
                )
            if restore_from is None and not fresh and self.state.resume_from:
                # The job an unfinished rescale cancelled continues from its savepoint, not an older checkpoint.
                restore_from = restore_point(Path(self.state.resume_from), fresh)
                self.report(f"resuming from the savepoint of an unfinished rescale: {restore_from}")
            self.state = StackState(self.config)
            try:
                self._start(fresh, restore_from)
            except BaseException:
                self.report("start failed: stopping what was started")
                self._stop_all()
                raise

    def _start(self, fresh: bool, restore_from: Path | None) -> None:
        cfg = self.config
        self._java = check_prerequisites(need_maven=not is_fresh(cfg.jvm_dir))
        if fetch(cfg):
            self.report(f"fetched the jars into {cfg.jvm_dir / 'lib'}")
        if fresh:
            self._wipe()
        self._check_ports()
        self._check_broker_cgroup()
        write_logging_configs(cfg)
        if cfg.tls:
            mint(cfg.tls_dir)
            self.report(f"minted a throwaway CA and certificates for mutual TLS into {cfg.tls_dir}")
        made_by = kafka.formatted_broker_count(cfg)
        if made_by not in (None, cfg.brokers):  # its topics' replicas and quorum voters are the other count's
            raise StartError(
                f"the Kafka storage in {cfg.run_dir} was made with --brokers {made_by}: start it the same way, or "
                "with --fresh to wipe it"
            )
        auth = kafka_auth.KafkaAuthFiles(cfg.run_dir)
        if not kafka_auth.secured(cfg) and kafka.storage_formatted(cfg) and auth.clients_dir.exists():
            raise StartError(  # else its data would be served in the clear, to anyone
                f"the Kafka storage in {cfg.kafka_data_dir} was made with --kafka-security sasl-ssl: start it the "
                "same way, or with --fresh to wipe it"
            )
        if kafka_auth.secured(cfg):
            if kafka_auth.prepare(cfg, kafka.storage_formatted(cfg)):
                self.report(f"made a Kafka login per client: {auth.clients_dir}")
            self.report(f"minted the broker's certificate into {auth.tls_dir}")
        kafka.write_properties(cfg)
        write_flink_conf(cfg, write_module_yaml(cfg))
        if kafka.format_storage(self._java, cfg):
            self.report("formatted the Kafka storage")
        # The greeter needs nothing from Kafka: it starts while the broker does.
        started = [self._spawn(name, daemons.argv(self._java, cfg, name)) for name in daemons.services(cfg)]
        for proc in started:
            self._await_daemon(proc)
        if cfg.mode == "cluster":
            for name in daemons.runtime_names(cfg):
                self.start_daemon(name)
        self.start_job(resume=not fresh, restore_from=restore_from)
        for extra in cfg.extras:
            self._spawn(extra.name, list(extra.argv))
        self.report(
            f"up: Kafka {cfg.bootstrap_servers}, Flink {cfg.rest_url}, greeter {cfg.greeter_url}, "
            f"job {self.state.job_id}"
        )

    def _wipe(self) -> None:
        cfg = self.config
        auth = kafka_auth.KafkaAuthFiles(cfg.run_dir)
        brokers = [cfg.broker_data_dir(n) for n in kafka.EVERY_BROKER_NUMBER]  # another --brokers' too
        for path in (*brokers, cfg.checkpoint_dir, cfg.flink_work_dir, cfg.conf_dir, auth.clients_dir):
            shutil.rmtree(path, ignore_errors=True)
        for log in cfg.run_dir.glob("*.log"):
            log.unlink()
        self.report(f"wiped the state in {cfg.run_dir}")

    def _check_broker_cgroup(self) -> None:
        parent = self.config.broker_cgroup
        if parent is None:
            return
        try:
            folder = procs.cgroup2_root() / parent
        except RuntimeError as error:
            raise StartError(f"--broker-cgroup {parent}: {error}") from None
        if not folder.is_dir():
            raise StartError(f"--broker-cgroup {parent}: no such cgroup ({folder}): make it first (mkdir)")

    def _check_ports(self) -> None:
        busy = [
            f"{port} ({name}, env {port_env_var(name)})"
            for name, port in self.config.ports.in_use(self.config.unused_ports)
        ]
        if busy:
            raise StartError(
                f"ports in use on {HOST}: {'; '.join(busy)}. Another stack or service holds them: "
                "stop it or pick other ports"
            )

    def _spawn(self, name: str, argv: list[str]) -> procs.Proc:
        proc = procs.spawn(
            name,
            argv,
            self.config.log_file(name),
            env=daemons.env(self.config, name),
            cwd=self.config.run_dir,
            cgroup=kafka.broker_cgroup(self.config, name),
        )
        self.state.replace(proc)
        self.state.save()
        self.report(f"started {name} (pid {proc.pid}, log {proc.log})")
        return proc

    def wait(self, what: str, check: Callable[[], str | None], proc: procs.Proc) -> None:
        """Poll `check` until it returns None (readiness.wait_until): StartError, naming `what` and `proc`'s log,
        when the start deadline passes or `proc` dies first; Interrupted when a stop is requested.
        """
        wait_until(
            what,
            check,
            timeout=self.config.start_timeout_s,
            log=Path(proc.log),
            alive=lambda: procs.is_running(proc),
            stop=self.stop_event,
        )

    def start_daemon(self, name: str, argv: list[str] | None = None) -> procs.Proc:
        """Start daemon `name` (with `argv`, else its command line for the config) and wait until it serves;
        its record. StartError when it does not become ready in time.
        """
        return self.start_daemons({name: argv or daemons.argv(self.java(), self.config, name)})[0]

    def start_daemons(self, commands: dict[str, list[str]]) -> list[procs.Proc]:
        """Start each daemon with its command line, all at once, then wait until each serves (brokers need a
        quorum of each other to serve); their records.
        """
        started = [self._spawn(name, argv) for name, argv in commands.items()]
        return [self._await_daemon(proc) for proc in started]

    def _await_daemon(self, proc: procs.Proc) -> procs.Proc:
        """Wait until the daemon `proc` serves (a broker: with every broker registered and the stack's topics
        created); `proc`.
        """
        self.wait(proc.name, daemons.ready_check(self.config, self.rest, proc.name, proc), proc)
        if proc.name in kafka.broker_names(self.config):
            number = kafka.broker_number(proc.name)
            self.wait("every Kafka broker registered", lambda: kafka.brokers_registered(self.config, number), proc)
            kafka.ensure_topics(self.config)
            self.wait("kafka topics", lambda: kafka.topics_ready(self.config), proc)
            if kafka_auth.secured(self.config):
                kafka.ensure_acls(self.config)
                self.report(f"Kafka ACLs: {len(kafka_auth.ACLS)} grants for {', '.join(kafka_auth.CLIENTS[1:])}")
        self.report(f"{proc.name} ready")
        return proc

    def _resume_point(self, resume: bool, restore_from: Path | None) -> Path | None:
        if restore_from is not None:
            return restore_from
        checkpoint = latest_retained_checkpoint(self.config.checkpoint_dir) if resume else None
        if checkpoint is not None:
            pruned = prune_other_jobs(self.config.checkpoint_dir, checkpoint)
            if pruned:
                self.report(f"removed the checkpoints of {len(pruned)} earlier job(s) in {self.config.checkpoint_dir}")
        return checkpoint

    def start_job(self, resume: bool, restore_from: Path | None = None) -> None:
        """Start the job and wait until it runs, resuming from `restore_from`, else (with `resume`) from the newest
        retained checkpoint: single mode starts the JVM that runs it, cluster mode submits it to the running
        JobManager. StartError when it does not run in time.
        """
        if self.config.mode == "single":
            self._start_runtime(resume, restore_from)
        else:
            self._submit_job(resume, restore_from)

    def _start_runtime(self, resume: bool, restore_from: Path | None) -> None:
        checkpoint = self._resume_point(resume, restore_from)
        proc = self._spawn("runtime", daemons.argv(self.java(), self.config, "runtime", checkpoint))
        self.wait("runtime", daemons.ready_check(self.config, self.rest, "runtime", proc), proc)
        self.wait("runtime's job", lambda: None if self.rest.job_ids() else "no job listed yet", proc)
        self.state.job_id = self.rest.job_ids()[0]  # its mini cluster runs this one job only
        self.state.save()
        self.report(f"job {self.state.job_id} started" + (f", resuming from {checkpoint}" if checkpoint else ""))
        job_id = self.state.job_id
        self.wait(f"job {job_id}", lambda: self.rest.job_running(job_id), proc)
        self._job_running()

    def _submit_job(self, resume: bool, restore_from: Path | None) -> None:
        checkpoint = self._resume_point(resume, restore_from)
        jm = self.state.proc("jobmanager")
        self.state.jar_id = self.rest.upload_jar(job_jar(self.config))
        self.state.job_id = self.rest.run_jar(
            self.state.jar_id, JOB_ENTRY_CLASS, self.config.parallelism, str(checkpoint) if checkpoint else None
        )
        self.state.save()
        self.report(f"submitted job {self.state.job_id}" + (f", resuming from {checkpoint}" if checkpoint else ""))
        job_id = self.state.job_id
        self.wait(f"job {job_id}", lambda: self.rest.job_running(job_id), jm)
        self._job_running()

    def _job_running(self) -> None:
        self.state.resume_from = None  # an unfinished rescale's savepoint is resumed now
        self.state.save()
        self.report("job RUNNING")

    # ---- down ----
    def down(self) -> dict[str, str]:
        """Stop every recorded process, last started first, under the run lock; each one's outcome by name."""
        with run_lock(self.config.run_dir):
            if not self.running():
                self.report(f"nothing was running in {self.config.run_dir}")
            return self._stop_all()

    def _stop_all(self) -> dict[str, str]:
        together = kafka.broker_names(self.config)
        results = procs.stop_all(self.state.procs, self.config.stop_timeout_s, report=self.report, together=together)
        for cgroup in filter(None, (kafka.broker_cgroup(self.config, name) for name in together)):
            try:
                procs.remove_cgroup(cgroup)
            except OSError as error:  # a broker that would not die is still in it
                self.report(f"warning: cgroup {cgroup} not removed: {error}")
        self.state.procs = []
        self.state.save()
        busy = [str(port) for _, port in self.config.ports.in_use(self.config.unused_ports)]
        if busy:
            self.report(f"warning: ports still in use after down: {', '.join(busy)}")
        return results

    def failure_count(self) -> int:
        """Failures the job has gone through (see FlinkRest.failure_count); RuntimeError before a job is submitted."""
        return self.rest.failure_count(self.require_job())

    def latest_checkpoint(self) -> Checkpoint | None:
        """The job's latest completed checkpoint, None before the first; RuntimeError before a job is submitted."""
        return self.rest.latest_checkpoint(self.require_job())

    def require_job(self) -> str:
        """The submitted job's id; RuntimeError before a job is submitted."""
        if not self.state.job_id:
            raise RuntimeError("no job submitted")
        return self.state.job_id

    def require_running(self, what: str) -> str:
        """The job's id when every daemon of the stack's mode runs; NotRunning, saying `what` cannot be done, the
        stack's state and what to do, otherwise.
        """
        recorded = {proc.name: proc for proc in self.state.procs}
        where = f"the stack in {self.config.run_dir}"
        if not recorded:
            raise NotRunning(f"{what}: {where} is stopped; start it with `greeter-stack up`")
        again = "run `greeter-stack down`, then `greeter-stack up`"
        for name in daemons.names(self.config):
            if name not in recorded:
                raise NotRunning(
                    f"{what}: {where} is half up ({name} never started: an `up` that did not finish); {again}"
                )
            if not procs.is_running(recorded[name]):
                proc = recorded[name]
                raise NotRunning(f"{what}: {name} (pid {proc.pid}) is not running (its log: {proc.log}); {again}")
        if not self.state.job_id:
            raise NotRunning(f"{what}: {where} has no job (an `up` that did not finish); {again}")
        return self.state.job_id

    def status(self) -> StackStatus:
        """What `greeter-stack status` shows; a Flink or Kafka that does not answer becomes a note, not an error."""
        return collect_status(self.state, self.rest)
