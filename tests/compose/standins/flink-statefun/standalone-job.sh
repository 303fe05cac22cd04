#!/usr/bin/env bash
# standalone-job.sh start-foreground [args]: StateFun's application-mode entry point, which finds the modules in
# /opt/statefun/modules.
set -euo pipefail
[ "${1:-}" = start-foreground ] || { echo "usage: standalone-job.sh start-foreground [args]" >&2; exit 1; }
shift
exec /opt/flink/bin/flink-jvm.sh GET_JM_RESOURCE_PARAMS \
  org.apache.flink.statefun.flink.launcher.StatefulFunctionsClusterEntryPoint "$@"
