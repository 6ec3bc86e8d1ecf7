"""Render deploy/nginx/kpns.conf (docs/operations.md). Standard library only.

Two outputs:

* `--site FILE`: the server blocks for an nginx you run already (Debian:
  /etc/nginx/conf.d/kpns.conf, then `nginx -t && nginx -s reload`).
* `--standalone DIR`: DIR/nginx.conf and DIR/kpns.conf for an nginx of its
  own, `nginx -p DIR -c DIR/nginx.conf` (what `make prod` runs under
  supervisord, and what the end-to-end tests start).

Socket upstreams (Daphne, `/ws/`) are `--servers K --base-port P` (K
processes on this machine) or any number of `--upstream host:port`
(processes on other machines too). HTTP upstreams (gunicorn: the admin, the
API, health, metrics) are any number of `--http-upstream host:port`; with
none, the Daphne processes serve HTTP too (the one-process shape).
"""

import argparse
import os
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "nginx" / "kpns.conf"

STANDALONE = """# nginx of its own for KPNS (deploy/render_nginx.py --standalone).
worker_processes auto;
# Each device socket costs nginx two descriptors (device + upstream).
worker_rlimit_nofile {nofile};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections {connections};
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    server_tokens off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    include {prefix}/kpns.conf;
}}
"""


def socket_upstreams(args: argparse.Namespace) -> list[str]:
    upstreams = list(args.upstream or [])
    if args.servers:
        upstreams += [
            f"{args.upstream_host}:{args.base_port + i}" for i in range(args.servers)
        ]
    if not upstreams:
        raise SystemExit("name the Daphne processes: --servers K or --upstream h:p")
    return upstreams


def server_lines(addresses: list[str]) -> str:
    # max_fails=0: nginx never marks a process failed (why: the template's
    # comment on the upstreams, docs/operations.md "nginx").
    return "\n".join(f"    server {address} max_fails=0;" for address in addresses)


def render(args: argparse.Namespace, access_log: str) -> str:
    https_port = args.https_listen.rsplit(":", 1)[-1]
    sockets = socket_upstreams(args)
    values = {
        "SOCKET_SERVERS": server_lines(sockets),
        "HTTP_SERVERS": server_lines(list(args.http_upstream or sockets)),
        "HTTP_LISTEN": args.http_listen,
        "HTTPS_LISTEN": args.https_listen,
        "HTTPS_PORT_SUFFIX": "" if https_port == "443" else f":{https_port}",
        "SERVER_NAME": args.server_name,
        "TLS_CERT": str(Path(args.cert).resolve()),
        "TLS_KEY": str(Path(args.key).resolve()),
        "STATIC_ROOT": str(Path(args.static_root).resolve()),
        "ACCESS_LOG": access_log,
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise SystemExit(f"placeholders left unfilled: {', '.join(sorted(set(left)))}")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=0)
    parser.add_argument("--base-port", type=int, default=8001)
    parser.add_argument("--upstream-host", default="127.0.0.1")
    parser.add_argument("--upstream", action="append", metavar="HOST:PORT")
    parser.add_argument(
        "--http-upstream",
        action="append",
        metavar="HOST:PORT",
        help="the HTTP server (gunicorn); default: the Daphne processes",
    )
    parser.add_argument("--http-listen", default="80")
    parser.add_argument("--https-listen", default="443")
    parser.add_argument("--server-name", default="_")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--static-root", default=str(HERE.parent / "var" / "static"))
    parser.add_argument("--nofile", type=int, default=0, help="default: ulimit -Hn")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--site", help="write the server blocks to this file")
    out.add_argument("--standalone", help="write a whole nginx set-up to this dir")
    args = parser.parse_args(argv)

    if args.site:
        Path(args.site).write_text(render(args, "/var/log/nginx/kpns.access.log"))
        return
    prefix = Path(args.standalone).resolve()
    for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    nofile = args.nofile or _hard_nofile()
    (prefix / "kpns.conf").write_text(render(args, str(prefix / "access.log")))
    (prefix / "nginx.conf").write_text(
        STANDALONE.format(
            prefix=prefix, nofile=nofile, connections=max(1024, nofile - 100)
        )
    )


def _hard_nofile() -> int:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 65536 if hard == resource.RLIM_INFINITY else int(min(hard, 1 << 20))


if __name__ == "__main__":
    os.umask(0o022)
    main()
