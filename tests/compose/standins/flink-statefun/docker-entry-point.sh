#!/usr/bin/env bash
# ROLE=master: the JobManager with the StateFun job (application mode); ROLE=worker: a TaskManager. Arguments go on.
set -euo pipefail
case ${ROLE:-worker} in
  worker) exec /opt/flink/bin/taskmanager.sh start-foreground "-Djobmanager.rpc.address=${MASTER_HOST:-localhost}" "$@" ;;
  master) exec /opt/flink/bin/standalone-job.sh start-foreground "-Djobmanager.rpc.address=${MASTER_HOST:-localhost}" "$@" ;;
  *) echo "unknown role ${ROLE}" >&2; exit 1 ;;
esac
