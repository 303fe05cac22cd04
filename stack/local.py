"""LocalStack: start Kafka, the greeter, Flink and the StateFun job in order, each ready before the next;
stop them in reverse. The API the CLI and the e2e tests share.
"""

from __future__ import annotations

import re
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

from . import daemons, kafka, kafka_auth, procs
from .config import HOST, JOB_ENTRY_CLASS, Ports, StackConfig, port_env_var
from .fetch import check_prerequisites, fetch, is_fresh, job_jar
from .flinkconf import write_flink_conf
from .readiness import StartError, port_free, wait_until
from .render import write_logging_configs, write_module_yaml
from .rest import Checkpoint, FlinkRest
from .savepoints import cancel_with_savepoint
from .state import StackState, latest_retained_checkpoint, prune_other_jobs, run_lock
from .status import StackStatus, collect_status
from .tls import mint


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


_RETRY = re.compile(r"Retry #\d+")


class LocalStack:
    """One stack in one run folder: `up` in order, `down` in reverse, and the faults the e2e tests inject."""

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
        write_logging_configs(cfg)
        if cfg.tls:
            mint(cfg.tls_dir)
            self.report(f"minted a throwaway CA and certificates for mutual TLS into {cfg.tls_dir}")
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
        started = [self._spawn(name, daemons.argv(self._java, cfg, name)) for name in daemons.SERVICES]
        for proc in started:
            self._await_daemon(proc)
        if cfg.mode == "single":
            self._start_runtime(resume=not fresh, restore_from=restore_from)
        else:
            for name in daemons.runtime_names(cfg):
                self._start_daemon(name)
            self._submit_job(resume=not fresh, restore_from=restore_from)
        for extra in cfg.extras:
            self._spawn(extra.name, list(extra.argv))
        self.report(
            f"up: Kafka {cfg.bootstrap_servers}, Flink {cfg.rest_url}, greeter {cfg.greeter_url}, "
            f"job {self.state.job_id}"
        )

    def _wipe(self) -> None:
        cfg = self.config
        auth = kafka_auth.KafkaAuthFiles(cfg.run_dir)
        for path in (cfg.kafka_data_dir, cfg.checkpoint_dir, cfg.flink_work_dir, cfg.conf_dir, auth.clients_dir):
            shutil.rmtree(path, ignore_errors=True)
        for log in cfg.run_dir.glob("*.log"):
            log.unlink()
        self.report(f"wiped the state in {cfg.run_dir}")

    def _check_ports(self) -> None:
        busy = [
            f"{getattr(self.config.ports, f.name)} ({f.name}, env {port_env_var(f.name)})"
            for f in fields(Ports)
            if not port_free(HOST, getattr(self.config.ports, f.name))
        ]
        if busy:
            raise StartError(
                f"ports in use on {HOST}: {'; '.join(busy)}. Another stack or service holds them: "
                "stop it or pick other ports"
            )

    def _spawn(self, name: str, argv: list[str]) -> procs.Proc:
        proc = procs.spawn(
            name, argv, self.config.log_file(name), env=daemons.env(self.config, name), cwd=self.config.run_dir
        )
        self.state.replace(proc)
        self.state.save()
        self.report(f"started {name} (pid {proc.pid}, log {proc.log})")
        return proc

    def _wait(self, name: str, check: Callable[[], str | None], proc: procs.Proc) -> None:
        wait_until(
            name,
            check,
            timeout=self.config.start_timeout_s,
            log=Path(proc.log),
            alive=lambda: procs.is_running(proc),
            stop=self.stop_event,
        )

    def _start_daemon(self, name: str) -> None:
        self._await_daemon(self._spawn(name, daemons.argv(self._java, self.config, name)))

    def _await_daemon(self, proc: procs.Proc) -> None:
        """Wait until the daemon `proc` serves (Kafka: with the stack's topics created)."""
        self._wait(proc.name, daemons.ready_check(self.config, self.rest, proc.name, proc), proc)
        if proc.name == "kafka":
            kafka.ensure_topics(self.config)
            self._wait("kafka topics", lambda: kafka.topics_ready(self.config), proc)
            if kafka_auth.secured(self.config):
                kafka.ensure_acls(self.config)
                self.report(f"Kafka ACLs: {len(kafka_auth.ACLS)} grants for {', '.join(kafka_auth.CLIENTS[1:])}")
        self.report(f"{proc.name} ready")

    def _resume_point(self, resume: bool, restore_from: Path | None) -> Path | None:
        if restore_from is not None:
            return restore_from
        checkpoint = latest_retained_checkpoint(self.config.checkpoint_dir) if resume else None
        if checkpoint is not None:
            pruned = prune_other_jobs(self.config.checkpoint_dir, checkpoint)
            if pruned:
                self.report(f"removed the checkpoints of {len(pruned)} earlier job(s) in {self.config.checkpoint_dir}")
        return checkpoint

    def _start_runtime(self, resume: bool, restore_from: Path | None = None) -> None:
        """Single mode: one JVM runs the job from its start, resuming from `restore_from` or else the newest
        retained checkpoint.
        """
        checkpoint = self._resume_point(resume, restore_from)
        proc = self._spawn("runtime", daemons.argv(self._java, self.config, "runtime", checkpoint))
        self._wait("runtime", daemons.ready_check(self.config, self.rest, "runtime", proc), proc)
        self._wait("runtime's job", lambda: None if self.rest.job_ids() else "no job listed yet", proc)
        self.state.job_id = self.rest.job_ids()[0]  # its mini cluster runs this one job only
        self.state.save()
        self.report(f"job {self.state.job_id} started" + (f", resuming from {checkpoint}" if checkpoint else ""))
        job_id = self.state.job_id
        self._wait(f"job {job_id}", lambda: self.rest.job_running(job_id), proc)
        self._job_running()

    def _submit_job(self, resume: bool, restore_from: Path | None = None) -> None:
        checkpoint = self._resume_point(resume, restore_from)
        jm = self.state.proc("jobmanager")
        self.state.jar_id = self.rest.upload_jar(job_jar(self.config))
        self.state.job_id = self.rest.run_jar(
            self.state.jar_id, JOB_ENTRY_CLASS, self.config.parallelism, str(checkpoint) if checkpoint else None
        )
        self.state.save()
        self.report(f"submitted job {self.state.job_id}" + (f", resuming from {checkpoint}" if checkpoint else ""))
        job_id = self.state.job_id
        self._wait(f"job {job_id}", lambda: self.rest.job_running(job_id), jm)
        self._job_running()

    def _job_running(self) -> None:
        self.state.resume_from = None  # an unfinished rescale's savepoint is resumed now
        self.state.save()
        self.report("job RUNNING")

    def savepoint(self) -> str:
        """A savepoint of the running job in the run folder's savepoints/ (the job keeps running); its location."""
        with run_lock(self.config.run_dir):
            job_id = self._require_running("no job is running")
            self.config.savepoint_dir.mkdir(parents=True, exist_ok=True)
            location = self.rest.savepoint(job_id, self.config.savepoint_dir.resolve().as_uri())
            self.report(f"savepoint of job {job_id}: {location}")
            return location

    def rotate_kafka_credentials(self) -> list[str]:
        """New passwords for the secured broker's client logins (stack/kafka.py rotate_logins); the principals.
        The runtime's open connections keep their login; its JVMs read the new one when they start again.
        """
        with run_lock(self.config.run_dir):
            if not kafka_auth.secured(self.config):
                raise NotRunning(
                    f"no Kafka logins to rotate: the stack in {self.config.run_dir} runs a plaintext broker (start it "
                    "with `greeter-stack up --fresh --kafka-security sasl-ssl`)"
                )
            broker = self.state.proc("kafka") if any(p.name == "kafka" for p in self.state.procs) else None
            if broker is None or not procs.is_running(broker):
                raise NotRunning(f"cannot rotate the Kafka logins: the broker of {self.config.run_dir} is not running")
            return kafka.rotate_logins(self.config)

    def rescale(self, parallelism: int) -> str:
        """Run the job at `parallelism`: cancel it with a savepoint into savepoints/ (stack/savepoints.py), start or
        stop TaskManagers to match (cluster mode; single mode restarts its one JVM), and resume the job from that
        savepoint. Its location. StartError, before anything stops, for a parallelism below 1 or above the job's
        maximum parallelism; StartError saying how to resume when the job does not start again.
        """
        with run_lock(self.config.run_dir):
            job_id = self._require_running("no job is running")
            current, maximum = self.rest.parallelism(job_id)
            if not 1 <= parallelism <= maximum:
                raise StartError(
                    f"parallelism {parallelism}: the job can run at 1 to {maximum}, its maximum parallelism (the "
                    "key groups its state is split into, fixed at its first start); more needs a new job with "
                    "fresh state"
                )
            self._java = self._java or check_prerequisites(need_maven=False)
            self.report(f"cancelling job {job_id} (parallelism {current}) with a savepoint")
            server = self.state.proc(daemons.runtime_names(self.config)[0])  # the runtime or the JobManager
            savepoint = cancel_with_savepoint(
                self.rest, job_id, self.config.savepoint_dir, lambda: procs.is_running(server), self.report
            )
            self.report(f"savepoint {savepoint}")
            self.state.resume_from = str(savepoint)
            self.config = self.state.config = replace(self.config, parallelism=parallelism)
            self.state.save()
            try:
                write_flink_conf(self.config, write_module_yaml(self.config))  # parallelism.default, single's slots
                if self.config.mode == "single":
                    procs.stop(server, self.config.stop_timeout_s)  # its job is over: it exits
                    self._start_runtime(resume=True, restore_from=savepoint)
                else:
                    self._match_taskmanagers()
                    self._submit_job(resume=True, restore_from=savepoint)
            except Exception as error:
                raise StartError(
                    f"rescale stopped half way ({error}): the job was cancelled with a savepoint at {savepoint}. "
                    f"Resume it with `greeter-stack down`, then `greeter-stack up` (it resumes from that savepoint; "
                    f"or `greeter-stack up --from-savepoint {savepoint}`)"
                ) from error
            return str(savepoint)

    def _match_taskmanagers(self) -> None:
        """Cluster mode: stop the TaskManagers the parallelism no longer needs (last first), start the missing."""
        wanted = daemons.taskmanager_names(self.config.taskmanagers)
        for proc in reversed(self.state.procs):
            if proc.name.startswith(daemons.TASKMANAGER) and proc.name not in wanted:
                procs.stop(proc, self.config.stop_timeout_s)
                self.state.procs.remove(proc)
                self.state.save()
                self.report(f"stopped {proc.name}")
        running = {proc.name for proc in self.running()}
        for name in wanted:
            if name not in running:
                self._start_daemon(name)

    def upgrade_greeter(self) -> procs.Proc:
        """Replace the greeter's gunicorn in place, refusing no request: gunicorn's own upgrade. USR2 makes the
        master start a new one on the same listening socket, which loads the code and its settings afresh and
        forks its workers; once they serve, the old master is stopped gracefully: its workers drain, serving the
        runtime's kept-alive connections until its pool retires them (up to 18 s, greeter/server/bounded_http.py), and
        exit. The new master is recorded in its place; its environment (the GREETER_* settings) is the old
        one's, so changing those takes `down` and `up`. The new master's record.
        """
        with run_lock(self.config.run_dir):
            self._require_running("cannot upgrade the greeter")
            old = self.state.proc("greeter")
            if not procs.send(old, signal.SIGUSR2, group=False):
                raise RuntimeError("the greeter is not running")
            # gunicorn: the new master writes <pid file>.2 until the old one is gone, then renames it.
            pid_file = self.config.run_dir / "greeter.pid.2"
            new: list[procs.Proc] = []

            def new_master_serving() -> str | None:
                pid = int(pid_file.read_text().strip() or 0) if pid_file.exists() else 0
                if not pid or pid == old.pid:
                    return "no new gunicorn master yet"
                workers = len(procs.children(pid))
                if workers < self.config.greeter_workers:
                    return f"the new master {pid} has {workers} of {self.config.greeter_workers} workers"
                new[:] = [procs.Proc("greeter", pid, procs.start_ticks(pid) or 0, old.log, old.argv, old.pgid)]
                return None

            self._wait("the upgraded greeter", new_master_serving, old)
            self.state.replace(new[0])
            self.state.save()
            self.report(
                f"greeter upgraded: master {new[0].pid} serving; stopping the old master {old.pid} "
                f"(its workers drain their connections, up to the graceful timeout)"
            )
            procs.send(old, signal.SIGTERM, group=False)  # graceful: its workers drain
            deadline = self.config.stop_timeout_s + 30
            wait_until("the old greeter master's exit", lambda: None if not procs.is_running(old) else "still up",
                       timeout=deadline, log=Path(old.log), alive=lambda: True, stop=self.stop_event)  # fmt: skip
            self._wait("greeter", daemons.ready_check(self.config, self.rest, "greeter", new[0]), new[0])
            return new[0]

    # ---- down and faults ----
    def down(self) -> dict[str, str]:
        """Stop every recorded process, last started first, under the run lock; each one's outcome by name."""
        with run_lock(self.config.run_dir):
            if not self.running():
                self.report(f"nothing was running in {self.config.run_dir}")
            return self._stop_all()

    def _stop_all(self) -> dict[str, str]:
        results = procs.stop_all(self.state.procs, self.config.stop_timeout_s, report=self.report)
        self.state.procs = []
        self.state.save()
        busy = [
            str(getattr(self.config.ports, f.name))
            for f in fields(Ports)
            if not port_free(HOST, getattr(self.config.ports, f.name))
        ]
        if busy:
            self.report(f"warning: ports still in use after down: {', '.join(busy)}")
        return results

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal one recorded process (and its group): fault injection for tests."""
        if not procs.send(self.state.proc(name), sig):
            raise RuntimeError(f"{name} is not running")

    def respawn(self, name: str) -> None:
        """Start one daemon again (after kill) with its recorded command; waits until it is ready. The
        single-mode runtime resumes its job from the newest retained checkpoint, as `up` does.
        """
        old = self.state.proc(name)
        procs.stop(old, self.config.stop_timeout_s)
        if name == "runtime":
            self._java = self._java or check_prerequisites(need_maven=False)
            self._start_runtime(resume=True)
            return
        proc = self._spawn(name, list(old.argv))
        self._wait(name, daemons.ready_check(self.config, self.rest, name, proc), proc)

    def failure_count(self) -> int:
        """Failures the job has gone through (see FlinkRest.failure_count); RuntimeError before a job is submitted."""
        return self.rest.failure_count(self._require_job())

    def delivery_retries(self) -> int:
        """Failed deliveries to the greeter that the runtime retried: StateFun's HTTP client logs `Retry #n` for
        each (a connection the greeter closed, a 5xx, a wrong content type). Counted over the log of the
        processes that run the tasks (daemons.task_logs) in this run folder, appended across respawns.
        """
        logs = [log for log in daemons.task_logs(self.config) if log.exists()]
        return sum(len(_RETRY.findall(log.read_text(encoding="utf-8", errors="replace"))) for log in logs)

    def latest_checkpoint(self) -> Checkpoint | None:
        """The job's latest completed checkpoint, None before the first; RuntimeError before a job is submitted."""
        return self.rest.latest_checkpoint(self._require_job())

    def _require_job(self) -> str:
        if not self.state.job_id:
            raise RuntimeError("no job submitted")
        return self.state.job_id

    def _require_running(self, what: str) -> str:
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
