"""`kpns`: watch pushes for a device, send one, check a server (docs/clients.md).

    kpns listen --server URL --client-key ck_…   # register once, print pushes
    kpns push --server URL --api-key KEY --tag vip --title "Hello"
    kpns status --server URL

Options fall back on KPNS_SERVER, KPNS_CLIENT_KEY, KPNS_API_KEY and
KPNS_STATE. Exit codes: 0 done, 1 refused or unreachable, 2 bad usage,
3 the device's token was revoked or replaced.
"""

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from typing import Any, TextIO

import httpx

from kpns_sdk import api
from kpns_sdk.client import Client, FileStore, StateChange
from kpns_sdk.protocol import Push, Recall, Resync, Update

DEFAULT_SERVER = "http://127.0.0.1:8000"
DEFAULT_STATE = "~/.config/kpns/device.json"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEVICE = 0, 1, 2, 3


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    args.server = args.server.rstrip("/")
    try:
        return asyncio.run(args.run(args))
    except KeyboardInterrupt:
        return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kpns", description="KPNS command line: listen, push, status."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str, run: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--server",
            default=os.environ.get("KPNS_SERVER", DEFAULT_SERVER),
            help=f"KPNS base URL (KPNS_SERVER, default {DEFAULT_SERVER})",
        )
        sub.set_defaults(run=run)
        return sub

    listen = command(
        "listen", "Register (or reuse) a device and print its pushes.", _listen
    )
    listen.add_argument(
        "--client-key",
        default=os.environ.get("KPNS_CLIENT_KEY"),
        help="the app's client key (KPNS_CLIENT_KEY); not needed once registered",
    )
    _state_option(listen)
    listen.add_argument("--tags", default="", help="comma-separated tags")
    listen.add_argument("--alias", help="the integrator's user id for this device")
    listen.add_argument("--platform", default="desktop", help="default: desktop")
    listen.add_argument("--encoding", choices=["json", "kmpp"], default="json")
    listen.add_argument(
        "--json", action="store_true", help="one JSON object per push on stdout"
    )
    listen.add_argument(
        "--open", action="store_true", help="report every push as opened"
    )
    listen.add_argument(
        "--count", type=int, default=0, help="exit after this many pushes"
    )
    listen.add_argument(
        "--ack-each",
        action="store_true",
        help="ack every push on its own (protocol 1.0 acks) instead of "
        "cumulatively every 50 ms",
    )
    listen.add_argument(
        "--reset", action="store_true", help="forget the stored device first"
    )

    push = command("push", "Send a push through the REST API.", _push)
    push.add_argument(
        "--api-key",
        default=os.environ.get("KPNS_API_KEY"),
        help="an API key of the app (KPNS_API_KEY)",
    )
    audience = push.add_mutually_exclusive_group(required=True)
    audience.add_argument(
        "--alias", dest="aliases", action="append", help="repeat for several"
    )
    audience.add_argument("--device-id", dest="device_ids", action="append")
    audience.add_argument("--tag", dest="tags", action="append")
    push.add_argument("--title", required=True)
    push.add_argument("--body")
    push.add_argument("--url")
    push.add_argument("--image")
    push.add_argument("--data", help='a JSON object, e.g. \'{"coupon": "VIP20"}\'')
    push.add_argument("--ttl", dest="ttl_seconds", type=int, help="seconds")
    push.add_argument("--priority", choices=["normal", "high"])
    push.add_argument("--collapse-key")

    status = command("status", "Show server health and the stored device.", _status)
    _state_option(status)
    return parser


def _state_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        default=os.environ.get("KPNS_STATE", DEFAULT_STATE),
        help=f"device state file (KPNS_STATE, default {DEFAULT_STATE})",
    )


def _now() -> str:
    return time.strftime("%H:%M:%S")


def _say(text: str, out: TextIO | None = None) -> None:
    print(f"{_now()} {text}", file=out or sys.stdout, flush=True)


# listen ------------------------------------------------------------------------


async def _listen(args: argparse.Namespace) -> int:
    store = FileStore(args.state)
    if args.reset:
        store.clear()
    stored = store.load()
    if stored and args.client_key and stored.get("client_key") != args.client_key:
        return _fail(
            f"{store.path} holds a device of another app; "
            "use --state for another file, or --reset",
            EXIT_USAGE,
        )
    if stored and stored.get("server") != args.server:
        return _fail(
            f"{store.path} holds a device of {stored.get('server')}; "
            "use --state for another file, or --reset",
            EXIT_USAGE,
        )
    if not stored and not args.client_key:
        return _fail(
            f"no device stored in {store.path}: give --client-key "
            "(the app's client key, shown in the admin under Apps)",
            EXIT_USAGE,
        )
    device: dict[str, Any] = {"platform": args.platform}
    if args.tags:
        device["tags"] = [t.strip() for t in args.tags.split(",") if t.strip()]
    if args.alias is not None:
        device["alias"] = args.alias
    # Human lines go to stderr with --json so stdout stays machine-readable.
    log = sys.stderr if args.json else sys.stdout
    done = asyncio.Event()
    received = 0

    async def on_push(push: Push) -> None:
        nonlocal received
        if args.json:
            print(json.dumps(_push_dict(push), ensure_ascii=False), flush=True)
        else:
            _print_push(push)
        if args.open:
            await client.opened(push)
        received += 1
        if args.count and received >= args.count:
            done.set()

    def on_state(change: StateChange) -> None:
        if change.state == "connected":
            _say(
                f"connected (device {change.device_id}, last seq {client.last_seq})",
                log,
            )
        elif change.state == "registering":
            _say(f"registering a new device (state in {store.path})", log)
        elif change.state != "stopped":
            _say(str(change), log)

    def on_recall(recall: Recall) -> None:
        if args.json:
            print(json.dumps(_frame_dict(recall)), flush=True)
        else:
            _say(f"recall #{recall.seq} of {recall.id}: remove it")

    def on_update(update: Update) -> None:
        if args.json:
            print(json.dumps(_frame_dict(update), ensure_ascii=False), flush=True)
        else:
            _say(f"update #{update.seq} of {update.id}: now {update.title!r}")

    def on_resync(resync: Resync) -> None:
        _say(f"resync: older messages were dropped ({resync.reason})", log)

    def on_error(error: BaseException) -> None:
        _say(f"error: {error}", log)

    client = Client(
        args.server,
        args.client_key,
        store=store,
        encoding=args.encoding,
        device=device,
        on_push=on_push,
        on_state=on_state,
        on_resync=on_resync,
        on_recall=on_recall,
        on_update=on_update,
        on_error=on_error,
        ack_each=args.ack_each,
    )
    task = client.start()
    waiter = asyncio.ensure_future(done.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        await client.stop()
    if client.state in ("revoked", "replaced"):
        return EXIT_DEVICE
    if client.state == "failed":
        return EXIT_FAILED
    return EXIT_OK


def _push_dict(push: Push) -> dict[str, Any]:
    return {name: getattr(push, name) for name in push.__slots__}


def _frame_dict(frame: Recall | Update) -> dict[str, Any]:
    return {"type": frame.TYPE, **{n: getattr(frame, n) for n in frame.__slots__}}


def _print_push(push: Push) -> None:
    line = f"push #{push.seq} {push.title!r}"
    if push.body:
        line += f": {push.body}"
    _say(line)
    details = []
    if push.url:
        details.append(f"url {push.url}")
    if push.image:
        details.append(f"image {push.image}")
    if push.data:
        details.append(f"data {json.dumps(push.data, ensure_ascii=False)}")
    if push.priority != "normal":
        details.append(f"priority {push.priority}")
    details.append(f"id {push.id}")
    print(" " * 9 + "  ".join(details), flush=True)


# push --------------------------------------------------------------------------


async def _push(args: argparse.Namespace) -> int:
    if not args.api_key:
        return _fail("give --api-key (or set KPNS_API_KEY)", EXIT_USAGE)
    data = None
    if args.data:
        try:
            data = json.loads(args.data)
        except ValueError as exc:
            return _fail(f"--data is not valid JSON: {exc}", EXIT_USAGE)
        if not isinstance(data, dict):
            return _fail("--data must be a JSON object", EXIT_USAGE)
    try:
        async with httpx.AsyncClient(timeout=api.DEFAULT_TIMEOUT) as http:
            answer = await api.send_push(
                http,
                args.server,
                args.api_key,
                title=args.title,
                aliases=args.aliases,
                device_ids=args.device_ids,
                tags=args.tags,
                body=args.body,
                url=args.url,
                image=args.image,
                data=data,
                ttl_seconds=args.ttl_seconds,
                priority=args.priority,
                collapse_key=args.collapse_key,
            )
    except api.ApiError as exc:
        if exc.status == 404:
            return _fail(f"refused: {exc} (no push API at {args.server}?)")
        return _fail(f"refused: {exc}")
    except httpx.HTTPError as exc:
        return _fail(f"server unreachable: {args.server} ({exc})")
    targets = answer.get("targets")
    print(f"accepted: message {answer.get('message_id')} for {targets} device(s)")
    return EXIT_OK


# status ------------------------------------------------------------------------


async def _status(args: argparse.Namespace) -> int:
    code = EXIT_OK
    async with httpx.AsyncClient(timeout=api.DEFAULT_TIMEOUT) as http:
        try:
            status, body = await api.health(http, args.server)
        except httpx.HTTPError as exc:
            print(f"server {args.server}: unreachable ({exc})")
            status, body, code = 0, None, EXIT_FAILED
        if status:
            print(f"server {args.server}: {_health_words(status, body)}")
            if status != 200:
                code = EXIT_FAILED
        store = FileStore(args.state)
        stored = store.load()
        if not stored:
            print(f"device: none stored in {store.path}")
            return code
        print(
            f"device {stored.get('device_id')} (app key {stored.get('client_key')}, "
            f"server {stored.get('server')}); last seq handled {stored.get('last_seq')}"
        )
        if stored.get("server") != args.server or not status:
            return code
        try:
            device = await api.device_get(http, args.server, stored["token"])
        except api.ApiError as exc:
            if exc.status == 401:
                print("token revoked: register again (kpns listen --reset)")
                return EXIT_DEVICE
            print(f"device check refused: {exc}")
            return EXIT_FAILED
        except httpx.HTTPError as exc:
            print(f"device check failed: {exc}")
            return EXIT_FAILED
        online = "online" if device.get("online") else "offline"
        tags = ", ".join(device.get("tags") or []) or "none"
        print(f"token valid; {online}; platform {device.get('platform')}; tags {tags}")
    return code


def _health_words(status: int, body: Any) -> str:
    if not isinstance(body, dict):
        return f"HTTP {status}"
    checks = []
    for name, check in (body.get("checks") or {}).items():
        label = name.replace("_", " ")
        if check.get("ok"):
            details = [str(check["backend"])] if check.get("backend") else []
            if check.get("ms") is not None:
                details.append(f"{check['ms']} ms")
            checks.append(
                f"{label} ok" + (f" ({', '.join(details)})" if details else "")
            )
        elif check.get("unapplied"):
            checks.append(f"{label} FAILING ({check['unapplied']} not applied)")
        else:
            checks.append(f"{label} FAILING ({check.get('error')})")
    word = body.get("status")
    if not isinstance(word, str):  # a 503 problem body: status is the code
        word = "not ready" if status == 503 else f"HTTP {status}"
    return f"{word}: " + "; ".join(checks)


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"kpns: {message}", file=sys.stderr)
    return code


def run() -> None:
    """The console script's entry point."""
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())


if __name__ == "__main__":
    run()
