#!/usr/bin/env bash
# kafka-run-class.sh CLASS ARGS...: a class of the broker's jars, with the tools' logging on stderr.
set -euo pipefail
exec java ${KAFKA_HEAP_OPTS:-} -Dlog4j.configuration=file:/opt/kafka/config/log4j.properties \
  -cp '/opt/kafka/libs/*' "$@"
