#!/usr/bin/env bash
# Entry point of the StateFun master in the compose stack and on Kubernetes (deploy/k8s mounts this file
# through a ConfigMap made by deploy/compose/kustomization.yaml): resume the job from the newest retained
# checkpoint or savepoint on the shared volume, as the local stack's `greeter-stack up` does, so counts
# continue across restarts. Savepoints count when taken into /checkpoint-dir/savepoints (docs/operations.md).
# With neither, the job starts fresh.
set -euo pipefail
latest=$(ls -1dt /checkpoint-dir/*/chk-*/_metadata /checkpoint-dir/savepoints/savepoint-*/_metadata 2>/dev/null \
  | head -n 1 || true)
if [ -n "$latest" ]; then
  checkpoint=$(dirname "$latest")
  echo "resuming from $checkpoint"
  exec /docker-entry-point.sh --fromSavepoint "$checkpoint" --allowNonRestoredState
fi
echo "no retained checkpoint or savepoint in /checkpoint-dir: starting the job fresh"
exec /docker-entry-point.sh
