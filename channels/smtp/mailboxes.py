"""Which mailboxes a recipient address belongs to (SPEC §7: never an open relay).

`[mailboxes.NAME] address` entries match, case-insensitively:
- exactly: `support@example.com`;
- with plus-addressing: `support+billing@example.com` matches `support@example.com`
  (an address that itself contains `+` is matched exactly first);
- a whole domain: `*@example.com`.

Exact (and plus) matches win over domain wildcards: a message to `support@example.com` goes to
the mailbox(es) listing that address, not also to a `*@example.com` catch-all. When several
mailboxes list the same address, each of them gets the message (one signal per mailbox).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


def split_address(address: str) -> tuple[str, str]:
    """`Local@Domain.` → (`local`, `domain`) lowercased, without brackets or a trailing dot."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    return local.lower(), domain.lower().rstrip(".")


@dataclass(frozen=True)
class Resolution:
    """The outcome for one RCPT TO: the mailboxes it reaches, or why it is refused."""

    mailboxes: tuple[str, ...] = ()
    inactive: tuple[str, ...] = ()  # matched, but every match is deactivated
    local_domain: bool = False  # the domain is ours (unknown user) as opposed to relaying

    @property
    def accepted(self) -> bool:
        return bool(self.mailboxes)


@dataclass
class MailboxTable:
    """An immutable lookup table, rebuilt (and swapped whole) on reload or state changes."""

    exact: dict[str, list[tuple[str, bool]]] = field(
        default_factory=dict
    )  # "local@domain" → [(name, active)]
    domains: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)  # "domain" → [(name, active)]
    local_domains: frozenset[str] = frozenset()

    @classmethod
    def build(cls, mailboxes: Mapping[str, Any], active: Mapping[str, bool] | None = None) -> MailboxTable:
        """From `cfg.mailboxes` (name → MailboxConfig) and optional activation overrides."""
        table = cls()
        domains: set[str] = set()
        for name, model in mailboxes.items():
            is_active = (active or {}).get(name, bool(getattr(model, "active", True)))
            addresses: Iterable[str] = model.address if isinstance(model.address, list) else [model.address]
            for address in addresses:
                local, domain = split_address(address)
                domains.add(domain)
                if local == "*":
                    table.domains.setdefault(domain, []).append((name, is_active))
                else:
                    table.exact.setdefault(f"{local}@{domain}", []).append((name, is_active))
        table.local_domains = frozenset(domains)
        return table

    def resolve(self, recipient: str) -> Resolution:
        local, domain = split_address(recipient)
        if not local or not domain:
            return Resolution()
        candidates = [f"{local}@{domain}"]
        if "+" in local:
            candidates.append(f"{local.split('+', 1)[0]}@{domain}")
        for key in candidates:
            found = self.exact.get(key)
            if found:
                return _resolution(found)
        found = self.domains.get(domain)
        if found:
            return _resolution(found)
        return Resolution(local_domain=domain in self.local_domains)

    @property
    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for entries in (*self.exact.values(), *self.domains.values()):
            for name, _ in entries:
                seen.setdefault(name, None)
        return list(seen)


def _resolution(found: list[tuple[str, bool]]) -> Resolution:
    active = tuple(dict.fromkeys(name for name, on in found if on))
    inactive = tuple(dict.fromkeys(name for name, on in found if not on))
    return Resolution(mailboxes=active, inactive=inactive, local_domain=True)
