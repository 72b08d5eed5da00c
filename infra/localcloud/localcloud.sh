#!/usr/bin/env bash
# opsflow local cloud: moto server (+ opsflow extension) on 127.0.0.1.
#
#   localcloud.sh install [--dev]            venv at $REPO/.venv from requirements.txt
#                                            (--dev: also requirements-dev.txt, for pytest)
#   localcloud.sh start    [--state-dir DIR] start on a free port, print the endpoint
#   localcloud.sh stop     [--state-dir DIR] stop it (SIGTERM, SIGKILL after 5 s)
#   localcloud.sh endpoint [--state-dir DIR] print the endpoint of the running server
#   localcloud.sh test     [pytest args]     install --dev, then run test_localcloud.py
#
# Every subcommand is idempotent and bounded in time. Default DIR: $REPO/.cache/localcloud.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${OPSFLOW_VENV:-$REPO/.venv}"
PY="$VENV/bin/python"
STATE_DIR="$REPO/.cache/localcloud"
START_TIMEOUT="${LOCALCLOUD_START_TIMEOUT:-60}"

die() { echo "localcloud: $*" >&2; exit 1; }
log() { echo "localcloud: $*" >&2; }

parse_state_dir() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --state-dir) [ $# -ge 2 ] || die "--state-dir needs a value"; STATE_DIR="$2"; shift 2 ;;
      --state-dir=*) STATE_DIR="${1#*=}"; shift ;;
      *) die "unknown argument: $1" ;;
    esac
  done
  mkdir -p "$STATE_DIR"
  STATE_DIR="$(cd "$STATE_DIR" && pwd)"
}

hash_files() { cat "$@" | sha256sum | cut -d' ' -f1; }

cmd_install() {
  local dev=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --dev) dev=1; shift ;;
      *) die "unknown argument: $1" ;;
    esac
  done
  local reqs=("$HERE/requirements.txt")
  [ "$dev" = 1 ] && reqs+=("$HERE/requirements-dev.txt")
  local want stamp="$VENV/.opsflow-localcloud.stamp"
  want="$(hash_files "${reqs[@]}")"
  # A --dev stamp also satisfies a plain install (it is a superset) as long as
  # requirements.txt is unchanged: both hashes are stored, one per line.
  if [ -x "$PY" ] && [ -f "$stamp" ] && grep -qx "$want" "$stamp"; then
    log "venv up to date ($VENV)"
    return 0
  fi
  if [ ! -x "$PY" ]; then
    log "creating venv $VENV"
    python3 -m venv "$VENV"
  fi
  # PIP_FIND_LINKS (and the other PIP_* settings) from the environment are honoured
  # by pip itself; only PyPI needs to be reachable.
  local args=()
  for r in "${reqs[@]}"; do args+=(-r "$r"); done
  log "pip install ${args[*]}"
  timeout 900 "$PY" -m pip install --disable-pip-version-check -q "${args[@]}" >&2
  {
    echo "$want"
    if [ "$dev" = 1 ]; then hash_files "$HERE/requirements.txt"; fi
  } > "$stamp"
}

read_pid() { [ -f "$STATE_DIR/pid" ] && cat "$STATE_DIR/pid" 2>/dev/null || true; }

alive() {  # pid -> 0 if the process exists and is not a zombie waiting to be reaped
  local pid="$1" state
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null)"
  [ "$state" != "Z" ]
}

is_running() {  # pid -> 0 if that process is alive and is our launcher
  local pid="$1"
  alive "$pid" || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "opsflow_localcloud"
}

health() {  # endpoint -> 0 if it answers
  "$PY" - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/_opsflow/health", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

cmd_start() {
  parse_state_dir "$@"
  [ -x "$PY" ] || die "no venv at $VENV: run '$0 install' first"
  local pid
  pid="$(read_pid)"
  if is_running "$pid" && [ -f "$STATE_DIR/endpoint" ] && health "$(cat "$STATE_DIR/endpoint")"; then
    cat "$STATE_DIR/endpoint"
    return 0
  fi
  if is_running "$pid"; then  # alive but not healthy: replace it
    cmd_stop_inner
  fi
  rm -f "$STATE_DIR/pid" "$STATE_DIR/endpoint"
  local attempt port endpoint
  for attempt in 1 2 3; do
    port="$(free_port)"
    endpoint="http://127.0.0.1:$port"
    MOTO_IAM_LOAD_MANAGED_POLICIES=true \
    AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}" \
    AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}" \
    AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" \
    PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 \
      nohup "$PY" "$HERE/opsflow_localcloud.py" --host 127.0.0.1 --port "$port" \
      >>"$STATE_DIR/server.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" > "$STATE_DIR/pid"
    local deadline=$(( $(date +%s) + START_TIMEOUT ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
      if ! alive "$pid"; then break; fi
      if health "$endpoint"; then
        echo "$endpoint" > "$STATE_DIR/endpoint"
        echo "$endpoint"
        return 0
      fi
      sleep 0.2
    done
    if alive "$pid"; then
      cmd_stop_inner
      die "server did not answer within ${START_TIMEOUT}s (see $STATE_DIR/server.log)"
    fi
    rm -f "$STATE_DIR/pid"
    log "server exited early (attempt $attempt, port $port); see $STATE_DIR/server.log"
  done
  tail -n 20 "$STATE_DIR/server.log" >&2 || true
  die "could not start the server"
}

cmd_stop_inner() {
  local pid
  pid="$(read_pid)"
  if is_running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 50); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      log "pid $pid ignored SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$STATE_DIR/pid" "$STATE_DIR/endpoint"
}

cmd_stop() {
  parse_state_dir "$@"
  cmd_stop_inner
}

cmd_endpoint() {
  parse_state_dir "$@"
  local pid
  pid="$(read_pid)"
  if is_running "$pid" && [ -f "$STATE_DIR/endpoint" ]; then
    cat "$STATE_DIR/endpoint"
  else
    die "no server running (state dir $STATE_DIR)"
  fi
}

cmd_test() {
  cmd_install --dev
  cd "$HERE"
  PYTHONDONTWRITEBYTECODE=1 timeout 600 "$PY" -m pytest -q -p no:cacheprovider "$@" test_localcloud.py
}

sub="${1:-}"
[ $# -gt 0 ] && shift
case "$sub" in
  install) cmd_install "$@" ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  endpoint) cmd_endpoint "$@" ;;
  test) cmd_test "$@" ;;
  *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
