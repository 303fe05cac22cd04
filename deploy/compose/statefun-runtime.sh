#!/usr/bin/env bash
# Entry point of the StateFun runtime, master and worker (ROLE), in the compose stack and on Kubernetes (deploy/k8s
# mounts this file through a ConfigMap made by deploy/compose/kustomization.yaml). Before the image's own entry
# point it does two things:
# - preload jemalloc, as the Flink image's entry point does and the StateFun image's (which starts Flink directly)
#   does not: RocksDB's native allocations fragment glibc's malloc, so the process outgrows the memory Flink sized
#   it to and the container limit kills it. The Flink image installs libjemalloc; DISABLE_JEMALLOC=true skips it.
# - the master resumes the job from the newest retained checkpoint or savepoint on the shared volume, as the local
#   stack's `greeter-stack up` does, so counts continue across restarts. Savepoints count when taken into
#   /checkpoint-dir/savepoints (docs/operations.md). With neither, the job starts fresh.
# Every start is a new job with its own folder of checkpoints: resuming from a checkpoint removes the other jobs'
# folders (stack/state.py prune_other_jobs does the same for the local stack). Savepoints are never removed.
# - Flink settings from the environment, for both roles: each line `key: value` of FLINK_PROPERTIES (the Flink
#   image's variable) and of every FLINK_PROPERTIES_<NAME> becomes a dynamic property (-Dkey=value), which
#   overrides the mounted, read-only flink-conf.yaml. Kubernetes uses it for what differs per pod (a worker's
#   resource id) and for what a component or overlay adds (high availability, an object store), each in a
#   variable of its own so they never overwrite one another.
# The worker starts the TaskManager as the image's entry point does (its worker branch drops any argument).
# The STATEFUN_* variables exist for tests/unit/test_stack_state.py, which runs this script.
set -euo pipefail
checkpoint_dir=${STATEFUN_CHECKPOINT_DIR:-/checkpoint-dir}
entry_point=${STATEFUN_ENTRY_POINT:-/docker-entry-point.sh}
taskmanager=${STATEFUN_TASKMANAGER:-${FLINK_HOME:-/opt/flink}/bin/taskmanager.sh}
properties=()
for variable in $(compgen -v | grep -E '^FLINK_PROPERTIES(_[A-Z0-9_]+)?$' | sort); do
  while IFS= read -r line; do
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    if [[ ! $line =~ ^[[:space:]]*([^:[:space:]]+)[[:space:]]*:[[:space:]]*(.*[^[:space:]])[[:space:]]*$ ]]; then
      echo "$variable: not a 'key: value' line: $line" >&2
      exit 2
    fi
    properties+=("-D${BASH_REMATCH[1]}=${BASH_REMATCH[2]}")
  done <<< "${!variable}"
done
jemalloc=${STATEFUN_JEMALLOC:-/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so}
if [ "${DISABLE_JEMALLOC:-false}" != true ] && [ -f "$jemalloc" ]; then
  export LD_PRELOAD="${LD_PRELOAD:+$LD_PRELOAD:}$jemalloc"
else
  echo "not preloading jemalloc ($jemalloc; DISABLE_JEMALLOC=${DISABLE_JEMALLOC:-false}): RocksDB uses glibc's malloc"
fi
if [ "${ROLE:-worker}" != master ]; then
  exec "$taskmanager" start-foreground "-Djobmanager.rpc.address=${MASTER_HOST:-localhost}" "${properties[@]}" "$@"
fi
latest=$(ls -1dt "$checkpoint_dir"/*/chk-*/_metadata "$checkpoint_dir"/savepoints/savepoint-*/_metadata 2>/dev/null \
  | head -n 1 || true)
if [ -n "$latest" ]; then
  checkpoint=$(dirname "$latest")
  resumed_job=$(dirname "$checkpoint")
  if [ "$(dirname "$resumed_job")" = "$checkpoint_dir" ] && [[ $(basename "$resumed_job") =~ ^[0-9a-f]{32}$ ]]; then
    for job in "$checkpoint_dir"/*/; do
      job=${job%/}
      if [[ $(basename "$job") =~ ^[0-9a-f]{32}$ ]] && [ "$job" != "$resumed_job" ]; then
        echo "removing the checkpoints of an earlier job: $job"
        rm -rf -- "$job"
      fi
    done
  fi
  echo "resuming from $checkpoint"
  exec "$entry_point" --fromSavepoint "$checkpoint" --allowNonRestoredState "${properties[@]}" "$@"
fi
echo "no retained checkpoint or savepoint in $checkpoint_dir: the job starts fresh, or with high availability" \
  "from the checkpoint its record names"
exec "$entry_point" "${properties[@]}" "$@"
