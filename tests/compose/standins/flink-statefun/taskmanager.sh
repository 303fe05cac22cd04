#!/usr/bin/env bash
# taskmanager.sh start-foreground [-Dkey=value ...]
set -euo pipefail
[ "${1:-}" = start-foreground ] || { echo "usage: taskmanager.sh start-foreground [args]" >&2; exit 1; }
shift
exec /opt/flink/bin/flink-jvm.sh GET_TM_RESOURCE_PARAMS org.apache.flink.runtime.taskexecutor.TaskManagerRunner "$@"
