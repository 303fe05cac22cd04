#!/usr/bin/env bash
# Entry point of the StateFun master in the compose stack and on Kubernetes (deploy/k8s mounts this file
# through a ConfigMap made by deploy/compose/kustomization.yaml): resume the job from the newest retained
# checkpoint or savepoint on the shared volume, as the local stack's `greeter-stack up` does, so counts
# continue across restarts. Savepoints count when taken into /checkpoint-dir/savepoints (docs/operations.md).
# With neither, the job starts fresh.
# Every start is a new job with its own folder of checkpoints: resuming from a checkpoint removes the other jobs'
# folders (stack/state.py prune_other_jobs does the same for the local stack). Savepoints are never removed.
# The two variables exist for tests/unit/test_stack_state.py, which runs this script.
set -euo pipefail
checkpoint_dir=${STATEFUN_CHECKPOINT_DIR:-/checkpoint-dir}
entry_point=${STATEFUN_ENTRY_POINT:-/docker-entry-point.sh}
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
  exec "$entry_point" --fromSavepoint "$checkpoint" --allowNonRestoredState
fi
echo "no retained checkpoint or savepoint in $checkpoint_dir: starting the job fresh"
exec "$entry_point"
