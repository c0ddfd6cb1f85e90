"""Rules that span several tables, run after the tables themselves validated.

Each check works on whatever validated (a broken table only skips the checks that need it) so
one pass reports every problem. Results are ``(loc, message)`` pairs.
"""

from __future__ import annotations

import difflib
from typing import Any

from .settings import AdminSettings, HttpSettings, SmtpSettings, TwilioSettings
from .sources import EndpointConfig
from .workflows import SOURCE_KINDS, WorkflowConfig

__all__ = ["Loc", "Parts", "run_checks"]

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]


class Parts:
    """The tables that validated: ``sections["http"]``, ``sources["endpoints"]["x"]``,
    ``workflows[index]``; plus the raw merged dict. A section may be partial: its broken fields
    (``broken["http"]``) hold defaults and must not be trusted."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.sections: dict[str, Any] = {}
        self.broken: dict[str, set[Any]] = {}  # section -> fields that failed (defaults stand in)
        self.sources: dict[str, dict[str, Any]] = {kind: {} for kind in SOURCE_KINDS}
        self.workflows: dict[int, WorkflowConfig] = {}

    def defined_sources(self) -> list[str]:
        """``kind.name`` for every source table present in the raw data, valid or not."""
        names: list[str] = []
        for kind in SOURCE_KINDS:
            table = self.raw.get(kind)
            if isinstance(table, dict):
                names.extend(f"{kind}.{name}" for name in table)
        return names


def run_checks(parts: Parts) -> list[Problem]:
    problems: list[Problem] = []
    problems += _workflow_names(parts)
    problems += _listen_refs(parts)
    problems += _sse_needs_sync(parts)
    problems += _listen_collisions(parts)
    problems += _twilio_token(parts)
    return problems


def _workflow_names(parts: Parts) -> list[Problem]:
    raw = parts.raw.get("workflows")
    if not isinstance(raw, list):
        return []
    seen: dict[str, int] = {}
    problems: list[Problem] = []
    for index, entry in enumerate(raw):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name.strip():
            continue
        name = name.strip()
        if name in seen:
            problems.append(
                (
                    ("workflows", index, "name"),
                    f"duplicate workflow name {name!r} (also workflows[{seen[name]}]); names must be unique",
                )
            )
        else:
            seen[name] = index
    return problems


def _listen_refs(parts: Parts) -> list[Problem]:
    defined = parts.defined_sources()
    known = set(defined)
    problems: list[Problem] = []
    for index, workflow in parts.workflows.items():
        for position, ref in enumerate(workflow.listen):
            kind, _, name = ref.partition(".")
            if kind == "deletions" or name == "*" or ref in known:
                continue
            close = difflib.get_close_matches(ref, defined, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            listing = ", ".join(defined) if defined else "none are defined"
            loc: Loc = ("workflows", index, "listen")
            if len(workflow.listen) > 1:
                loc = (*loc, position)
            problems.append((loc, f"unknown source {ref!r}{hint}; defined sources: {listing}"))
    return problems


def _sse_needs_sync(parts: Parts) -> list[Problem]:
    problems: list[Problem] = []
    endpoints = parts.sources["endpoints"]
    for index, workflow in parts.workflows.items():
        if workflow.run_mode == "sync":
            continue
        for ref in workflow.listen:
            kind, _, name = ref.partition(".")
            endpoint = endpoints.get(name) if kind == "endpoints" else None
            if isinstance(endpoint, EndpointConfig) and endpoint.return_type == "sse":
                problems.append(
                    (
                        ("workflows", index, "run_mode"),
                        f'endpoint {name!r} has return_type = "sse", which needs run_mode = "sync"',
                    )
                )
    return problems


def _wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def _listen_collisions(parts: Parts) -> list[Problem]:
    listeners: list[tuple[str, HttpSettings | SmtpSettings | AdminSettings]] = []
    for section in ("http", "smtp", "admin"):
        model = parts.sections.get(section)
        broken = parts.broken.get(section, set())
        if model is None or "listen" in broken or "enabled" in broken:
            continue
        if section != "http" and not model.enabled:
            continue
        listeners.append((section, model))
    problems: list[Problem] = []
    for i, (name_a, a) in enumerate(listeners):
        for name_b, b in listeners[i + 1 :]:
            if a.port == 0 or a.port != b.port:
                continue
            if a.host == b.host or _wildcard(a.host) or _wildcard(b.host):
                problems.append(
                    (
                        (name_b, "listen"),
                        f"{b.listen!r} collides with [{name_a}] listen = {a.listen!r}; use another port",
                    )
                )
    return problems


def _twilio_token(parts: Parts) -> list[Problem]:
    twilio = parts.sections.get("twilio")
    if (
        not isinstance(twilio, TwilioSettings)
        or twilio.auth_token
        or "auth_token" in parts.broken.get("twilio", ())
    ):
        return []
    users = [
        f"{kind}.{name}"
        for kind in ("sms", "whatsapp")
        for name, model in parts.sources[kind].items()
        if model.active
    ]
    if not users:
        return []
    return [
        (
            ("twilio", "auth_token"),
            f"{', '.join(users)} {'needs' if len(users) == 1 else 'need'} the Twilio auth token to check X-Twilio-Signature; "
            'set auth_token = "${TWILIO_AUTH_TOKEN}" under [twilio] or deactivate them',
        )
    ]
