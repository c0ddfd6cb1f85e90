"""Management verbs: they work on the data dir whether or not the daemon runs; a running daemon
notices their changes within a second."""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router.cli.common import NOT_FOUND, USAGE, Exit, dump, opened, table

if TYPE_CHECKING:
    from router.storage import Tx
    from router.storage.rows import SignalQuery


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


def _query(args: argparse.Namespace, cfg: Any, storage: Any, *, limit: int) -> SignalQuery:
    """`router signals` / `router replay` filter options as a `SignalQuery`."""
    from router.admin.queries import parse_since
    from router.storage.rows import SignalQuery

    source = None
    if args.source:
        seen = bool(storage.read(lambda tx: tx.list_signals(source=args.source, limit=1)))
        source = _source_filter(cfg, args.source, seen)
    try:
        since = parse_since(args.since) if args.since else None
        until = parse_since(args.until) if args.until else None
    except ValueError as exc:
        raise Exit(USAGE, str(exc)) from None
    status = "failed" if getattr(args, "failed", False) else args.status
    return SignalQuery(
        search=args.search,
        channel=args.channel,
        source=source,
        status=status,
        workflow=args.workflow,
        since=since,
        until=until,
        before=getattr(args, "before", None),
        limit=limit,
    )


def cmd_signals(args: argparse.Namespace) -> int:
    import dataclasses
    import sys

    with opened(args.config) as (cfg, storage):
        if args.ndjson:
            q = _query(args, cfg, storage, limit=min(args.limit or 500, 500))
            left = args.limit
            while left is None or left > 0:
                page = storage.read(partial(_find, q=q))
                for s in page[:left]:
                    item = s.summary() | {
                        "entity": s.entity.data,
                        "runs": storage.read(partial(_runs, signal_id=s.id)),
                    }
                    sys.stdout.write(json.dumps(item, ensure_ascii=False, default=str) + "\n")
                if left is not None:
                    left -= len(page)
                if len(page) < q.limit:
                    break
                q = dataclasses.replace(q, before=page[-1].id)
            return 0
        rows = storage.read(partial(_find, q=_query(args, cfg, storage, limit=args.limit or 50)))
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


def _find(tx: Tx, q: SignalQuery) -> list[Any]:
    return tx.find_signals(q)


def cmd_refused(args: argparse.Namespace) -> int:
    from router.ops.refusals import refusal_detail

    with opened(args.config) as (cfg, storage):
        source = args.source
        if source and source != "unknown":
            seen = bool(storage.read(lambda tx: tx.refused_list(source=source, limit=1)))
            source = _source_filter(cfg, source, seen)
        rows = storage.read(lambda tx: tx.refused_list(source=source, limit=args.limit))
        if args.json:
            dump([refusal_detail(r) for r in rows])
        else:
            print(
                table(
                    ("ID", "TIME", "SOURCE", "REQUEST", "STATUS", "REASON", "REMOTE"),
                    [
                        (r.id, r.at, r.source, f"{r.method} {r.path}", r.status, r.reason, r.remote)
                        for r in rows
                    ],
                    "no refused requests",
                )
            )
        return 0


def _runs(tx: Tx, signal_id: str) -> list[dict[str, Any]]:
    return tx.runs_for(signal_id)


def cmd_replay(args: argparse.Namespace) -> int:
    import dataclasses

    from router.build import load_checked
    from router.dispatch import replay

    with opened(args.config) as (cfg, storage):
        _, workflows = load_checked(Path(args.config))

        def listeners(source: str) -> list[Any]:
            return [w for w in workflows if w.matches(source)]

        filtered = any(
            getattr(args, k) for k in ("status", "source", "channel", "workflow", "since", "until", "search")
        )
        if args.signal_id and filtered:
            raise Exit(USAGE, "router replay takes a SIGNAL_ID or filters, not both")
        if args.signal_id:
            out = storage.write_sync(lambda tx: replay.replay(tx, [args.signal_id], cfg, listeners))
            if out.skipped:
                reason = out.skipped[0]["reason"]
                raise Exit(
                    NOT_FOUND,
                    f"no signal {args.signal_id}"
                    if reason == "not found"
                    else f"signal {args.signal_id}: {reason}",
                )
            print(f"{args.signal_id} queued for replay: every workflow of its source runs again")
            return 0
        if not filtered:
            raise Exit(
                USAGE,
                "router replay needs a SIGNAL_ID or at least one filter (--status failed, --source S, …)",
            )
        if args.status and args.status not in replay.REPLAYABLE:
            raise Exit(USAGE, f"only failed or done signals replay, not {args.status}")
        q = _query(args, cfg, storage, limit=10_000)
        q = dataclasses.replace(q, statuses=() if q.status else replay.REPLAYABLE)
        ids = [s.id for s in storage.read(partial(_find, q=q))]
        if args.dry_run:
            print(f"{len(ids)} signals would be replayed")
            return 0
        spread = replay.default_spread(len(ids)) if args.spread is None else max(0.0, args.spread)
        out = storage.write_sync(lambda tx: replay.replay(tx, ids, cfg, listeners, spread=spread))
        for skipped in out.skipped:
            print(f"{skipped['id']}: not replayed: {skipped['reason']}")
        print(f"{len(out.replayed)} signals queued for replay over {spread:.1f}s")
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
