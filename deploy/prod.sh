#!/usr/bin/env bash
# The production layout on this machine (docs/operations.md): gunicorn for
# the admin and the API, K Daphne processes for the device sockets, the
# scheduler(s) and nginx under supervisord, which restarts whatever dies. `make prod` runs it; it stays in the foreground.
#
# Needs DATABASE_URL (PostgreSQL), REDIS_URL or REDIS_SENTINELS, SECRET_KEY
# and ALLOWED_HOSTS; TLS_CERT/TLS_KEY for nginx (else a self-signed one is
# made, for trying it out). Everything else: deploy/env.sh.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$KPNS_ROOT"

export DEBUG="${DEBUG:-false}" LOG_FORMAT="${LOG_FORMAT:-json}"
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$KPNS_RUN_DIR/metrics}"

missing() { echo "deploy/prod.sh: set $1 (docs/operations.md)" >&2; exit 2; }
[ -n "${DATABASE_URL:-}" ] || missing "DATABASE_URL, e.g. postgres://kpns:pw@db:5432/kpns"
[ -n "${REDIS_URL:-}${REDIS_SENTINELS:-}" ] || missing "REDIS_URL or REDIS_SENTINELS"
[ -n "${SECRET_KEY:-}" ] || missing "SECRET_KEY (50+ random characters)"
[ -n "${ALLOWED_HOSTS:-}" ] || missing "ALLOWED_HOSTS, e.g. push.example.com"

mkdir -p "$KPNS_RUN_DIR/logs"
# Metrics of the previous run's processes would be summed with this run's.
rm -rf "$PROMETHEUS_MULTIPROC_DIR"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

"$KPNS_PYTHON" manage.py check --deploy --fail-level ERROR
if [ "${KPNS_MIGRATE:-true}" = true ]; then
  "$KPNS_PYTHON" manage.py migrate --noinput
fi
"$KPNS_PYTHON" manage.py collectstatic --noinput -v0

if [ "$KPNS_NGINX" = true ]; then
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || {
    echo "deploy/prod.sh: nginx is not installed (apt-get install nginx)," \
      "or set KPNS_NGINX=false" >&2
    exit 2
  }
  if [ -z "${TLS_CERT:-}" ]; then
    TLS_CERT="$KPNS_RUN_DIR/tls/cert.pem" TLS_KEY="$KPNS_RUN_DIR/tls/key.pem"
    if [ ! -f "$TLS_CERT" ]; then
      echo "deploy/prod.sh: no TLS_CERT/TLS_KEY: making a self-signed certificate" >&2
      mkdir -p "$KPNS_RUN_DIR/tls"
      openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$TLS_KEY" -out "$TLS_CERT" 2>/dev/null
    fi
  fi
  "$KPNS_PYTHON" deploy/render_nginx.py --servers "$KPNS_SERVERS" \
    --base-port "$KPNS_BASE_PORT" --upstream-host "$KPNS_BIND" \
    --http-upstream "$KPNS_BIND:$KPNS_HTTP_PORT" \
    --http-listen "$KPNS_HTTP_LISTEN" --https-listen "$KPNS_HTTPS_LISTEN" \
    --server-name "$KPNS_SERVER_NAME" --cert "$TLS_CERT" --key "${TLS_KEY:?}" \
    --standalone "$KPNS_RUN_DIR/nginx"
  /usr/sbin/nginx -t -q -p "$KPNS_RUN_DIR/nginx" -c "$KPNS_RUN_DIR/nginx/nginx.conf"
fi

echo "deploy/prod.sh: gunicorn ($KPNS_HTTP_WORKERS workers) on $KPNS_BIND:$KPNS_HTTP_PORT," \
  "$KPNS_SERVERS Daphne processes on $KPNS_BIND:$KPNS_BASE_PORT+," \
  "$KPNS_SCHEDULERS scheduler(s), nginx=$KPNS_NGINX; logs in $KPNS_RUN_DIR/logs"
exec "$KPNS_BIN/supervisord" -c deploy/supervisord.conf
