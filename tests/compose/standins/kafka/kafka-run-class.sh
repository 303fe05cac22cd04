#!/usr/bin/env bash
# kafka-run-class.sh CLASS ARGS...: a class of the broker's jars, with the tools' logging on stderr; KAFKA_OPTS (JVM
# options, e.g. a client's JAAS file) as the public image's script passes them.
set -euo pipefail
# shellcheck disable=SC2086  # space-separated JVM options, as Kafka's own script uses them
exec java ${KAFKA_HEAP_OPTS:-} ${KAFKA_OPTS:-} -Dlog4j.configuration=file:/opt/kafka/config/log4j.properties \
  -cp '/opt/kafka/libs/*' "$@"
