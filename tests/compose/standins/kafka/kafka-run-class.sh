#!/usr/bin/env bash
# kafka-run-class.sh CLASS ARGS...: a class of the broker's jars, with the tools' logging on stderr, and KAFKA_OPTS
# after the class path as Kafka's own script passes it (e.g. a JAAS file).
set -euo pipefail
# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS and KAFKA_OPTS are space-separated JVM options
exec java ${KAFKA_HEAP_OPTS:-} -Dlog4j.configuration=file:/opt/kafka/config/log4j.properties \
  -cp '/opt/kafka/libs/*' ${KAFKA_OPTS:-} "$@"
