#!/usr/bin/env bash
# tests/e2e/setup.sh — install what the end-to-end suite needs (idempotent; fast when all is present).
#
#   * Debian packages: kcat (Debian's, on librdkafka 2.0.2), a JDK (java + javac), maven, python3-venv
#   * a Python venv (default ~/.cache/fjord-e2e/venv) with pinned confluent-kafka, kafka-python, pytest,
#     pytest-timeout, kafka-python's codec modules and prometheus-client (its text-format parser reads /metrics)
#   * Apache Kafka 4.3.1 jars and their runtime dependencies from Maven Central into
#     ~/.cache/fjord-e2e/kafka-4.3.1/libs (via scripts/kafka.sh fetch), and Kafka Streams 4.3.1 with its
#     dependencies into ~/.cache/fjord-e2e/kafka-4.3.1/streams-libs (scripts/kafka.sh fetch-streams)
#
# Env: FJORD_E2E_CACHE (default ~/.cache/fjord-e2e), E2E_VENV (default $FJORD_E2E_CACHE/venv).
# Prints the venv's python path on the last line of stdout.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${FJORD_E2E_CACHE:-$HOME/.cache/fjord-e2e}"
VENV="${E2E_VENV:-$CACHE/venv}"

PY_PKGS=(
  "confluent-kafka==2.16.1"
  "kafka-python==3.0.12"
  "pytest==9.0.3"
  "pytest-timeout==2.4.0"
  "python-snappy==0.7.3"
  "zstandard==0.25.0"
  "lz4==4.4.5"
  "prometheus-client==0.26.0"
)

log() { echo "[e2e-setup] $*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# ---------------------------------------------------------------- Debian packages
need_apt=()
command -v kcat >/dev/null || need_apt+=(kcat)
command -v javac >/dev/null || need_apt+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v unzip >/dev/null || need_apt+=(unzip)
command -v python3 >/dev/null || need_apt+=(python3)
if [ ! -x "$VENV/bin/python" ] && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y --no-install-recommends "${need_apt[@]}" >&2; then
    $SUDO apt-get update >&2
    $SUDO apt-get install -y --no-install-recommends "${need_apt[@]}" >&2
  fi
fi

# ---------------------------------------------------------------- Python venv
stamp="$VENV/.fjord-e2e-pkgs"
want="$(printf '%s\n' "${PY_PKGS[@]}")"
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "preparing the Python venv $VENV"
  mkdir -p "$(dirname "$VENV")"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PY_PKGS[@]}" >&2
  echo "$want" > "$stamp"
fi

# ---------------------------------------------------------------- Kafka jars
bash "$REPO/scripts/kafka.sh" fetch
bash "$REPO/scripts/kafka.sh" fetch-streams

log "ready: kcat $(kcat -V 2>&1 | sed -n 's/.*librdkafka \([0-9.]*\).*/librdkafka \1/p' | head -1), $(java -version 2>&1 | head -1)"
echo "$VENV/bin/python"
