"""The `router` command line (`python -m router.cli` too). Verbs live in `manage` (the data
dir) and `service` (running and installing the daemon); `parser` describes them all."""

from __future__ import annotations

import sys

from router.cli.common import Exit


def main(argv: list[str] | None = None) -> int:
    from router.cli.parser import build_parser
    from router.ops import logs

    args = build_parser().parse_args(argv)
    logs.setup("logfmt", "warning")  # `serve` sets its own format and level
    try:
        return int(args.func(args) or 0)
    except Exit as exc:
        print(exc.message, file=sys.stderr)
        return exc.code
    except BrokenPipeError:  # `router signals | head`
        sys.stderr.close()
        return 0


__all__ = ["main"]
