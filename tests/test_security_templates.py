"""Template injection against the real daemon (SPEC §8: the caller's data is only ever data).

Payloads arrive in JSON bodies, keys, query strings, headers, form fields and upload names, flow
through every templated place (endpoint replies, a workflow's store / create_record / respond,
a form's redirect) and come out literally; nothing is evaluated, and nothing slow happens. Escape
attempts written into the config's own templates are refused: at load time when they can be seen
there, at run time (a failed step, nothing leaked) when they are built dynamically."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from markupsafe import escape

from tests.daemon import RouterFactory, RouterProcess
from tests.security_support import journal_entities

PAYLOADS = [
    "{{ 7*7 }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ config }}",
    "{{ config.items() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ __data.__headers }}",
    "{% for i in range(100000000) %}x{% endfor %}",
    "{{ range(10**9)|list }}",
    "{{ 'x' * 100000000 }}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
    "{% raw %}{{ 1 }}",
    "{% endraw %}{{ 7*7 }}",
    "{# unterminated comment",
    "}}{{",
    "{% set x = 1 %}{{ x }}",
    "${7*7} #{7*7} <%= 7*7 %> *{7*7}",
    '{{ "\\x41" }}',
]

CONFIG = """
[endpoints.echo]
return_type = "data"
return_data = '{"name": {{ __data.name | json_encode }}, "header": {{ __data.__headers["x-payload"] | json_encode }}, "query": {{ __data.__query.q | json_encode }}}'

[endpoints.page]
return_type = "html"
return_html = "<p>{{ __data.name }}</p>"

[endpoints.plain]
return_type = "data"
return_data = "Hello {{ __data.name }}!"

[endpoints.flow]
return_type = "continue"

[forms.signup]
redirect = "/thanks?n={{ __data.name | url_encode }}"

[[workflows]]
name = "flow"
listen = "endpoints.flow"
run_mode = "sync"

[[workflows.steps]]
id = "copy"
action = "store"
name = "copy"
value = "{{ __data.name }}"

[[workflows.steps]]
id = "note"
parent = "copy"
action = "create_record"
record_type = "note"
fields = { body = "{{ __data.copy }}", shout = "{{ __data.name | upper }}", key = "{{ __data.key }}" }

[[workflows.steps]]
parent = "note"
action = "respond"
return_type = "data"
return_data = '{{ {"copy": __data.copy, "shout": __data.name | upper, "keys": __data.nested.keys() | list} | json_encode }}'
"""


@pytest.fixture(scope="module")
def router(module_router_factory: RouterFactory) -> RouterProcess:
    return module_router_factory(CONFIG)


@pytest.fixture(scope="module")
def urls(router: RouterProcess) -> dict[str, str]:
    return {k: str(v["url"]) for k, v in router.sources().items()}


def test_payloads_in_every_place_come_back_literally(router: RouterProcess, urls: dict[str, str]) -> None:
    started = time.monotonic()
    with httpx.Client(timeout=10) as client:
        for payload in PAYLOADS:
            header = payload.encode("ascii").decode("latin-1")
            r = client.post(
                urls["endpoints.echo"],
                params={"q": payload},
                json={"name": payload},
                headers={"X-Payload": header},
            )
            assert r.status_code == 200, (payload, r.text)
            assert r.json() == {"name": payload, "header": header, "query": payload}
            r = client.post(urls["endpoints.page"], data={"name": payload})
            assert r.status_code == 200 and r.text == f"<p>{escape(payload)}</p>", (payload, r.text)
            r = client.get(urls["endpoints.plain"], params={"name": payload})
            assert r.status_code == 200 and r.text == f"Hello {payload}!", (payload, r.text)
            # Through a workflow: stored, recorded, uppercased, and data keys are data too.
            r = client.post(
                urls["endpoints.flow"], json={"name": payload, "key": payload, "nested": {payload: 1}}
            )
            assert r.status_code == 200, (payload, r.text)
            assert r.json() == {"copy": payload, "shout": payload.upper(), "keys": [payload]}
    # Nothing was evaluated, so nothing was slow (a real 10**8 loop or range takes far longer).
    assert time.monotonic() - started < 60
    notes = json.loads(router.cli("records", "list", "--json", "note", "--limit", "1000").stdout)
    assert sorted(n["body"] for n in notes) == sorted(PAYLOADS)
    assert all(n["key"] == n["body"] and n["shout"] == n["body"].upper() for n in notes)
    journaled = [e["name"] for e in journal_entities(router, "endpoints.echo")]
    assert journaled == PAYLOADS


def test_form_redirect_and_upload_name_are_data(router: RouterProcess, urls: dict[str, str]) -> None:
    for payload in PAYLOADS[:8]:
        r = httpx.post(
            urls["forms.signup"],
            data={"name": payload},
            files={"doc": (payload, b"content", "text/plain")},
            timeout=10,
        )
        assert r.status_code == 303, (payload, r.text)
        assert parse_qs(urlsplit(r.headers["location"]).query)["n"] == [payload]
    entities = journal_entities(router, "forms.signup")
    assert [e["__files"]["doc"]["name"] for e in entities] == PAYLOADS[:8]


# ------------------------------------------------------------------- escapes in the config

STATIC_ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ __data.__class__.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum['__globals__'] }}",
    "{{ __data|attr('__class__') }}",
    "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
]


def escape_config() -> str:
    """One config holding every escape in a step, an endpoint reply and a form redirect."""
    parts = [
        '[endpoints.e]\nreturn_type = "continue"\n',
        '[[workflows]]\nname = "w"\nlisten = "endpoints.e"\n',
    ]
    for i, attempt in enumerate(STATIC_ESCAPES):
        quoted = json.dumps(attempt)
        parts.append(f'[[workflows.steps]]\nid = "s{i}"\naction = "log"\nmessage = {quoted}\n')
    for i, attempt in enumerate(STATIC_ESCAPES):
        quoted = json.dumps(attempt)
        parts.append(f'[endpoints.e{i}]\nreturn_type = "data"\nreturn_data = {quoted}\n')
        parts.append(f"[forms.f{i}]\nredirect = {quoted}\n")
    return "\n".join(parts)


def test_visible_escapes_in_config_templates_are_refused_at_load(tmp_path: Any) -> None:
    """`router check` (and so `serve` and a reload) refuses every one, naming the place."""
    proc = RouterProcess(tmp_path, escape_config())
    result = subprocess.run(
        [sys.executable, "-m", "router.cli", "check", "-c", str(proc.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0, result.stdout
    out = result.stdout + result.stderr
    lines = [line for line in out.splitlines() if "unsafe template" in line]
    for i in range(len(STATIC_ESCAPES)):
        for where in (f"steps[{i}].message", f"endpoints.e{i}.return_data", f"forms.f{i}.redirect"):
            assert any(where in line for line in lines), (where, out)
    assert len(lines) == 3 * len(STATIC_ESCAPES), out
    # The same config with the escapes made harmless data is fine: the check is not a blanket refusal.
    proc.config_path.write_text(escape_config().replace("__", "_"))
    ok = subprocess.run(
        [sys.executable, "-m", "router.cli", "check", "-c", str(proc.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_dynamic_escapes_fail_at_run_time_without_leaking(router_factory) -> None:  # type: ignore[no-untyped-def]
    """Escapes assembled at run time cannot be seen at load: the sandbox refuses them then."""
    router = router_factory("""
        [endpoints.sneaky]
        return_type = "continue"

        [[workflows]]
        name = "sneaky"
        listen = "endpoints.sneaky"
        run_mode = "sync"

        [[workflows.steps]]
        id = "probe"
        action = "store"
        name = "probe"
        value = "{{ (__data.name ~ '')|attr('__cla' ~ 'ss__') }}"

        [[workflows.steps]]
        parent = "probe"
        action = "respond"
        return_data = "{{ __data.probe }}"

        [[workflows.steps]]
        parent = "probe"
        branch = "failure"
        action = "respond"
        status = 422
        return_data = "refused"
    """)
    r = httpx.post(router.url("endpoints.sneaky"), json={"name": "x"}, timeout=20)
    assert (r.status_code, r.text) == (422, "refused")
    runs = router.wait_for(lambda: [s for s in router.signals("--source", "endpoints.sneaky") if s["runs"]])
    trace = json.dumps(runs[0]["runs"])
    assert "unsafe template" in trace and "__class__" in trace
    assert "<class" not in trace and "<class" not in r.text
