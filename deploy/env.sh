# Defaults of the production layout (deploy/prod.sh, deploy/kpnsctl), each
# overridable from the environment. Sourced, not run.
KPNS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${KPNS_SERVERS:=2}"          # Daphne processes (device sockets) on this machine
: "${KPNS_BASE_PORT:=8001}"     # they listen on KPNS_BASE_PORT .. + KPNS_SERVERS - 1
: "${KPNS_HTTP_PORT:=8000}"     # gunicorn (admin, API) listens here
: "${KPNS_HTTP_WORKERS:=2}"     # its worker processes
: "${KPNS_HTTP_THREADS:=4}"     # requests each worker runs at once (<= DB_POOL_MAX)
: "${KPNS_BIND:=127.0.0.1}"     # where they listen (nginx is on this machine)
: "${KPNS_SCHEDULERS:=1}"       # schedulers on this machine (1 or more)
: "${KPNS_NGINX:=true}"         # run nginx under supervisord too
: "${KPNS_HTTPS_LISTEN:=443}"   # nginx: TLS (host:port or port)
: "${KPNS_HTTP_LISTEN:=80}"     # nginx: redirects to HTTPS, /healthz
: "${KPNS_SERVER_NAME:=_}"      # nginx server_name
: "${KPNS_DRAIN_SECONDS:=10}"   # SIGTERM drain of a Daphne process
: "${KPNS_RUN_DIR:=$KPNS_ROOT/var/prod}"
: "${KPNS_PYTHON:=$KPNS_ROOT/.venv/bin/python}"
: "${KPNS_HTTP_READY_DIR:=$KPNS_RUN_DIR/http-ready}"  # gunicorn workers mark loaded
KPNS_BIN="$(dirname "$KPNS_PYTHON")"
# supervisord waits this long for a drain before SIGKILL.
KPNS_STOPWAIT=$(( ${KPNS_DRAIN_SECONDS%.*} + 15 ))
KPNS_MINFDS="$(ulimit -Hn)"
[ "$KPNS_MINFDS" = unlimited ] && KPNS_MINFDS=1048576
export KPNS_ROOT KPNS_SERVERS KPNS_BASE_PORT KPNS_HTTP_PORT KPNS_HTTP_WORKERS \
  KPNS_HTTP_THREADS KPNS_BIND KPNS_SCHEDULERS KPNS_NGINX \
  KPNS_HTTPS_LISTEN KPNS_HTTP_LISTEN KPNS_SERVER_NAME KPNS_DRAIN_SECONDS \
  KPNS_RUN_DIR KPNS_PYTHON KPNS_BIN KPNS_STOPWAIT KPNS_MINFDS KPNS_HTTP_READY_DIR
