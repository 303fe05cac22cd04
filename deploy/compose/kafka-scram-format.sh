#!/usr/bin/env bash
# Entry point of the secured broker (docker-compose.kafka-sasl.yml), before the image's own (the arguments): on a
# storage not formatted yet, format it with every client's SCRAM user, which KRaft can only be given at format time
# or by a super user who already has one. The users and their passwords come from a Java argument file
# (GREETER_KAFKA_SCRAM_ARGFILE, made by `python -m deploy_render.compose_kafka`), so no password is on a command line,
# where `ps` shows it. The image's own start then finds the storage formatted and leaves it.
# StorageTool reads the broker's configuration: written here from the KAFKA_* variables by the image's rule
# (KAFKA_FOO_BAR=v is foo.bar=v, "___" stands for "-", "__" for "_"), into a file removed after.
set -euo pipefail
if [ ! -e "${KAFKA_LOG_DIRS:?}/meta.properties" ]; then
  config=$(mktemp)
  for variable in $(compgen -e | grep '^KAFKA_' | sort); do
    case $variable in
      *_OPTS | KAFKA_LOG4J_* | KAFKA_TOOLS_LOG4J_* | KAFKA_JMX_* | KAFKA_VERSION) continue ;;  # not broker settings
    esac
    key=$(printf '%s' "${variable#KAFKA_}" | tr '[:upper:]' '[:lower:]' \
      | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g')
    printf '%s=%s\n' "$key" "${!variable}" >> "$config"
  done
  echo "formatting ${KAFKA_LOG_DIRS} with the SCRAM users of ${GREETER_KAFKA_SCRAM_ARGFILE:?}"
  /opt/kafka/bin/kafka-run-class.sh "@${GREETER_KAFKA_SCRAM_ARGFILE}" --cluster-id "${CLUSTER_ID:?}" --config "$config"
  rm -f "$config"
fi
exec "$@"
