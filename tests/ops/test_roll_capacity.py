"""`deploy/kpnsctl roll` drains a process only when the other live
processes have room for its sockets (devices.delivery.capacity): each
holds at most KPNS_MAX_SOCKETS_PER_PROCESS. The script runs for real here,
with a stand-in supervisorctl that records what it was asked and answers
pids, against Node rows as the servers write them."""

import http.server
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from contextlib import contextmanager
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from devices.delivery import capacity
from devices.models import Node
from tests.e2e.servers import ROOT, database_url, free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

CAPACITY = 100
PIDS = (41001, 41002)


def node(name, pid, held, *, draining=False, silent_for=0.0, host=None):
    now = timezone.now() - timedelta(seconds=silent_for)
    return Node.objects.create(
        name=name,
        channel_name=f"{name}!",
        hostname=host or socket.gethostname(),
        pid=pid,
        started_at=now,
        heartbeat_at=now,
        connections=held,
        draining=draining,
    )


def test_a_process_is_drainable_when_the_others_have_room():
    node("a", PIDS[0], 60)
    node("b", PIDS[1], 40)
    assert capacity.drain_refusals(pids=list(PIDS), capacity=CAPACITY) == []


def test_a_process_whose_sockets_do_not_fit_the_others_is_refused_by_name():
    node("a", PIDS[0], 80)
    node("b", PIDS[1], 60)
    refusals = capacity.drain_refusals(pids=list(PIDS), capacity=CAPACITY)
    # a's 80 do not fit in b's 40 free places, nor b's 60 in a's 20.
    assert len(refusals) == 2
    assert "process 41001 (a) holds 80 sockets" in refusals[0]
    assert "room for 40" in refusals[0]
    assert "b holds 60" in refusals[0]


def test_dead_draining_and_other_hosts_processes_count_as_they_should():
    node("a", PIDS[0], 90)
    node("b", PIDS[1], 20)
    node("dead", 41003, 0, silent_for=600)  # no heartbeat: no room there
    node("leaving", 41004, 0, draining=True)  # draining: takes nothing
    assert capacity.drain_refusals(pids=[PIDS[0]], capacity=CAPACITY)
    node("elsewhere", PIDS[0], 0, host="other-machine")  # same pid, other host
    assert capacity.drain_refusals(pids=[PIDS[0]], capacity=CAPACITY) == []


def test_the_default_capacity_is_the_open_file_hard_limit_minus_a_margin(settings):
    import resource

    settings.KPNS = {**settings.KPNS, "MAX_SOCKETS_PER_PROCESS": 0}
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    expected = (
        capacity.UNLIMITED if hard == resource.RLIM_INFINITY else hard
    ) - capacity.DESCRIPTOR_MARGIN
    assert capacity.max_sockets_per_process() == expected
    settings.KPNS = {**settings.KPNS, "MAX_SOCKETS_PER_PROCESS": 19_000}
    assert capacity.max_sockets_per_process() == 19_000


def test_kpns_nodes_lists_json_and_refuses_with_the_reason(settings):
    settings.KPNS = {**settings.KPNS, "MAX_SOCKETS_PER_PROCESS": CAPACITY}
    node("a", PIDS[0], 80)
    node("b", PIDS[1], 60)
    out = StringIO()
    call_command("kpns_nodes", "--json", stdout=out)
    listed = json.loads(out.getvalue())
    assert listed["max_sockets_per_process"] == CAPACITY
    assert {(n["name"], n["held"]) for n in listed["nodes"]} == {("a", 80), ("b", 60)}
    with pytest.raises(CommandError, match="no room to drain: process 41001"):
        call_command("kpns_nodes", "--can-drain", str(PIDS[0]))


# deploy/kpnsctl itself -------------------------------------------------------

SUPERVISORCTL = """#!/bin/sh
# Stand-in: answers `pid web:web-PORT` from KPNS_TEST_PIDS (PORT=PID ...),
# records every other command.
shift 2  # -c deploy/supervisord.conf
if [ "$1" = pid ]; then
  port="${2#web:web-}"
  for pair in $KPNS_TEST_PIDS; do
    [ "${pair%%=*}" = "$port" ] && echo "${pair#*=}" && exit 0
  done
  echo 0; exit 0
fi
echo "$*" >> "$KPNS_TEST_CALLS"
# A new gunicorn worker marks itself loaded (deploy/gunicorn.conf.py).
if [ "$*" = "signal TTIN http" ]; then
  touch "$KPNS_HTTP_READY_DIR/$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')"
fi
"""


class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the handler's name
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@contextmanager
def ready_on(ports):
    """/readyz answering 200 on each port, as restarted processes do."""
    servers = [
        http.server.ThreadingHTTPServer(("127.0.0.1", port), Ready) for port in ports
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def consecutive_ports(count):
    for _ in range(50):
        base = free_port()
        try:
            holders = [socket.socket() for _ in range(count)]
            for offset, holder in enumerate(holders):
                holder.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        finally:
            for holder in holders:
                holder.close()
        return base
    raise RuntimeError("no consecutive free ports")


def kpnsctl_roll(tmp_path: Path, base_port: int, http_port: int):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    ctl = bin_dir / "supervisorctl"
    ctl.write_text(SUPERVISORCTL)
    for script in (python, ctl):
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "kpns_site.settings",
        "KPNS_PYTHON": str(python),
        "KPNS_SERVERS": "2",
        "KPNS_BASE_PORT": str(base_port),
        "KPNS_HTTP_PORT": str(http_port),
        "KPNS_ROLL_PAUSE": "0",
        "KPNS_MAX_SOCKETS_PER_PROCESS": str(CAPACITY),
        "KPNS_TEST_PIDS": f"{base_port}={PIDS[0]} {base_port + 1}={PIDS[1]}",
        "KPNS_TEST_CALLS": str(calls),
        "KPNS_HTTP_WORKERS": "2",
        "KPNS_HTTP_READY_DIR": str(tmp_path / "http-ready"),
    }
    done = subprocess.run(
        ["bash", "deploy/kpnsctl", "roll"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    return done, calls.read_text().splitlines()


def test_kpnsctl_roll_refuses_before_restarting_anything(tmp_path):
    node("a", PIDS[0], 80)
    node("b", PIDS[1], 60)
    base = consecutive_ports(2)
    done, calls = kpnsctl_roll(tmp_path, base, free_port())
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "no room to drain: process 41001 (a) holds 80 sockets" in done.stderr
    assert "roll refused" in done.stderr
    assert calls == []  # nothing restarted, nothing signalled


def test_kpnsctl_roll_restarts_every_process_when_there_is_room(tmp_path):
    node("a", PIDS[0], 30)
    node("b", PIDS[1], 20)
    base, http_port = consecutive_ports(2), free_port()
    with ready_on([base, base + 1, http_port]):
        done, calls = kpnsctl_roll(tmp_path, base, http_port)
    assert done.returncode == 0, (done.stdout, done.stderr)
    # New HTTP workers first, the old ones retired once they are ready.
    assert calls[:6] == [
        f"restart web:web-{base}",
        f"restart web:web-{base + 1}",
        "signal TTIN http",
        "signal TTIN http",
        "signal TTOU http",
        "signal TTOU http",
    ]
