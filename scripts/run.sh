#!/usr/bin/env bash
# Start the whole embedded site: migrate, demo accounts, the emulator (unless OPENAI_API_KEY is set)
# and daphne's runserver on 127.0.0.1:$PORT. Ctrl-C or SIGTERM stops everything this script started.
#
# Each server runs in its own process group (setsid), so that stopping it also stops what it started
# (runserver's autoreloader runs the server in a child process), and so that a signal reaches this
# script at once instead of waiting for a foreground child to exit.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT=${PORT:-8000}
EMULATOR_PORT=${EMULATOR_PORT:-8765}
EMULATOR_SCRIPT=${EMULATOR_SCRIPT:-demo}
# How many times the emulator may die within a minute before we give up (and stop everything).
EMULATOR_MAX_RESTARTS=${EMULATOR_MAX_RESTARTS:-3}

say() { printf '%s\n' "$*"; }

port_free() {
  "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

if ! port_free "$PORT"; then
  say "Port $PORT is already in use (another 'make run'?). Stop that, or start on another port: PORT=8001 make run"
  exit 1
fi
# The emulator plays both services; any real credential (OpenAI's, or Azure's key or token) replaces it.
use_emulator=0
if [ -z "${OPENAI_API_KEY:-}" ] && [ -z "${AZURE_OPENAI_API_KEY:-}" ] && [ -z "${AZURE_OPENAI_AD_TOKEN:-}" ]; then
  use_emulator=1
fi
if [ "$use_emulator" -eq 1 ] && ! port_free "$EMULATOR_PORT"; then
  say "Port $EMULATOR_PORT (the local emulator) is already in use. Stop what uses it, or: EMULATOR_PORT=8766 make run"
  exit 1
fi

say "Preparing the database (migrations)..."
$PY manage.py migrate --noinput -v 0
$PY manage.py end_stale_sessions
say "Demo accounts:"
$PY manage.py bootstrap_demo

server_pid=""
emulator_pid=""
stopping=0

stop_group() {  # stop a process group we started, politely then firmly
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 -- "-$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
}

cleanup() {
  stopping=1
  trap - EXIT INT TERM
  stop_group "$server_pid"
  stop_group "$emulator_pid"
}
trap cleanup EXIT
trap 'say "Stopping..."; cleanup; exit 130' INT
trap 'say "Stopping..."; cleanup; exit 143' TERM

start_emulator() {
  local args=(manage.py realtime_emulator --host 127.0.0.1 --port "$EMULATOR_PORT")
  [ -n "$EMULATOR_SCRIPT" ] && args+=(--script "$EMULATOR_SCRIPT")
  setsid "$PY" "${args[@]}" &
  emulator_pid=$!
}

if [ "$use_emulator" -eq 1 ]; then
  say "No OPENAI_API_KEY (nor Azure OpenAI key): starting the local OpenAI Realtime emulator on 127.0.0.1:$EMULATOR_PORT${EMULATOR_SCRIPT:+ (conversation: $EMULATOR_SCRIPT)}"
  start_emulator
  export REALTIME_EMULATOR_URL="http://127.0.0.1:$EMULATOR_PORT/v1"
fi

setsid "$PY" manage.py runserver "127.0.0.1:$PORT" &
server_pid=$!
say "Open http://127.0.0.1:$PORT/ (admin at /admin/). Ctrl-C stops everything."

# Watch both: the site stops if its server stops; the emulator is restarted if it dies, and if it keeps
# dying we stop with a clear message rather than serve a site on which every call fails.
restarts=()
while [ "$stopping" -eq 0 ]; do
  sleep 1 &
  wait $! || true
  if ! kill -0 "$server_pid" 2>/dev/null; then
    say "The web server stopped; stopping everything."
    exit 1
  fi
  if [ -n "$emulator_pid" ] && ! kill -0 "$emulator_pid" 2>/dev/null; then
    now=$(date +%s)
    recent=()
    for t in "${restarts[@]}"; do [ $((now - t)) -lt 60 ] && recent+=("$t"); done
    restarts=("${recent[@]}" "$now")
    if [ "${#restarts[@]}" -gt "$EMULATOR_MAX_RESTARTS" ]; then
      say "The local emulator keeps stopping (${#restarts[@]} times in a minute), so calls cannot work."
      say "Look at its messages above, then run 'make run' again."
      exit 1
    fi
    say "The local emulator stopped; restarting it."
    start_emulator
  fi
done
