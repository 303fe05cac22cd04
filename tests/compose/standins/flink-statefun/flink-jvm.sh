#!/usr/bin/env bash
# flink-jvm.sh GET_TM_RESOURCE_PARAMS|GET_JM_RESOURCE_PARAMS MAIN_CLASS [args]: one Flink JVM in the foreground,
# sized as Flink's scripts size it: BashJavaUtils reads flink-conf.yaml (and the -D arguments) and prints the JVM's
# memory flags and the dynamic properties that go with them, on its last two result lines.
set -euo pipefail
command=$1 main_class=$2
shift 2
conf=/opt/flink/conf
log4j=file:$conf/log4j-console.properties
classpath='/opt/flink/lib/*'
# Flink 1.16 on Java 17 needs some packages opened: the local stack's list (stack/flink.py), one per line.
mapfile -t java17 < /opt/flink/bin/java17.opts
dynamic=()
for argument in "$@"; do
  [[ $argument == -D* ]] && dynamic+=("$argument")
done
results=$(java -Dlog4j.configurationFile="$log4j" -cp "$classpath" org.apache.flink.runtime.util.bash.BashJavaUtils \
  "$command" --configDir "$conf" "${dynamic[@]}" | sed -n 's/^BASH_JAVA_UTILS_EXEC_RESULT://p' | tail -n 2)
# Flink's scripts pass env.java.opts from flink-conf.yaml to every JVM they start, then env.java.opts.taskmanager or
# env.java.opts.jobmanager to that role's.
case $command in
  GET_TM_RESOURCE_PARAMS) role=taskmanager ;;
  *) role=jobmanager ;;
esac
java_opts="$(sed -n 's/^env\.java\.opts: *//p' "$conf/flink-conf.yaml" | tail -n 1) \
$(sed -n "s/^env\\.java\\.opts\\.$role: *//p" "$conf/flink-conf.yaml" | tail -n 1)"
jvm_flags=$(sed -n 1p <<< "$results")
memory_properties=$(sed -n 2p <<< "$results")
[ -n "$jvm_flags" ] || { echo "BashJavaUtils printed no memory settings for $command" >&2; exit 1; }
# Flink finds its plugins (the Prometheus reporter) through this variable, which Flink's config.sh exports with
# this default; unset, Flink looks for plugins/ under the working directory.
export FLINK_PLUGINS_DIR=${FLINK_PLUGINS_DIR:-$FLINK_HOME/plugins}
# shellcheck disable=SC2086  # flags, options and properties are space-separated words, as Flink's scripts use them
exec java $jvm_flags $java_opts "${java17[@]}" -Dlog4j.configuration="$log4j" -Dlog4j.configurationFile="$log4j" \
  -cp "$classpath" "$main_class" --configDir "$conf" "$@" $memory_properties
