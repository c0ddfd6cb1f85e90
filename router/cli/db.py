"""`router db copy --to postgresql://…`: move a stopped SQLite data dir into PostgreSQL."""

from __future__ import annotations

import argparse
import json

from router.cli.common import EX_UNAVAILABLE, NOT_FOUND, USAGE, Exit, load


def cmd_db(args: argparse.Namespace) -> int:
    from config.settings import check_database_url
    from router.daemon import db_path
    from router.storage import StorageError, StorageUnavailable
    from router.storage.copy import copy_sqlite_to_postgres, in_use_by

    try:
        url = check_database_url(args.to)
    except ValueError as exc:
        raise Exit(USAGE, f"--to: {exc}") from None
    cfg = load(args.config)
    db = db_path(cfg)
    busy = in_use_by(db)
    if busy:
        raise Exit(
            NOT_FOUND,
            f"{db} is open in process {', '.join(map(str, busy))}: stop the daemon first "
            "(a copy of a journal that is still being written would miss its last signals)",
        )
    try:
        counts = copy_sqlite_to_postgres(db, url)
    except StorageUnavailable as exc:
        raise Exit(EX_UNAVAILABLE, str(exc)) from None
    except StorageError as exc:
        raise Exit(NOT_FOUND, str(exc)) from None
    if args.json:
        print(json.dumps(counts))
    else:
        for table, n in counts.items():
            print(f"{table:<16} {n}")
        print(f"copied {db} to the PostgreSQL database; point [database] url at it and start the nodes")
    return 0
