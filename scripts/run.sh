#!/usr/bin/env bash
# Start the whole embedded site: migrate, demo accounts, the emulator (unless OPENAI_API_KEY is set)
# and daphne's runserver on 127.0.0.1:8000. Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT=${PORT:-8000}
EMULATOR_PORT=${EMULATOR_PORT:-8765}

$PY manage.py migrate --noinput
$PY manage.py end_stale_sessions
echo "Demo accounts:"
$PY manage.py bootstrap_demo

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

if [ -z "${OPENAI_API_KEY:-}" ]; then
  echo "No OPENAI_API_KEY: starting the local OpenAI Realtime emulator on 127.0.0.1:$EMULATOR_PORT"
  $PY manage.py realtime_emulator --host 127.0.0.1 --port "$EMULATOR_PORT" &
  pids+=($!)
  export REALTIME_EMULATOR_URL="http://127.0.0.1:$EMULATOR_PORT/v1"
fi

echo "Open http://127.0.0.1:$PORT/ (admin at /admin/)"
$PY manage.py runserver "127.0.0.1:$PORT"
