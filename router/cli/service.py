"""Verbs around running the daemon: serve, check, the systemd unit and its installation,
password hashes for `[smtp] users`, shell completion."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from importlib import resources
from pathlib import Path

from config import ConfigError
from router.cli.common import EX_CONFIG, USAGE, Exit, load, print_issues

SERVICE_ENV = {"ROUTER_DATA_DIR": "/var/lib/router"}  # what the unit's Environment= gives the daemon


def cmd_serve(args: argparse.Namespace) -> int:
    from config import load_config
    from router.ops import logs
    from router.ops.shared_metrics import forget_metrics, share_metrics

    if not Path(args.config).is_file():
        raise Exit(EX_CONFIG, f"{args.config}: no such config file")
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
        return serve(
            Path(args.config), worker_index=args.worker, runner_index=args.runner, worker_args=worker_args
        )
    finally:
        if main:
            forget_metrics()


def cmd_check(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    print(f"{args.config}: OK ({len(cfg.sources())} sources, {len(cfg.workflows)} workflows)")
    return 0


def _exe() -> str:
    exe = os.path.abspath(sys.argv[0])
    if exe.endswith(".py") or os.path.basename(exe) == "__main__.py" or not os.access(exe, os.X_OK):
        return (
            f"{sys.executable} -m router.cli"  # run as `python -m router.cli`: no `router` script to point at
        )
    return exe


def _unit(config_path: str, read_from: Path) -> tuple[str, list[str]]:
    """The unit for `config_path` (where the service reads it), planned from the file at
    `read_from` as the service will see it (the unit's environment applied)."""
    from config import load_config
    from router.ops import systemd

    try:
        cfg = load_config(read_from, environ={**os.environ, **SERVICE_ENV})
    except ConfigError as exc:
        print_issues(str(read_from), exc.issues)
        raise SystemExit(EX_CONFIG) from None
    except FileNotFoundError:
        raise Exit(EX_CONFIG, f"{read_from}: no such config file") from None
    exe = _exe()
    unit_plan = systemd.plan(config_path, cfg, exe)
    if not Path(config_path).is_absolute():
        unit_plan.config = config_path
    return systemd.unit_file(exe, unit_plan.config, unit_plan=unit_plan), unit_plan.warnings


def cmd_systemd_unit(args: argparse.Namespace) -> int:
    path = os.path.abspath(args.config)
    if not Path(path).is_file():
        raise Exit(EX_CONFIG, f"{args.config}: no such config file")
    text, warnings = _unit(path, Path(path))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(text, end="")
    return 0


def default_config() -> str:
    """The embedded default config (the repository's router.toml, shipped in the package)."""
    return resources.files("router").joinpath("default.toml").read_text(encoding="utf-8")


def cmd_install_service(args: argparse.Namespace) -> int:
    root = Path(args.root)
    config = Path(args.config_path)
    unit_path = Path(args.unit_dir) / f"{args.name}.service"
    if not config.is_absolute() or not unit_path.is_absolute():
        raise Exit(USAGE, "--config-path and --unit-dir must be absolute paths (as seen by the service)")
    config_at = root / config.relative_to("/")
    unit_at = root / unit_path.relative_to("/")
    if config_at.exists():
        print(f"kept {config_at} (already there)")
    else:
        config_at.parent.mkdir(parents=True, exist_ok=True)
        config_at.write_text(default_config(), encoding="utf-8")
        config_at.chmod(0o644)  # the service's dynamic user must read it; secrets go in /etc/router/env
        print(f"wrote {config_at}")
    text, warnings = _unit(str(config), config_at)
    if unit_at.exists() and not args.force:
        if unit_at.read_text(encoding="utf-8") != text:
            raise Exit(1, f"{unit_at} exists and differs; --force replaces it")
        print(f"kept {unit_at} (unchanged)")
    else:
        unit_at.parent.mkdir(parents=True, exist_ok=True)
        unit_at.write_text(text, encoding="utf-8")
        unit_at.chmod(0o644)
        print(f"wrote {unit_at}")
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print("\nnow run:")
    print("  systemctl daemon-reload")
    print(f"  systemctl enable --now {args.name}.service")
    print(f"  systemctl status {args.name}.service   # journalctl -u {args.name} for its log")
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Never from argv: command lines are visible to every local user (ps, /proc) and land in
    shell history."""
    from config.passwords import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise Exit(1, "the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise Exit(1, "empty password")
    encoded = hash_password(password)
    print(f'{args.user} = "{encoded}"' if args.user else encoded)
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    from router.cli.parser import build_parser

    print(shtab.complete(build_parser(), shell=args.shell), end="")
    return 0
