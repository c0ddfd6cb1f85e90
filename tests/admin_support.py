"""Shared by the admin, metrics, reload and dashboard tests: a demo config and API helpers."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.daemon import RouterProcess

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# Every kind of source, a workflow that can fail on demand (its webhook target is scripted by the
# test), records and a deletions workflow.
DEMO = """
[endpoints.hello]
return_type = "data"
return_data = '{"hello": "{{ __data.name }}"}'
description = "Says hello"

[endpoints.orders]
return_type = "data"
return_data = "ok"

[webhooks.payments]
description = "Payment events"

[webhooks.forward]

[forms.signup]
redirect = "https://example.com/thanks"

[mailboxes.support]
address = "support@example.com"

[schedules.nightly]
cron = "0 2 * * *"
timezone = "Europe/Tirane"

[[workflows]]
name = "hello-log"
listen = "endpoints.hello"

[[workflows.steps]]
action = "log"
message = "hello {{ __data.name }}"

[[workflows]]
name = "orders-log"
listen = "endpoints.orders"

[[workflows.steps]]
action = "log"
message = "order {{ __data.n }}"

[[workflows]]
name = "payment-note"
listen = "webhooks.payments"

[[workflows.steps]]
id = "big"
condition = { left = "{{ __data.amount }}", operator = "greater", right = "100" }

[[workflows.steps]]
parent = "big"
branch = "yes"
action = "create_record"
record_type = "note"
fields = { body = "big payment {{ __data.amount }}", amount = "{{ __data.amount }}" }

[[workflows]]
name = "forward"
listen = "webhooks.forward"
max_attempts = 1

[[workflows.steps]]
id = "post"
action = "webhook"
url = "{target}/hook"
json = { n = "{{ __data.n }}" }

[[workflows]]
name = "note-deleted"
listen = "deletions.note"

[[workflows.steps]]
action = "log"
message = "note {{ __data.deleted_record.id }} deleted"
"""


def demo_config(target: str = "http://127.0.0.1:9") -> str:
    return DEMO.replace("{target}", target)


class Admin:
    """A small client for the admin API of a `RouterProcess`."""

    def __init__(self, router: RouterProcess, token: str = TOKEN) -> None:
        self.router = router
        self.base = f"http://127.0.0.1:{router.admin_port}"
        self.client = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def close(self) -> None:
        self.client.close()

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.post(path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.delete(path, **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = self.client.request(method, path, **kw)
        assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def source(self, name: str) -> dict[str, Any]:
        return dict(self.ok("GET", f"/api/sources/{name}"))

    def signal(self, signal_id: str) -> dict[str, Any]:
        return dict(self.ok("GET", f"/api/signals/{signal_id}"))

    def wait_signal(self, signal_id: str, status: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            r = self.get(f"/api/signals/{signal_id}")
            if r.status_code == 200:
                last = r.json()
                if last["status"] == status:
                    return last
            time.sleep(0.05)
        raise AssertionError(
            f"signal {signal_id} not {status} within {timeout}s: {last}\n{self.router.log()[-3000:]}"
        )


def wait_admin(router: RouterProcess, timeout: float = 20.0) -> None:
    """The admin listener starts with the other channels; wait until it answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{router.admin_port}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"admin not up:\n{router.log()}")
