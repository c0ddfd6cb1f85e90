"""Management verbs: they work on the data dir whether or not the daemon runs; a running daemon
notices their changes within a second."""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from router.cli.common import NOT_FOUND, USAGE, Exit, dump, load, opened, table

if TYPE_CHECKING:
    from router.storage import Tx


def cmd_endpoints(args: argparse.Namespace) -> int:
    from router import sources

    with opened(args.config) as (cfg, storage):
        if args.action in ("activate", "deactivate", "rotate"):
            if not args.name:
                raise Exit(USAGE, f"router endpoints {args.action} needs a source NAME")
            try:
                kind, name = sources.resolve_name(cfg, args.name)
            except ValueError as exc:
                raise Exit(NOT_FOUND, str(exc)) from None
            if args.action == "rotate":
                try:
                    fresh = storage.write_sync(lambda tx: sources.rotate(tx, kind, name))
                except ValueError as exc:
                    raise Exit(NOT_FOUND, str(exc)) from None
                item = next(
                    i
                    for i in sources.describe(cfg, storage.read(lambda tx: tx.source_states()))
                    if i["kind"] == kind and i["name"] == name
                )
                if args.json:
                    dump({**item, **fresh})
                else:
                    print(f"{kind}.{name} rotated: {item.get('url')}")
                return 0
            active = args.action == "activate"
            storage.write_sync(lambda tx: tx.source_set_active(kind, name, active))
            if args.json:
                dump({"source": f"{kind}.{name}", "active": active})
            else:
                print(f"{kind}.{name} {'activated' if active else 'deactivated'}")
            return 0
        items = sources.describe(cfg, storage.read(lambda tx: tx.source_states()))
        if args.json:
            dump(items)
        else:
            rows = [
                (
                    i["kind"],
                    i["name"],
                    "active" if i["active"] else "inactive",
                    i.get("url") or i.get("address"),
                )
                for i in items
            ]
            print(table(("KIND", "NAME", "STATE", "URL / ADDRESS"), rows, "no sources configured"))
        return 0


def _source_filter(cfg: Any, given: str | None, seen: bool) -> str | None:
    """`--source` as the journal spells it (`kind.name`); a short name is resolved like
    `router endpoints` does. Unknown and never seen in the journal: not found."""
    from router import sources

    if given is None:
        return None
    try:
        kind, name = sources.resolve_name(cfg, given)
        return f"{kind}.{name}"
    except ValueError as exc:
        if not seen:
            raise Exit(NOT_FOUND, str(exc)) from None
        return given  # a source since removed from the config, still in the journal


def cmd_signals(args: argparse.Namespace) -> int:
    with opened(args.config) as (cfg, storage):
        status = "failed" if args.failed else args.status
        seen = bool(args.source) and bool(
            storage.read(lambda tx: tx.list_signals(source=args.source, limit=1))
        )
        source = _source_filter(cfg, args.source, seen)
        rows = storage.read(lambda tx: tx.list_signals(status=status, source=source, limit=args.limit))
        if args.json:
            out: list[dict[str, Any]] = []
            for s in rows:
                item = s.summary()
                item["entity"] = s.entity.data
                item["runs"] = storage.read(partial(_runs, signal_id=s.id))
                out.append(item)
            dump(out)
        else:
            print(
                table(
                    ("ID", "RECEIVED", "SOURCE", "STATUS", "ATTEMPTS", "ERROR"),
                    [(s.id, s.received_at, s.source, s.status, s.attempts, s.last_error or "") for s in rows],
                    "no signals",
                )
            )
        return 0


def _runs(tx: Tx, signal_id: str) -> list[dict[str, Any]]:
    return tx.runs_for(signal_id)


def cmd_replay(args: argparse.Namespace) -> int:
    with opened(args.config) as (cfg, storage):
        signal = storage.read(lambda tx: tx.get_signal(args.signal_id))
        if signal is None:
            raise Exit(NOT_FOUND, f"no signal {args.signal_id}")
        if not storage.write_sync(lambda tx: tx.requeue(args.signal_id)):
            raise Exit(
                NOT_FOUND,
                f"signal {args.signal_id} is {signal.status}; only failed or done signals can be replayed",
            )
        print(f"{args.signal_id} queued for replay")
        return 0


def cmd_records(args: argparse.Namespace) -> int:
    from engine.records import delete_with_sink
    from router.dispatch.deletions import JournalDeletionSink

    with opened(args.config) as (cfg, storage):
        if args.action in ("show", "delete") and not args.id:
            raise Exit(USAGE, f"router records {args.action} needs TYPE and ID")
        if args.action == "delete":
            try:
                deleted = storage.write_sync(
                    lambda tx: delete_with_sink(tx, args.type, args.id, JournalDeletionSink())
                )
            except ValueError as exc:
                raise Exit(NOT_FOUND, str(exc)) from None
            if deleted is None:
                raise Exit(NOT_FOUND, f"no {args.type} record {args.id}")
            print(
                json.dumps({"deleted": args.type, "id": args.id})
                if args.json
                else f"deleted {args.type} {args.id}"
            )
            return 0
        known = sorted(set(storage.read(lambda tx: tx.record_types())) | _configured_types(cfg))
        if args.type not in known:
            raise Exit(NOT_FOUND, f"no records of type {args.type!r} (known: {', '.join(known) or 'none'})")
        if args.action == "show":
            rec = storage.read(lambda tx: tx.record_get(args.type, args.id))
            if rec is None:
                raise Exit(NOT_FOUND, f"no {args.type} record {args.id}")
            if args.json:
                dump(rec)
            else:
                print(table(("FIELD", "VALUE"), list(rec.items())))
            return 0
        rows = storage.read(lambda tx: tx.record_list(args.type, limit=args.limit))
        if args.json:
            dump(rows)
        else:
            columns = list(dict.fromkeys(key for row in rows for key in row))
            print(
                table(
                    [c.upper() for c in columns],
                    [[row.get(c) for c in columns] for row in rows],
                    f"no {args.type} records",
                )
            )
        return 0


def _configured_types(cfg: Any) -> set[str]:
    """Record types the config's steps name literally: known before their first record."""
    return {
        step.options()["record_type"]
        for workflow in cfg.workflows
        for step in workflow.steps
        if isinstance(step.options().get("record_type"), str) and "{" not in step.options()["record_type"]
    }


def cmd_schedules(args: argparse.Namespace) -> int:
    from router.schedules import scheduler as schedules

    with opened(args.config) as (cfg, storage):
        items = storage.read(lambda tx: schedules.describe(cfg, tx, count=args.count))
        if args.json:
            dump(items)
            return 0
        rows = []
        for i in items:
            spec = {
                "cron": lambda i: f'cron "{i["cron"]}"',
                "every": lambda i: f"every {i['every']:g}s",
                "at": lambda i: f"at {i['at']}",
            }[i["kind"]](i)
            rows.append(
                (
                    i["name"],
                    spec,
                    i["timezone"],
                    "active" if i["active"] else "inactive",
                    ", ".join(i["next"]) or "-",
                    i["last_slot"],
                )
            )
        print(table(("NAME", "WHEN", "TIMEZONE", "STATE", "NEXT", "LAST"), rows, "no schedules configured"))
        return 0


def cmd_jwt(args: argparse.Namespace) -> int:
    import jwt as pyjwt

    from engine.templates import TemplateEngine
    from router import sources

    cfg = load(args.config)
    try:
        kind, name = sources.resolve_name(cfg, args.name)
    except ValueError as exc:
        raise Exit(NOT_FOUND, str(exc)) from None
    model = cfg.endpoints.get(name) if kind == "endpoints" else None
    if model is None or not model.add_authentication:
        raise Exit(NOT_FOUND, f"{kind}.{name} does not use JWT authentication")
    templates = (
        TemplateEngine()
    )  # endpoint_key / endpoint_secret may be templates, as the daemon renders them
    issuer = templates.render(model.endpoint_key or "", {})
    secret = templates.render(model.endpoint_secret or "", {})
    now = int(time.time())
    claims: dict[str, Any] = {"iss": issuer, "iat": now, "exp": now + args.ttl}
    if args.data:
        try:
            claims["data"] = json.loads(args.data)
        except json.JSONDecodeError as exc:
            raise Exit(USAGE, f"--data is not valid JSON: {exc}") from None
    print(pyjwt.encode(claims, secret, algorithm="HS256"))
    return 0
