"""The argument parser: every verb and option with its help text (shtab completes from it)."""

from __future__ import annotations

import argparse
import os

from router.cli import db, endpoints, manage, service
from router.cli.common import EXIT_CODES, config_arg, json_arg
from router.version import version

DESCRIPTION = """\
router: signals from HTTP endpoints, webhooks, forms, email, SMS and schedules, journaled
durably and run through workflows. Management verbs work on the data dir whether or not the
daemon runs; a running daemon notices their changes within a second."""


def _epilog() -> str:
    codes = "\n".join(f"  {code:<3} {what}" for code, what in EXIT_CODES.items())
    return f"exit codes:\n{codes}\n\nshell completion: router completion bash|zsh|tcsh (see README)"


def filter_args(p: argparse.ArgumentParser) -> None:
    """The dashboard's signal filters, as options (the same names as its URL)."""
    p.add_argument(
        "--status", choices=["pending", "running", "done", "failed"], help="only signals in this state"
    )
    p.add_argument("--source", metavar="SOURCE", help="only this source (`hello` or `endpoints.hello`)")
    p.add_argument(
        "--channel", metavar="CHANNEL", help="only this channel (endpoints, webhooks, mailboxes, …)"
    )
    p.add_argument("--workflow", metavar="NAME", help="only signals this workflow ran for")
    p.add_argument("--since", metavar="WHEN", help="received at or after: ISO 8601, or 15m, 2h, 1d ago")
    p.add_argument("--until", metavar="WHEN", help="received before: ISO 8601, or 15m, 2h, 1d ago")
    p.add_argument(
        "-q", "--search", metavar="TEXT", help="text search: id, source, dedup key, payload values"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="router",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"router {version()}", help="print the version and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def verb(name: str, help: str, func: object) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help,
            description=help[:1].upper() + help[1:] + ".",
            epilog=_epilog(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=func)
        return p

    p = verb("serve", "run the daemon in the foreground (systemd: Type=notify)", service.cmd_serve)
    config_arg(p)
    p.add_argument(
        "--log-format",
        choices=["logfmt", "json"],
        default=os.environ.get("ROUTER_LOG_FORMAT"),
        help="log line format (default: $ROUTER_LOG_FORMAT, [router] log_format, logfmt)",
    )
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=os.environ.get("ROUTER_LOG_LEVEL"),
        help="lowest level logged (default: $ROUTER_LOG_LEVEL, [router] log_level, info)",
    )
    p.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--runner", type=int, default=0, help=argparse.SUPPRESS)

    p = verb("check", "validate a config file and print every problem at once", service.cmd_check)
    config_arg(p)

    p = verb(
        "endpoints",
        "list sources with their URLs, or activate/deactivate/rotate one",
        endpoints.cmd_endpoints,
    )
    config_arg(p)
    p.add_argument(
        "action",
        nargs="?",
        choices=["list", "activate", "deactivate", "rotate"],
        default="list",
        help="what to do (default: list)",
    )
    p.add_argument("name", nargs="?", help="source name, `invoices` or `endpoints.invoices`")
    p.add_argument(
        "--grace",
        metavar="DURATION",
        help="rotate: the old URL/key/secret keeps working this long (e.g. 1h; default 0: stops at once)",
    )
    json_arg(p)

    p = verb("signals", "list journaled signals, newest first", manage.cmd_signals)
    config_arg(p)
    p.add_argument("--failed", action="store_true", help="only failed signals (same as --status failed)")
    filter_args(p)
    p.add_argument("--before", metavar="ID", help="only signals older than this id (the next page)")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="at most N signals (default: 50; --ndjson: every match)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--json", action="store_true", help="print JSON, with each signal's entity and run traces"
    )
    out.add_argument(
        "--ndjson",
        action="store_true",
        help="export: one JSON line per signal (entity and runs), paging through every match",
    )

    p = verb(
        "refused",
        "list refused requests kept for inspection (bad key, signature, size, unknown URL…)",
        manage.cmd_refused,
    )
    config_arg(p)
    p.add_argument(
        "--source", metavar="SOURCE", help="only this source (`hello`, `endpoints.hello`, or `unknown`)"
    )
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (default: 50)")
    p.add_argument("--json", action="store_true", help="print JSON, with masked headers, body and our answer")

    p = verb(
        "replay", "run a failed (or done) signal again, or every one matching a filter", manage.cmd_replay
    )
    config_arg(p)
    p.add_argument(
        "signal_id",
        metavar="SIGNAL_ID",
        nargs="?",
        help="the signal's id (from `router signals`); or give filters instead",
    )
    filter_args(p)
    p.add_argument(
        "--spread",
        type=float,
        default=None,
        metavar="SECONDS",
        help="spread a bulk replay over this long (default: 50 signals a second, at most 300 s)",
    )
    p.add_argument("--dry-run", action="store_true", help="only count what a bulk replay would take")

    p = verb("records", "list, show or delete stored records", manage.cmd_records)
    config_arg(p)
    p.add_argument(
        "action", choices=["list", "show", "delete"], help="list a type, show or delete one record"
    )
    p.add_argument("type", metavar="TYPE", help="record type, as a workflow's record step names it")
    p.add_argument("id", nargs="?", metavar="ID", help="record id (show, delete)")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N records (default: 50)")
    json_arg(p)

    p = verb("db", "copy a stopped SQLite data dir into an empty PostgreSQL database", db.cmd_db)
    config_arg(p)
    p.add_argument(
        "action", choices=["copy"], help="copy: journal, sources, schedules, records, step effects"
    )
    p.add_argument(
        "--to", required=True, metavar="URL", help="postgresql://USER@HOST:PORT/DB (must be empty)"
    )
    json_arg(p)

    p = verb("schedules", "list schedules with their next fire times", manage.cmd_schedules)
    config_arg(p)
    p.add_argument("--count", type=int, default=3, metavar="N", help="how many next fire times (default: 3)")
    json_arg(p)

    p = verb("jwt", "mint a test token for a JWT endpoint", endpoints.cmd_jwt)
    config_arg(p)
    p.add_argument("name", metavar="NAME", help="the endpoint's name")
    p.add_argument("--data", metavar="JSON", help="JSON for the token's data claim")
    p.add_argument("--ttl", type=int, default=300, metavar="SECONDS", help="lifetime (default: 300)")

    p = verb(
        "hash-password",
        "hash a password for [smtp] users (read from a prompt or stdin, never argv)",
        service.cmd_hash_password,
    )
    p.add_argument("user", nargs="?", metavar="USER", help='print `USER = "HASH"`, ready to paste')

    p = verb("systemd-unit", "print a hardened systemd unit for this config", service.cmd_systemd_unit)
    config_arg(p)

    p = verb(
        "install-service",
        "write the systemd unit and /etc/router/router.toml, print the systemctl lines",
        service.cmd_install_service,
    )
    p.add_argument(
        "--root",
        default="/",
        metavar="DIR",
        help="install under DIR instead of / (paths in the unit stay as seen by the service)",
    )
    p.add_argument(
        "--config-path",
        default="/etc/router/router.toml",
        metavar="FILE",
        help="where the service reads its config; written from the embedded default if absent",
    )
    p.add_argument("--unit-dir", default="/etc/systemd/system", metavar="DIR", help="where the unit goes")
    p.add_argument("--name", default="router", help="unit name (default: router → router.service)")
    p.add_argument("--force", action="store_true", help="replace a unit file that differs")

    p = verb("completion", "print a shell completion script", service.cmd_completion)
    p.add_argument("shell", choices=["bash", "zsh", "tcsh"], help="the shell to complete for")
    return parser
