"""`router endpoints [activate|deactivate|rotate NAME]` and `router jwt NAME`: the sources'
URLs and credentials, read from (and changed in) the data dir; a running daemon applies a change
within a second."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from router.cli.common import NOT_FOUND, USAGE, Exit, dump, opened, table


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
                return _rotate(args, cfg, storage, kind, name)
            active = args.action == "activate"
            storage.write_sync(lambda tx: tx.source_set_active(kind, name, active))
            if args.json:
                dump({"source": f"{kind}.{name}", "active": active})
            else:
                print(f"{kind}.{name} {'activated' if active else 'deactivated'}")
            return 0
        if args.grace is not None:
            raise Exit(USAGE, "--grace goes with rotate: router endpoints rotate NAME --grace 1h")
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
            notes = [line for i in items for line in _notes(i)]
            if notes:
                print("\n" + "\n".join(notes))
        return 0


def _rotate(args: argparse.Namespace, cfg: Any, storage: Any, kind: str, name: str) -> int:
    from router import sources

    try:
        grace = sources.parse_grace(args.grace)
    except ValueError as exc:
        raise Exit(USAGE, f"--grace: {exc}") from None
    try:
        fresh = storage.write_sync(lambda tx: sources.rotate(tx, cfg, kind, name, grace))
    except ValueError as exc:
        raise Exit(NOT_FOUND, str(exc)) from None
    item = next(
        i
        for i in sources.describe(cfg, storage.read(lambda tx: tx.source_states()))
        if i["kind"] == kind and i["name"] == name
    )
    if args.json:
        dump({**item, **fresh})
        return 0
    print(f"{kind}.{name} rotated: {item.get('url')}")
    for line in _notes(item):
        print(line)
    if "previous" not in item:
        print("the previous URL/key/secret no longer works")
    return 0


def _notes(item: dict[str, Any]) -> list[str]:
    """The lines under the table: JWT credentials, and what a rotation's grace still accepts."""
    lines = []
    if "endpoint_key" in item:
        pinned = item.get("pinned", [])
        secret = "(set in the config)" if "endpoint_secret" in pinned else item.get("endpoint_secret")
        lines.append(f"{item['source']}: JWT key (iss) {item['endpoint_key']}, secret {secret}")
    old = item.get("previous")
    if old:
        what = "URL/API key" if "api_key" in old else "URL/JWT pair" if "endpoint_key" in old else "URL"
        lines.append(
            f"{item['source']}: the previous {what} works until {old['expires_at']} "
            f"({_left(old['expires_in'])} left)"
        )
    return lines


def _left(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 60}m {seconds % 60}s" if seconds >= 60 else f"{seconds}s"


def cmd_jwt(args: argparse.Namespace) -> int:
    import jwt as pyjwt

    from router import sources

    with opened(args.config) as (cfg, storage):  # the generated pair, where the config sets none
        try:
            kind, name = sources.resolve_name(cfg, args.name)
        except ValueError as exc:
            raise Exit(NOT_FOUND, str(exc)) from None
        model = cfg.endpoints.get(name) if kind == "endpoints" else None
        if model is None or not model.add_authentication:
            raise Exit(NOT_FOUND, f"{kind}.{name} does not use JWT authentication")
        state = storage.read(lambda tx: tx.source_states()).get((kind, name))
    issuer, secret = sources.jwt_pair(model, state)  # rendered, as the daemon renders templates
    now = int(time.time())
    claims: dict[str, Any] = {"iss": issuer, "iat": now, "exp": now + args.ttl}
    if args.data:
        try:
            claims["data"] = json.loads(args.data)
        except json.JSONDecodeError as exc:
            raise Exit(USAGE, f"--data is not valid JSON: {exc}") from None
    print(pyjwt.encode(claims, secret, algorithm="HS256"))
    return 0
