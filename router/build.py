"""Turn a validated `Config` into the running parts: workflows, routes, settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from channels.http.routes import HttpSource, Previous, RouteTable
from config import Config, ConfigError, ConfigIssue, load_config
from engine.templates import TemplateEngine
from engine.workflow import SourceCaps, Workflow, compile_workflows
from router.sources import SourceState, is_active


def source_caps(cfg: Config) -> dict[str, SourceCaps]:
    caps: dict[str, SourceCaps] = {}
    for kind, name, model in cfg.sources():
        key = f"{kind}.{name}"
        if kind == "endpoints":
            rtype = model.return_type  # type: ignore[union-attr]
            caps[key] = SourceCaps(
                can_respond=rtype == "continue", can_emit=rtype == "sse", requires_sync=rtype == "sse"
            )
        elif kind in ("sms", "whatsapp"):
            caps[key] = SourceCaps(can_reply=True)
        else:
            caps[key] = SourceCaps()
    return caps


def caps_lookup(cfg: Config) -> Callable[[str], SourceCaps]:
    caps = source_caps(cfg)
    return lambda source: caps.get(source, SourceCaps())


# Source options that are templates (rendered per request, or once for keys and secrets).
SOURCE_TEMPLATES = (
    "return_data",
    "return_html",
    "return_redirect",
    "endpoint_key",
    "endpoint_secret",
    "cors_domains",
    "redirect",
    "dedup_key",
)


def source_template_problems(cfg: Config, templates: TemplateEngine) -> list[tuple[str, str]]:
    """Syntax errors and unsafe constructs in the sources' own templates, found at load time
    like the workflows' (not on the first request that renders them)."""
    problems: list[tuple[str, str]] = []
    for kind, name, model in cfg.sources():
        for option in SOURCE_TEMPLATES:
            source = getattr(model, option, None)
            if isinstance(source, str):
                error = templates.check(source)
                if error:
                    problems.append((f"{kind}.{name}.{option}", error))
    return problems


def compile_config(cfg: Config, templates: TemplateEngine) -> tuple[list[Workflow], list[ConfigIssue]]:
    workflows, problems = compile_workflows(cfg.workflows, caps_lookup(cfg), templates)
    problems = [*source_template_problems(cfg, templates), *problems]
    main = cfg.display
    issues = [ConfigIssue(cfg.origin_of(k) or main, k, m) for k, m in problems]
    return [w for w in workflows if getattr(w, "active", True)], issues


def load_checked(path: Path, templates: TemplateEngine | None = None) -> tuple[Config, list[Workflow]]:
    """Load and validate a config file, engine checks included; raises ConfigError with all issues."""
    try:
        cfg, found = load_config(path), []
    except ConfigError as exc:
        if exc.partial is None:
            raise
        cfg, found = exc.partial, exc.issues  # what validated still goes through the engine's checks
    workflows, issues = compile_config(cfg, templates or TemplateEngine())
    seen = {issue.key for issue in found}
    issues = [*found, *(issue for issue in issues if issue.key not in seen)]
    if issues:
        raise ConfigError(issues)
    return cfg, workflows


def build_routes(cfg: Config, states: dict[tuple[str, str], SourceState]) -> RouteTable:
    table = RouteTable()
    for kind, name, model in cfg.sources():
        if kind not in ("endpoints", "webhooks", "forms", "sms", "whatsapp"):
            continue
        state = states.get((kind, name))
        old = state.previous if state else None
        src = HttpSource(
            kind=kind,
            name=name,
            config=model,
            active=is_active(model, state),
            api_key=state.api_key if state else None,
            first_hash=state.first_hash if state else None,
            second_hash=state.second_hash if state else None,
            jwt_key=state.jwt_key if state else None,
            jwt_secret=state.jwt_secret if state else None,
            previous=Previous(old.until, old.api_key, old.jwt_key, old.jwt_secret) if old else None,
        )
        if kind == "endpoints":
            if old and old.first_hash and old.second_hash:
                table.endpoints[(old.first_hash, old.second_hash)] = replace(src, expires=old.until)
            if src.first_hash and src.second_hash:
                table.endpoints[(src.first_hash, src.second_hash)] = src
        else:
            getattr(table, kind)[name] = src
    return table
