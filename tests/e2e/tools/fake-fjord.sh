#!/usr/bin/env bash
# fake-fjord.sh — a stand-in for the fjord binary that runs Apache Kafka 4.3.1 behind fjord's command line,
# to check the suite's E2E_BROKER=fjord code path (process handling, --set, SIGTERM, SIGKILL) before
# fjord exists:
#   E2E_BROKER=fjord FJORD_BIN=tests/e2e/tools/fake-fjord.sh pytest tests/e2e
# Understands: serve --listen HOST:PORT --data-dir DIR [--set NAME=VALUE ...]. SIGTERM stops Kafka and
# exits 0 (as fjord's clean shutdown does); kill the process group to SIGKILL everything.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_SH="$HERE/../../../scripts/kafka.sh"

[ "${1:-}" = serve ] || { echo "usage: $0 serve --listen HOST:PORT --data-dir DIR [--set K=V ...]" >&2; exit 2; }
shift
listen="" dir="" sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --listen) listen="$2"; shift 2 ;;
    --data-dir) dir="$2"; shift 2 ;;
    --set) sets+=("$2"); shift 2 ;;
    *) echo "fake-fjord: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$listen" ] && [ -n "$dir" ] || { echo "fake-fjord: --listen and --data-dir are required" >&2; exit 2; }
port="${listen##*:}"
mkdir -p "$dir"
if [ ! -f "$dir/controller.port" ]; then
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' > "$dir/controller.port"
fi
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:--XX:TieredStopAtLevel=1}" bash "$KAFKA_SH" run "$port" "$dir" "${sets[@]}" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null; wait "$child" || true; exit 0' TERM INT
wait "$child"
