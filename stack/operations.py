"""What changes a running stack without stopping it as a whole: a savepoint, a rescale, the greeter replaced in
place, new Kafka passwords. Each takes the run lock, so two commands on one run folder never interleave.
"""

from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path

from . import daemons, kafka, kafka_auth, procs
from .flinkconf import write_flink_conf
from .local import LocalStack, NotRunning
from .readiness import StartError, wait_until
from .render import write_module_yaml
from .savepoints import cancel_with_savepoint
from .state import run_lock


def savepoint(stack: LocalStack) -> str:
    """Take a savepoint of the running job into the run folder's savepoints/ (the job keeps running) and return
    its location. NotRunning when the stack is not up.
    """
    with run_lock(stack.config.run_dir):
        job_id = stack.require_running("no job is running")
        stack.config.savepoint_dir.mkdir(parents=True, exist_ok=True)
        location = stack.rest.savepoint(job_id, stack.config.savepoint_dir.resolve().as_uri())
        stack.report(f"savepoint of job {job_id}: {location}")
        return location


def rotate_kafka_credentials(stack: LocalStack) -> list[str]:
    """Give the secured broker's client logins new passwords (kafka.rotate_logins) and return their principals.
    The runtime's open connections keep their login; its JVMs read the new one when they start again. NotRunning
    when the broker is plaintext or not running.
    """
    config = stack.config
    with run_lock(config.run_dir):
        if not kafka_auth.secured(config):
            raise NotRunning(
                f"no Kafka logins to rotate: the stack in {config.run_dir} runs a plaintext broker (start it "
                "with `greeter-stack up --fresh --kafka-security sasl-ssl`)"
            )
        broker = stack.state.proc("kafka") if any(p.name == "kafka" for p in stack.state.procs) else None
        if broker is None or not procs.is_running(broker):
            raise NotRunning(f"cannot rotate the Kafka logins: the broker of {config.run_dir} is not running")
        return kafka.rotate_logins(config)


def rescale(stack: LocalStack, parallelism: int) -> str:
    """Run the job at `parallelism`: cancel it with a savepoint into savepoints/ (stack/savepoints.py), start or
    stop TaskManagers to match (cluster mode; single mode restarts its one JVM), and resume the job from that
    savepoint. Returns the savepoint's location. Raises StartError, before anything stops, for a parallelism below 1
    or above the job's maximum parallelism, and StartError saying how to resume when the job does not start again;
    NotRunning when the stack is not up.
    """
    with run_lock(stack.config.run_dir):
        job_id = stack.require_running("no job is running")
        current, maximum = stack.rest.parallelism(job_id)
        if not 1 <= parallelism <= maximum:
            raise StartError(
                f"parallelism {parallelism}: the job can run at 1 to {maximum}, its maximum parallelism (the "
                "key groups its state is split into, fixed at its first start); more needs a new job with "
                "fresh state"
            )
        stack.java()  # a missing Java fails here, before the job stops
        stack.report(f"cancelling job {job_id} (parallelism {current}) with a savepoint")
        server = stack.state.proc(daemons.runtime_names(stack.config)[0])  # the runtime or the JobManager
        saved = cancel_with_savepoint(
            stack.rest, job_id, stack.config.savepoint_dir, lambda: procs.is_running(server), stack.report
        )
        stack.report(f"savepoint {saved}")
        stack.state.resume_from = str(saved)
        stack.reconfigure(replace(stack.config, parallelism=parallelism))
        try:
            write_flink_conf(stack.config, write_module_yaml(stack.config))  # parallelism.default, single's slots
            if stack.config.mode == "single":
                procs.stop(server, stack.config.stop_timeout_s)  # its job is over: it exits
            else:
                _match_taskmanagers(stack)
            stack.start_job(resume=True, restore_from=saved)
        except Exception as error:
            raise StartError(
                f"rescale stopped half way ({error}): the job was cancelled with a savepoint at {saved}. "
                f"Resume it with `greeter-stack down`, then `greeter-stack up` (it resumes from that savepoint; "
                f"or `greeter-stack up --from-savepoint {saved}`)"
            ) from error
        return str(saved)


def _match_taskmanagers(stack: LocalStack) -> None:
    """Cluster mode: stop the TaskManagers the parallelism no longer needs (last first), start the missing."""
    wanted = daemons.taskmanager_names(stack.config.taskmanagers)
    for proc in reversed(stack.state.procs):
        if proc.name.startswith(daemons.TASKMANAGER) and proc.name not in wanted:
            procs.stop(proc, stack.config.stop_timeout_s)
            stack.state.procs.remove(proc)
            stack.state.save()
            stack.report(f"stopped {proc.name}")
    running = {proc.name for proc in stack.running()}
    for name in wanted:
        if name not in running:
            stack.start_daemon(name)


def upgrade_greeter(stack: LocalStack) -> procs.Proc:
    """Replace the greeter's gunicorn in place, refusing no request, and return the new master's record.

    This is gunicorn's own upgrade. USR2 makes the master start a new one on the same listening socket, which loads
    the code and its settings afresh and forks its workers; once they serve, the old master is stopped
    gracefully: its workers drain, serving the runtime's kept-alive connections until its pool retires them (up to
    18 s, greeter/server/bounded_http.py), and exit. The new master is recorded in its place; its environment (the
    GREETER_* settings) is the old one's, so changing those takes `down` and `up`. NotRunning when the stack is
    not up; StartError when the new master does not serve in time.
    """
    config = stack.config
    with run_lock(config.run_dir):
        stack.require_running("cannot upgrade the greeter")
        old = stack.state.proc("greeter")
        if not procs.send(old, signal.SIGUSR2, group=False):
            raise RuntimeError("the greeter is not running")
        # gunicorn: the new master writes <pid file>.2 until the old one is gone, then renames it.
        pid_file = config.run_dir / "greeter.pid.2"
        new: list[procs.Proc] = []

        def new_master_serving() -> str | None:
            pid = int(pid_file.read_text().strip() or 0) if pid_file.exists() else 0
            if not pid or pid == old.pid:
                return "no new gunicorn master yet"
            workers = len(procs.children(pid))
            if workers < config.greeter_workers:
                return f"the new master {pid} has {workers} of {config.greeter_workers} workers"
            new[:] = [procs.Proc("greeter", pid, procs.start_ticks(pid) or 0, old.log, old.argv, old.pgid)]
            return None

        stack.wait("the upgraded greeter", new_master_serving, old)
        stack.state.replace(new[0])
        stack.state.save()
        stack.report(
            f"greeter upgraded: master {new[0].pid} serving; stopping the old master {old.pid} "
            f"(its workers drain their connections, up to the graceful timeout)"
        )
        procs.send(old, signal.SIGTERM, group=False)  # graceful: its workers drain
        deadline = config.stop_timeout_s + 30
        wait_until("the old greeter master's exit", lambda: None if not procs.is_running(old) else "still up",
                   timeout=deadline, log=Path(old.log), alive=lambda: True, stop=stack.stop_event)  # fmt: skip
        stack.wait("greeter", daemons.ready_check(config, stack.rest, "greeter", new[0]), new[0])
        return new[0]
