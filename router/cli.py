"""The `router` command line. Management verbs work on the data dir whether or not the daemon
runs; a running daemon notices their changes within a second."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config import Config, ConfigError

if TYPE_CHECKING:
    from router.storage import Storage, Tx

DEFAULT_CONFIG = "router.toml"


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=os.environ.get("ROUTER_CONFIG", DEFAULT_CONFIG), help="config file")


def _load(path: str) -> Config:
    from router.build import load_checked

    try:
        cfg, _ = load_checked(Path(path))
    except ConfigError as exc:
        print(f"{path}: {len(exc.issues)} problem(s):", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        raise SystemExit(1) from None
    except FileNotFoundError:
        print(f"{path}: no such config file", file=sys.stderr)
        raise SystemExit(1) from None
    return cfg


@contextmanager
def _opened(path: str) -> Iterator[tuple[Config, Storage]]:
    """The validated config and its data dir's storage, closed afterwards."""
    from router.daemon import open_storage

    cfg = _load(path)
    storage = open_storage(cfg)
    try:
        yield cfg, storage
    finally:
        storage.close()


def cmd_serve(args: argparse.Namespace) -> int:
    from config import load_config
    from router import logs
    from router.shared_metrics import forget_metrics, share_metrics

    if not Path(args.config).exists():
        print(f"{args.config}: no such config file", file=sys.stderr)
        return 1
    data_dir: Path | None = None
    try:
        settings = load_config(Path(args.config)).router
        data_dir = Path(settings.data_dir)
        # Flags and environment win; otherwise [router] log_format / log_level from the file.
        args.log_format = args.log_format or settings.log_format
        args.log_level = args.log_level or settings.log_level
    except ConfigError:
        pass  # the daemon reports every problem itself once logging is set up
    main = args.worker == 0 and args.runner == 0
    share_metrics(data_dir, main=main)
    from router.daemon import serve  # after share_metrics: it imports prometheus_client
    args.log_format = args.log_format or "logfmt"
    args.log_level = args.log_level or "info"
    logs.setup(args.log_format, args.log_level)
    worker_args = ["--log-format", args.log_format, "--log-level", args.log_level]
    try:
        return serve(Path(args.config), worker_index=args.worker, runner_index=args.runner, worker_args=worker_args)
    finally:
        if main:
            forget_metrics()


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    n_sources = len(cfg.sources())
    print(f"{args.config}: OK ({n_sources} sources, {len(cfg.workflows)} workflows)")
    return 0


def cmd_endpoints(args: argparse.Namespace) -> int:
    from router import sources

    with _opened(args.config) as (cfg, storage):
        if args.action in ("activate", "deactivate", "rotate"):
            if not args.name:
                print(f"router endpoints {args.action} needs a source NAME", file=sys.stderr)
                return 2
            try:
                kind, name = sources.resolve_name(cfg, args.name)
            except ValueError as exc:
                print(str(exc), file=sys.stderr)
                return 1
            if args.action == "rotate":
                try:
                    fresh = storage.write_sync(lambda tx: sources.rotate(tx, kind, name))
                except ValueError as exc:
                    print(str(exc), file=sys.stderr)
                    return 1
                item = next(i for i in sources.describe(cfg, storage.read(lambda tx: tx.source_states()))
                            if i["kind"] == kind and i["name"] == name)
                print(json.dumps({**item, **fresh}, indent=2, ensure_ascii=False) if args.json else f"{kind}.{name} rotated: {item.get('url')}")
                return 0
            active = args.action == "activate"
            storage.write_sync(lambda tx: tx.source_set_active(kind, name, active))
            print(f"{kind}.{name} {'activated' if active else 'deactivated'}")
            return 0
        items = sources.describe(cfg, storage.read(lambda tx: tx.source_states()))
        if args.json:
            print(json.dumps(items, indent=2, ensure_ascii=False))
        else:
            for item in items:
                state = "active" if item["active"] else "inactive"
                where = item.get("url") or item.get("address", "")
                print(f"{item['kind']:<10} {item['name']:<20} {state:<8} {where}")
        return 0


def cmd_signals(args: argparse.Namespace) -> int:
    with _opened(args.config) as (cfg, storage):
        status = "failed" if args.failed else args.status
        rows = storage.read(lambda tx: tx.list_signals(status=status, source=args.source, limit=args.limit))
        if args.json:
            out: list[dict[str, Any]] = []
            for s in rows:
                item = s.summary()
                item["entity"] = s.entity.data
                item["runs"] = storage.read(partial(_runs, signal_id=s.id))
                out.append(item)
            print(json.dumps(out, indent=2, ensure_ascii=False, default=str))
        else:
            for s in rows:
                err = f"  {s.last_error}" if s.last_error else ""
                print(f"{s.id}  {s.received_at}  {s.source:<28} {s.status:<8} attempts={s.attempts}{err}")
        return 0


def _runs(tx: Tx, signal_id: str) -> list[dict[str, Any]]:
    return tx.runs_for(signal_id)


def cmd_replay(args: argparse.Namespace) -> int:
    with _opened(args.config) as (cfg, storage):
        signal = storage.read(lambda tx: tx.get_signal(args.signal_id))
        if signal is None:
            print(f"no signal {args.signal_id}", file=sys.stderr)
            return 1
        if not storage.write_sync(lambda tx: tx.requeue(args.signal_id)):
            print(f"signal {args.signal_id} is {signal.status}; only failed or done signals can be replayed",
                  file=sys.stderr)
            return 1
        print(f"{args.signal_id} queued for replay")
        return 0


def cmd_records(args: argparse.Namespace) -> int:
    from engine.records import delete_with_sink
    from router.deletions import JournalDeletionSink

    with _opened(args.config) as (cfg, storage):
        if args.action == "delete":
            try:
                deleted = storage.write_sync(
                    lambda tx: delete_with_sink(tx, args.type, args.id, JournalDeletionSink())
                )
            except ValueError as exc:
                print(str(exc), file=sys.stderr)
                return 1
            if deleted is None:
                print(f"no {args.type} record {args.id}", file=sys.stderr)
                return 1
            print(f"deleted {args.type} {args.id}")
            return 0
        if args.action == "show":
            rec = storage.read(lambda tx: tx.record_get(args.type, args.id))
            if rec is None:
                print(f"no {args.type} record {args.id}", file=sys.stderr)
                return 1
            print(json.dumps(rec, indent=2, ensure_ascii=False, default=str))
            return 0
        rows = storage.read(lambda tx: tx.record_list(args.type, limit=args.limit))
        print(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
        return 0


def cmd_schedules(args: argparse.Namespace) -> int:
    from router import schedules

    with _opened(args.config) as (cfg, storage):
        items = storage.read(lambda tx: schedules.describe(cfg, tx, count=args.count))
        print(json.dumps(items, indent=2, ensure_ascii=False) if args.json else schedules.format_table(items))
        return 0


def cmd_jwt(args: argparse.Namespace) -> int:
    import jwt as pyjwt

    from router import sources

    cfg = _load(args.config)
    try:
        kind, name = sources.resolve_name(cfg, args.name)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    model = cfg.endpoints.get(name) if kind == "endpoints" else None
    if model is None or not model.add_authentication:
        print(f"{kind}.{name} does not use JWT authentication", file=sys.stderr)
        return 1
    from engine.templates import TemplateEngine

    templates = TemplateEngine()  # endpoint_key / endpoint_secret may be templates, as the daemon renders them
    issuer = templates.render(model.endpoint_key or "", {})
    secret = templates.render(model.endpoint_secret or "", {})
    now = int(time.time())
    claims: dict[str, Any] = {"iss": issuer, "iat": now, "exp": now + args.ttl}
    if args.data:
        try:
            claims["data"] = json.loads(args.data)
        except json.JSONDecodeError as exc:
            print(f"--data is not valid JSON: {exc}", file=sys.stderr)
            return 1
    print(pyjwt.encode(claims, secret, algorithm="HS256"))
    return 0


def cmd_systemd_unit(args: argparse.Namespace) -> int:
    from router.systemd import unit_file

    exe = os.path.abspath(sys.argv[0])
    if exe.endswith(".py") or not os.access(exe, os.X_OK):
        exe = f"{sys.executable} -m router.cli"  # run as `python -m router.cli`: no `router` script to point at
    print(unit_file(exe, os.path.abspath(args.config)), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="router", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the daemon")
    _config_arg(p)
    p.add_argument("--log-format", choices=["logfmt", "json"], default=os.environ.get("ROUTER_LOG_FORMAT"))
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                   default=os.environ.get("ROUTER_LOG_LEVEL"))
    p.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--runner", type=int, default=0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check", help="validate a config file")
    _config_arg(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("endpoints", help="list sources, or activate/deactivate/rotate one")
    _config_arg(p)
    p.add_argument("action", nargs="?", choices=["list", "activate", "deactivate", "rotate"], default="list")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_endpoints)

    p = sub.add_parser("signals", help="list journaled signals")
    _config_arg(p)
    p.add_argument("--failed", action="store_true")
    p.add_argument("--status", choices=["pending", "running", "done", "failed"])
    p.add_argument("--source")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_signals)

    p = sub.add_parser("replay", help="run a failed signal again")
    _config_arg(p)
    p.add_argument("signal_id")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("records", help="list, show or delete stored records")
    _config_arg(p)
    p.add_argument("action", choices=["list", "show", "delete"])
    p.add_argument("type")
    p.add_argument("id", nargs="?")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_records)

    p = sub.add_parser("schedules", help="list schedules with their next fire times")
    _config_arg(p)
    p.add_argument("--count", type=int, default=3, help="how many next fire times to show")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_schedules)

    p = sub.add_parser("jwt", help="mint a test token for a JWT endpoint")
    _config_arg(p)
    p.add_argument("name")
    p.add_argument("--data", help="JSON for the token's data claim")
    p.add_argument("--ttl", type=int, default=300)
    p.set_defaults(func=cmd_jwt)

    p = sub.add_parser("systemd-unit", help="print a hardened systemd unit")
    _config_arg(p)
    p.set_defaults(func=cmd_systemd_unit)
    return parser


def main(argv: list[str] | None = None) -> int:
    from router import logs

    args = build_parser().parse_args(argv)
    logs.setup("logfmt", "warning")  # `serve` sets its own format and level
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
