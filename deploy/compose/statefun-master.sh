#!/usr/bin/env bash
# Entry point of the compose stack's StateFun master: resume the job from the newest retained checkpoint
# on the shared volume, as the local stack's `greeter-stack up` does, so counts continue across
# `docker compose down` / `up`. With no checkpoint yet, the job starts fresh.
set -euo pipefail
latest=$(ls -1dt /checkpoint-dir/*/chk-*/_metadata 2>/dev/null | head -n 1 || true)
if [ -n "$latest" ]; then
  checkpoint=$(dirname "$latest")
  echo "resuming from the retained checkpoint $checkpoint"
  exec /docker-entry-point.sh --fromSavepoint "$checkpoint" --allowNonRestoredState
fi
echo "no retained checkpoint in /checkpoint-dir: starting the job fresh"
exec /docker-entry-point.sh
