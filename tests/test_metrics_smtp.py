"""The SMTP sessions gauge follows open connections in the SMTP worker process."""

from __future__ import annotations

import re
import smtplib

import httpx


def _sessions(router) -> float:  # type: ignore[no-untyped-def]
    text = httpx.get(
        f"http://127.0.0.1:{router.admin_port}/metrics", headers={"Authorization": "Bearer test-admin-token"}
    ).text
    match = re.search(r"^router_smtp_sessions (\S+)$", text, re.M)
    assert match, text[:500]
    return float(match.group(1))


def test_smtp_sessions_gauge_counts_open_connections(router_factory) -> None:  # type: ignore[no-untyped-def]
    router = router_factory('[mailboxes.support]\naddress = "support@example.com"\n')
    assert _sessions(router) == 0
    first = smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=10)
    second = smtplib.SMTP("127.0.0.1", router.smtp_port, timeout=10)
    first.ehlo()
    second.ehlo()
    router.wait_for(lambda: _sessions(router) == 2, timeout=10)
    first.quit()
    router.wait_for(lambda: _sessions(router) == 1, timeout=10)
    second.quit()
    router.wait_for(lambda: _sessions(router) == 0, timeout=10)
