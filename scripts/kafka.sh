#!/usr/bin/env bash
# kafka.sh — run a single-node KRaft Apache Kafka 4.3.1 from the Maven Central jars.
#
#   scripts/kafka.sh fetch                    download kafka 4.3.1 + runtime deps into $KAFKA_LIBS (idempotent)
#   scripts/kafka.sh fetch-streams            download kafka-streams 4.3.1 + runtime deps into $STREAMS_LIBS
#                                             (idempotent; a folder of its own so $KAFKA_LIBS stays as it is)
#   scripts/kafka.sh start PORT DIR [NAME=VALUE ...]
#                                             start a broker+controller listening on 127.0.0.1:PORT with its
#                                             state under DIR (formatted on first use, reused afterwards, so
#                                             start/stop/start is a restart). NAME=VALUE (or --set NAME=VALUE)
#                                             become server.properties lines. Prints the pid, then waits until
#                                             the broker serves (KAFKA_START_TIMEOUT_S, default 120).
#   scripts/kafka.sh run PORT DIR [NAME=VALUE ...]
#                                             the same in the foreground (exec java; logs to stdout)
#   scripts/kafka.sh stop DIR                 SIGTERM, wait for exit (KAFKA_STOP_TIMEOUT_S, default 60), then SIGKILL
#   scripts/kafka.sh kill DIR                 SIGKILL
#   scripts/kafka.sh pid DIR                  print the pid if running
#   scripts/kafka.sh java CLASS ARGS...       run a Kafka class (a tool) with the jars on the classpath
#
# Files under DIR: server.properties, data/ (log.dirs), kafka.log (stdout+stderr), kafka.pid,
# cluster.id and controller.port (kept across restarts).
# Env: KAFKA_LIBS (default ~/.cache/fjord-e2e/kafka-4.3.1/libs), KAFKA_HEAP_OPTS (default -Xmx1g -Xms1g),
#      KAFKA_JVM_OPTS (extra JVM flags, e.g. -XX:TieredStopAtLevel=1 for faster start-up in tests),
#      CONTROLLER_PORT (default: a free port picked on first start),
#      KAFKA_FORMAT_ARGS (extra `kafka-storage format` arguments on first use, e.g. --release-version 3.9).
set -euo pipefail

KAFKA_VERSION=4.3.1
CACHE="${FJORD_E2E_CACHE:-$HOME/.cache/fjord-e2e}"
KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
KAFKA_LIBS="${KAFKA_LIBS:-$KAFKA_HOME/libs}"
STREAMS_LIBS="${STREAMS_LIBS:-$KAFKA_HOME/streams-libs}"

log() { echo "[kafka.sh] $*" >&2; }
die() { echo "[kafka.sh] ERROR: $*" >&2; exit 1; }

# ------------------------------------------------------------------ fetch
pom() {
  cat <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>fjord.e2e</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
POM
  local a
  for a in kafka_2.13 kafka-clients kafka-tools kafka-server kafka-storage kafka-metadata kafka-raft; do
    echo "    <dependency><groupId>org.apache.kafka</groupId><artifactId>$a</artifactId><version>$KAFKA_VERSION</version></dependency>"
  done
  # Kafka 4.x logs through slf4j 1.7 -> log4j2; the jars do not declare the binding.
  echo "    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.25.4</version></dependency>"
  cat <<POM
  </dependencies>
</project>
POM
}

cmd_fetch() {
  local stamp="$KAFKA_LIBS/.complete" want
  want="$(pom | sha256sum | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
  mkdir -p "$KAFKA_HOME"
  pom > "$KAFKA_HOME/pom.xml"
  log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS.tmp"
  if ! mvn -q -B -f "$KAFKA_HOME/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$KAFKA_LIBS.tmp" > "$KAFKA_HOME/mvn.log" 2>&1; then
    cat "$KAFKA_HOME/mvn.log" >&2
    die "maven failed"
  fi
  local c f
  for c in kafka.Kafka kafka.tools.StorageTool org.apache.kafka.tools.TopicCommand kafka.admin.ConfigCommand \
           org.apache.kafka.tools.ConsoleProducer org.apache.kafka.tools.consumer.ConsoleConsumer \
           org.apache.kafka.tools.ProducerPerformance org.apache.kafka.tools.ConsumerPerformance \
           org.apache.kafka.tools.DeleteRecordsCommand org.apache.logging.slf4j.Log4jLoggerFactory; do
    f="$(echo "$c" | tr . /).class"
    found=""
    for j in "$KAFKA_LIBS.tmp"/*.jar; do
      if unzip -l "$j" "$f" >/dev/null 2>&1; then found=1; break; fi
    done
    [ -n "$found" ] || die "class $c not found in the fetched jars"
  done
  rm -rf "$KAFKA_LIBS"
  mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
  echo "$want" > "$stamp"
}

streams_pom() {
  cat <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>fjord.e2e</groupId>
  <artifactId>kafka-streams-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-streams</artifactId><version>$KAFKA_VERSION</version></dependency>
  </dependencies>
</project>
POM
}

cmd_fetch_streams() {
  local stamp="$STREAMS_LIBS/.complete" want dir="$KAFKA_HOME/streams-pom"
  want="$(streams_pom | sha256sum | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
  mkdir -p "$dir"
  streams_pom > "$dir/pom.xml"
  log "fetching Kafka Streams $KAFKA_VERSION jars from Maven Central into $STREAMS_LIBS"
  rm -rf "$STREAMS_LIBS.tmp"
  if ! mvn -q -B -f "$dir/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$STREAMS_LIBS.tmp" > "$dir/mvn.log" 2>&1; then
    cat "$dir/mvn.log" >&2
    die "maven failed"
  fi
  [ -f "$STREAMS_LIBS.tmp/kafka-streams-$KAFKA_VERSION.jar" ] || die "kafka-streams jar not among the fetched jars"
  rm -rf "$STREAMS_LIBS"
  mv "$STREAMS_LIBS.tmp" "$STREAMS_LIBS"
  echo "$want" > "$stamp"
}

need_libs() {
  [ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ] || die "Kafka jars missing in $KAFKA_LIBS: run '$0 fetch' (or tests/e2e/setup.sh)"
}

# ------------------------------------------------------------------ helpers
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p tries=0
  while [ $tries -lt 200 ]; do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    if ! port_open "$p"; then echo "$p"; return 0; fi
    tries=$((tries + 1))
  done
  die "no free port found"
}

new_cluster_id() {
  # a Kafka Uuid in its base64url form; one starting with '-' would be read as an option by StorageTool
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    case "$id" in -*) ;; *) echo "$id"; return 0 ;; esac
  done
}

running_pid() {
  local dir="$1" pid
  [ -f "$dir/kafka.pid" ] || return 1
  pid="$(cat "$dir/kafka.pid")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

write_log4j() {
  cat > "$1" <<'L4J'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka_request.name = kafka.request.logger
logger.kafka_request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = WARN
logger.raft.name = org.apache.kafka.raft
logger.raft.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.cfg.name = kafka.server.KafkaConfig
logger.cfg.level = WARN
logger.logcfg.name = org.apache.kafka.storage.internals.log.LogConfig
logger.logcfg.level = WARN
logger.abscfg.name = org.apache.kafka.common.config.AbstractConfig
logger.abscfg.level = WARN
L4J
}

java_opts() {
  # shellcheck disable=SC2206
  local heap=(${KAFKA_HEAP_OPTS:--Xmx1g -Xms1g})
  # shellcheck disable=SC2206
  local extra=(${KAFKA_JVM_OPTS:-})
  printf '%s\n' "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true "${extra[@]}"
}

# ------------------------------------------------------------------ start/stop
# prepare PORT DIR [NAME=VALUE ...]: write DIR/server.properties, format DIR/data on first use.
prepare() {
  [ $# -ge 2 ] || die "usage: $0 start|run PORT DIR [NAME=VALUE ...]"
  local port="$1" dir="$2"; shift 2
  need_libs
  command -v java >/dev/null || die "java not found"
  mkdir -p "$dir/data"
  dir="$(cd "$dir" && pwd)"
  local pid
  if pid="$(running_pid "$dir")"; then die "already running in $dir (pid $pid)"; fi
  if port_open "$port"; then die "port $port is already in use"; fi

  local cport cid
  if [ -f "$dir/controller.port" ]; then cport="$(cat "$dir/controller.port")"
  else cport="${CONTROLLER_PORT:-$(free_port)}"; echo "$cport" > "$dir/controller.port"; fi
  if [ -f "$dir/cluster.id" ]; then cid="$(cat "$dir/cluster.id")"
  else cid="$(new_cluster_id)"; echo "$cid" > "$dir/cluster.id"; fi

  {
    echo "# written by scripts/kafka.sh"
    echo "process.roles=broker,controller"
    echo "node.id=1"
    echo "controller.quorum.bootstrap.servers=127.0.0.1:$cport"
    echo "listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
    echo "advertised.listeners=PLAINTEXT://127.0.0.1:$port"
    echo "inter.broker.listener.name=PLAINTEXT"
    echo "controller.listener.names=CONTROLLER"
    echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    echo "log.dirs=$dir/data"
    echo "num.partitions=1"
    echo "auto.create.topics.enable=true"
    echo "offsets.topic.replication.factor=1"
    echo "offsets.topic.num.partitions=1"
    echo "transaction.state.log.replication.factor=1"
    echo "transaction.state.log.min.isr=1"
    echo "share.coordinator.state.topic.replication.factor=1"
    echo "share.coordinator.state.topic.min.isr=1"
    echo "group.initial.rebalance.delay.ms=0"
    # after a kill -9 the restarted broker cannot register until its old session expires (default 9 s)
    echo "broker.heartbeat.interval.ms=500"
    echo "broker.session.timeout.ms=2000"
    echo "# extra settings"
    local kv
    while [ $# -gt 0 ]; do
      if [ "$1" = "--set" ]; then shift; [ $# -gt 0 ] || die "--set needs NAME=VALUE"; fi
      kv="$1"; shift
      case "$kv" in *=*) echo "$kv" ;; *) die "bad setting '$kv' (want NAME=VALUE)" ;; esac
    done
  } > "$dir/server.properties"
  write_log4j "$dir/log4j2.properties"

  if [ ! -f "$dir/data/meta.properties" ]; then
    java -Xmx256m -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$KAFKA_LIBS/*" \
      kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" --standalone \
      ${KAFKA_FORMAT_ARGS:-} >> "$dir/kafka.log" 2>&1 || { tail -20 "$dir/kafka.log" >&2; die "storage format failed"; }
  fi
}

cmd_start() {
  prepare "$@"
  local port="$1" dir; dir="$(cd "$2" && pwd)"
  local opts; mapfile -t opts < <(java_opts)
  echo "=== start $(date -Is) port=$port" >> "$dir/kafka.log"
  local mark; mark=$(wc -l < "$dir/kafka.log")
  setsid java "${opts[@]}" -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$KAFKA_LIBS/*" \
    kafka.Kafka "$dir/server.properties" >> "$dir/kafka.log" 2>&1 < /dev/null &
  local pid=$!
  echo "$pid" > "$dir/kafka.pid"
  echo "$pid"
  local deadline=$(( SECONDS + ${KAFKA_START_TIMEOUT_S:-120} ))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then tail -40 "$dir/kafka.log" >&2; die "kafka exited during start"; fi
    if tail -n +"$((mark + 1))" "$dir/kafka.log" | grep -q "Kafka Server started" && port_open "$port"; then break; fi
    if [ $SECONDS -ge $deadline ]; then tail -40 "$dir/kafka.log" >&2; die "kafka did not start in time"; fi
    sleep 0.2
  done
  log "kafka $KAFKA_VERSION serving on 127.0.0.1:$port (pid $pid, dir $dir)"
}

# run: like start, but in the foreground (logs to stdout/stderr; the JVM replaces this shell)
cmd_run() {
  prepare "$@"
  local dir; dir="$(cd "$2" && pwd)"
  local opts; mapfile -t opts < <(java_opts)
  exec java "${opts[@]}" -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$KAFKA_LIBS/*" \
    kafka.Kafka "$dir/server.properties"
}

cmd_stop() {
  [ $# -ge 1 ] || die "usage: $0 stop DIR"
  local dir="$1" pid
  pid="$(running_pid "$dir")" || { rm -f "$dir/kafka.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$(( SECONDS + ${KAFKA_STOP_TIMEOUT_S:-60} ))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then log "pid $pid did not stop; SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
    sleep 0.2
  done
  rm -f "$dir/kafka.pid"
}

cmd_kill() {
  local dir="$1" pid
  pid="$(running_pid "$dir")" || return 0
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$dir/kafka.pid"
}

cmd_java() {
  need_libs
  local cls="$1"; shift
  exec java -Xmx256m -cp "$KAFKA_LIBS/*" "$cls" "$@"
}

case "${1:-}" in
  fetch) shift; cmd_fetch "$@" ;;
  fetch-streams) shift; cmd_fetch_streams "$@" ;;
  start) shift; cmd_start "$@" ;;
  run) shift; cmd_run "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  kill) shift; cmd_kill "$@" ;;
  pid) shift; running_pid "$1" ;;
  java) shift; cmd_java "$@" ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2 ;;
esac
