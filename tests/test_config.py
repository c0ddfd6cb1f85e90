"""config/: loading, ${ENV}, includes, one-pass validation with file + dotted key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from config import (
    Config,
    ConfigError,
    ConfigIssue,
    EndpointConfig,
    StepConfig,
    load_config,
    parse_config,
)
from config.passwords import hash_password

FIXTURES = Path(__file__).parent / "fixtures" / "config"
SPEC_ENV = {"INVOICE_SECRET": "s3cret", "TWILIO_AUTH_TOKEN": "tok"}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def issues_of(data: dict, **kwargs) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, **kwargs)
    return info.value.issues


def keys_of(data: dict, **kwargs) -> dict[str, str]:
    return {issue.key: issue.message for issue in issues_of(data, **kwargs)}


# -- the spec's sample and defaults --------------------------------------------------------------


def test_spec_sample_loads() -> None:
    cfg = load_config(FIXTURES / "spec.toml", environ=SPEC_ENV)
    assert cfg.path == (FIXTURES / "spec.toml").resolve()
    assert cfg.router.data_dir == (FIXTURES / "var").resolve()
    assert cfg.http.max_body == 1024 * 1024 and cfg.smtp.max_message_size == 10 * 1024 * 1024
    assert cfg.admin.token == ""
    inv = cfg.endpoints["invoices"]
    assert inv.return_type == "continue" and inv.endpoint_secret == "s3cret" and inv.endpoint_key == "billing"
    assert inv.cors_origins == ["https://app.example.com", "https://staging.example.com"]
    assert cfg.mailboxes["support"].address == ["support@example.com"]
    assert cfg.schedules["nightly"].timezone == "Europe/Tirane"
    wf = cfg.workflows[0]
    assert wf.name == "invoice-raised" and wf.listen == ["endpoints.invoices"] and wf.run_mode == "sync"
    assert [s.kind for s in wf.steps] == ["condition", "action", "action"]
    assert wf.steps[2].options() == {
        "record_type": "note",
        "fields": {"body": 'Invoice raised: {{ formatCurrency(__data.invoice_amount, "€") }}'},
    }
    assert wf.steps[1].options()["return_data"] == '{"error": "email required"}'
    assert cfg.source_names() == {
        "endpoints.invoices",
        "webhooks.payments",
        "forms.signup",
        "mailboxes.support",
        "sms.main",
        "schedules.nightly",
    }
    assert ("endpoints", "invoices", inv) in cfg.sources()
    assert cfg.raw["endpoints"]["invoices"]["endpoint_secret"] == "s3cret"


def test_defaults(tmp_path: Path) -> None:
    cfg = parse_config({}, base_dir=tmp_path)
    assert isinstance(cfg, Config) and cfg.path is None
    assert cfg.router.data_dir == tmp_path.resolve() / "var"
    assert cfg.router.public_url == "http://127.0.0.1:8080"
    assert (cfg.router.shutdown_timeout, cfg.router.retry_backoff, cfg.router.run_timeout) == (
        10.0,
        2.0,
        30.0,
    )
    assert (
        cfg.router.concurrency == 64 and cfg.router.log_level == "info" and cfg.router.log_format == "logfmt"
    )
    assert (cfg.http.host, cfg.http.port, cfg.http.workers) == ("127.0.0.1", 8080, 1)
    assert cfg.http.idempotency_window == 86400.0
    assert cfg.smtp.listen == "127.0.0.1:2525" and cfg.smtp.command_timeout == 300.0
    assert cfg.admin.listen == "127.0.0.1:8081" and cfg.admin.enabled
    assert cfg.outbound.smtp.from_address == "router@localhost" and cfg.outbound.smtp.port == 25
    assert cfg.sources() == [] and cfg.workflows == []


def test_http_workers_auto_is_one_per_usable_cpu() -> None:
    import os

    assert parse_config({"http": {"workers": "auto"}}).http.workers == len(os.sched_getaffinity(0))
    assert parse_config({"http": {"workers": 3}}).http.workers == 3
    with pytest.raises(ConfigError) as err:
        parse_config({"http": {"workers": "many"}})
    assert 'http.workers: a number of processes (1 or more) or "auto"' in str(err.value)


def test_values_are_normalised() -> None:
    cfg = parse_config(
        {
            "router": {"public_url": "https://hooks.example.com/", "log_level": "DEBUG", "lease": 20},
            "http": {"listen": "[::1]:8080", "max_body": "512KiB", "idempotency_window": "1h30m"},
            "outbound": {"smtp": {"from": "bot@example.com", "timeout": "250ms"}},
            "webhooks": {"w": {"rate_limit": "600/m", "rate_burst": 5, "max_body": 2048}},
            "endpoints": {"e": {"response_timeout": "5s", "cors_domains": "*"}},
        }
    )
    assert cfg.router.public_url == "https://hooks.example.com" and cfg.router.log_level == "debug"
    assert cfg.router.lease == 20.0
    assert (cfg.http.host, cfg.http.port, cfg.http.max_body) == ("::1", 8080, 512 * 1024)
    assert cfg.http.idempotency_window == 5400.0 and cfg.http.is_loopback
    assert cfg.outbound.smtp.from_address == "bot@example.com" and cfg.outbound.smtp.timeout == 0.25
    assert cfg.webhooks["w"].rate_limit == 10.0 and cfg.webhooks["w"].max_body == 2048
    assert cfg.endpoints["e"].response_timeout == 5.0 and cfg.endpoints["e"].cors_origins == ["*"]
    templated = parse_config({"endpoints": {"t": {"allow_cors": True, "cors_domains": "{{ origin }}"}}})
    assert templated.endpoints["t"].cors_origins == ["{{ origin }}"]


# -- ${ENV} ------------------------------------------------------------------------------------------


def test_env_expansion_and_defaults() -> None:
    env = {"TOKEN": "abc", "EMPTY": "", "QUOTE": 'he said "hi" # not a comment'}
    cfg = parse_config(
        {
            "admin": {"token": "${TOKEN}"},
            "router": {"public_url": "${PUBLIC_URL:-http://localhost:9000}"},
            "endpoints": {
                "e": {"description": "x${EMPTY:-fallback}y", "return_data": "$${literal} ${QUOTE}"}
            },
            "http": {"listen": "127.0.0.1:${PORT:-8099}"},
            "workflows": [
                {
                    "name": "w",
                    "listen": "endpoints.e",
                    "steps": [{"action": "log", "message": "token=${TOKEN}", "tags": ["${TOKEN}"]}],
                }
            ],
        },
        environ=env,
    )
    assert cfg.admin.token == "abc"
    assert cfg.router.public_url == "http://localhost:9000"
    assert cfg.endpoints["e"].description == "xfallbacky"
    # after parsing: a value with quotes and '#' from the environment is taken verbatim
    assert cfg.endpoints["e"].return_data == '${literal} he said "hi" # not a comment'
    assert cfg.http.port == 8099
    assert cfg.workflows[0].steps[0].options() == {"message": "token=abc", "tags": ["abc"]}


def test_env_missing_variable_names_key_and_variable() -> None:
    issues = issues_of(
        {
            "endpoints": {
                "invoices": {
                    "add_authentication": True,
                    "endpoint_key": "k",
                    "endpoint_secret": "${INVOICE_SECRET}",
                }
            }
        },
        environ={},
    )
    assert issues == [
        ConfigIssue(
            "router.toml",
            "endpoints.invoices.endpoint_secret",
            "environment variable INVOICE_SECRET is not set (use ${INVOICE_SECRET:-default} for a default)",
        )
    ]


def test_env_malformed_reference() -> None:
    keys = keys_of({"admin": {"token": "${not valid}"}}, environ={})
    assert "malformed reference" in keys["admin.token"] and "$${" in keys["admin.token"]


def test_env_is_expanded_in_files_not_textually(tmp_path: Path) -> None:
    main = write(
        tmp_path / "router.toml",
        """
        [endpoints.e]
        return_data = "${BODY}"
    """,
    )
    cfg = load_config(main, environ={"BODY": '"\nreturn_type = "sse'})
    assert cfg.endpoints["e"].return_data == '"\nreturn_type = "sse'
    assert cfg.endpoints["e"].return_type == "data"


# -- includes ------------------------------------------------------------------------------------------


def test_includes_merge_tables_and_concatenate_workflows() -> None:
    cfg = load_config(FIXTURES / "includes" / "router.toml", environ={})
    assert cfg.router.data_dir == (FIXTURES / "includes" / "data").resolve()
    assert cfg.endpoints["invoices"].return_type == "data"
    assert cfg.endpoints["invoices"].description == "merged into the table from router.toml"
    assert cfg.endpoints["orders"].return_type == "html"
    assert cfg.http.listen == "127.0.0.1:9080"  # from conf.d/more/http.toml (nested include)
    assert [wf.name for wf in cfg.workflows] == ["main-first", "from-10", "from-20"]
    assert cfg.webhooks["payments"].signing_secret == "whsec_test"
    assert cfg.origins["endpoints.orders"].endswith("10-endpoints.toml")
    assert cfg.origins["workflows.from-20"].endswith("20-webhooks.toml")
    assert cfg.origin_of("webhooks.payments.signature").endswith("20-webhooks.toml")
    assert "include" not in cfg.raw


def test_include_issue_names_the_included_file(tmp_path: Path) -> None:
    main = write(tmp_path / "router.toml", 'include = ["conf.d/*.toml"]\n[endpoints.a]\n')
    write(tmp_path / "conf.d" / "b.toml", '[endpoints.b]\nreturn_type = "json"\n')
    with pytest.raises(ConfigError) as info:
        load_config(main)
    (issue,) = info.value.issues
    assert issue.file.endswith("conf.d/b.toml") and issue.key == "endpoints.b.return_type"
    assert "'json'" in issue.message and "'redirect'" in issue.message


def test_same_scalar_in_two_files_is_a_conflict(tmp_path: Path) -> None:
    main = write(
        tmp_path / "router.toml",
        """
        include = ["extra.toml"]
        [http]
        listen = "127.0.0.1:8080"
    """,
    )
    write(tmp_path / "extra.toml", '[http]\nlisten = "127.0.0.1:9090"\nmax_body = "2MiB"\n')
    with pytest.raises(ConfigError) as info:
        load_config(main)
    (issue,) = info.value.issues
    assert issue.key == "http.listen" and issue.file.endswith("extra.toml")
    assert str(main) in issue.message and "extra.toml" in issue.message


def test_include_cycle_is_refused(tmp_path: Path) -> None:
    main = write(tmp_path / "router.toml", 'include = ["a.toml"]\n')
    write(tmp_path / "a.toml", 'include = ["b.toml"]\n')
    write(tmp_path / "b.toml", 'include = ["a.toml"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(main)
    (issue,) = info.value.issues
    assert issue.key == "include" and issue.file.endswith("b.toml")
    assert "cycle" in issue.message and "a.toml -> " in issue.message


def test_missing_literal_include_and_bad_toml(tmp_path: Path) -> None:
    main = write(tmp_path / "router.toml", 'include = ["nope.toml", "empty.d/*.toml", "bad.toml"]\n')
    write(tmp_path / "bad.toml", "[http\n")
    with pytest.raises(ConfigError) as info:
        load_config(main)
    first, second = info.value.issues
    assert first.key == "include" and "nope.toml" in first.message
    assert second.file.endswith("bad.toml") and second.message.startswith("invalid TOML")


# -- one pass, many issues ---------------------------------------------------------------------------


def test_three_mistakes_reported_together(tmp_path: Path) -> None:
    main = write(
        tmp_path / "router.toml",
        """
        [http]
        max_body = "lots"

        [endpoints.invoices]
        return_type = "json"
        retrun_data = "{}"

        [[workflows]]
        name = "invoice-raised"
        listen = "endpoints.invoices"

        [[workflows.steps]]
        id = "check"
        condition = { left = "1", operator = "equal", right = "1" }

        [[workflows.steps]]
        parent = "check"
        branch = "maybe"
        action = "log"
    """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(main)
    issues = {issue.key: issue for issue in info.value.issues}
    assert set(issues) == {
        "http.max_body",
        "endpoints.invoices.return_type",
        "endpoints.invoices.retrun_data",
        "workflows.invoice-raised.steps[1].branch",
    }
    assert all(issue.file == str(main) for issue in issues.values())
    assert "invalid size 'lots'" in issues["http.max_body"].message
    assert 'did you mean "return_data"' in issues["endpoints.invoices.retrun_data"].message
    assert "allowed keys: " in issues["endpoints.invoices.retrun_data"].message
    assert '"yes" or "no"' in issues["workflows.invoice-raised.steps[1].branch"].message
    lines = str(info.value).splitlines()
    assert len(lines) == 4 and f"{main}: http.max_body: invalid size" in lines[0]


def test_workflow_key_falls_back_to_index_without_name() -> None:
    keys = keys_of({"endpoints": {"e": {}}, "workflows": [{"listen": "endpoints.e", "steps": [{}]}]})
    assert keys["workflows[0].name"] == "this key is required"
    assert "exactly one of condition or action" in keys["workflows[0].steps[0]"]


def test_source_names_and_types() -> None:
    keys = keys_of({"endpoints": {"bad name": {}}, "webhooks": 3, "nonsense": {}})
    assert "letters, digits" in keys["endpoints.bad name"]
    assert "[webhooks.NAME]" in keys["webhooks"]
    assert "allowed: include, admin, database, endpoints" in keys["nonsense"]


def test_endpoint_rules() -> None:
    keys = keys_of(
        {
            "endpoints": {
                "r": {"return_type": "redirect"},
                "j": {"add_authentication": True},  # key and secret are generated in the data dir
                "c": {"allow_cors": True, "cors_domains": "https://a.com/path"},
                "s": {"signature": "github", "rate_burst": 3},
            }
        }
    )
    assert set(keys) == {
        "endpoints.r.return_redirect",
        "endpoints.c.cors_domains",
        "endpoints.s.signing_secret",
        "endpoints.s.rate_burst",
    }
    assert EndpointConfig(return_type="redirect", return_redirect="https://x").return_redirect == "https://x"


def test_signing_secret_takes_a_list() -> None:
    """Several secrets during a provider's rotation; empty entries (an unset `${OLD:-}`) are dropped."""
    cfg = parse_config({"webhooks": {"p": {"signature": "github", "signing_secret": ["new", "", "old"]}}})
    assert cfg.webhooks["p"].signing_secret == ["new", "old"]
    keys = keys_of(
        {
            "webhooks": {
                "e": {"signature": "github", "signing_secret": ["", ""]},
                "n": {"signature": "github", "signing_secret": []},
                "x": {"signature": "github", "signing_secret": ["ok", 5]},
            }
        }
    )
    assert set(keys) == {
        "webhooks.e.signing_secret",
        "webhooks.n.signing_secret",
        "webhooks.x.signing_secret",
    }, keys
    assert "a list of secrets" in keys["webhooks.x.signing_secret"]


def test_smtp_users_tls_and_listen_collisions(tmp_path: Path) -> None:
    good = hash_password("pw", iterations=1000)
    cfg = parse_config({"smtp": {"auth_required": True, "users": {"alice": good}}})
    assert cfg.smtp.users == {"alice": good}
    keys = keys_of(
        {
            "smtp": {"users": {"bob": "plaintext"}, "tls_cert": "cert.pem", "listen": "127.0.0.1:8080"},
            "outbound": {"smtp": {"ssl": True, "starttls": True}},
        },
        base_dir=tmp_path,
    )
    assert "plain-text passwords are not accepted" in keys["smtp.users"]
    assert "both tls_cert and tls_key" in keys["smtp.tls_key"]
    assert "file not found" in keys["smtp.tls_cert"]
    assert "collides with [http]" in keys["smtp.listen"]
    assert "choose one" in keys["outbound.smtp.ssl"]


# -- schedules -------------------------------------------------------------------------------------------


def test_schedule_exactly_one_of_cron_every_at() -> None:
    keys = keys_of(
        {
            "schedules": {
                "none": {},
                "two": {"cron": "@daily", "every": "5m"},
                "naive": {"at": "2026-12-01T09:00:00"},
                "zero": {"every": 0},
                "badcron": {"cron": "0 25 * * *"},
                "tz": {"every": "1h", "timezone": "Europe/Tiran"},
            }
        }
    )
    assert "exactly one of cron, every or at (found none of them)" in keys["schedules.none"]
    assert "(found cron and every)" in keys["schedules.two"]
    assert "no UTC offset" in keys["schedules.naive.at"]
    assert "greater than 0" in keys["schedules.zero.every"]
    assert "invalid cron expression '0 25 * * *'" in keys["schedules.badcron.cron"]
    assert 'did you mean "Europe/Tirane"' in keys["schedules.tz.timezone"]


def test_schedule_kinds(tmp_path: Path) -> None:
    main = write(
        tmp_path / "router.toml",
        """
        [schedules.weekly]
        cron = "@weekly"
        [schedules.tick]
        every = "30s"
        jitter = "2s"
        [schedules.once]
        at = 2026-12-01T09:00:00+01:00
    """,
    )
    cfg = load_config(main)
    weekly, tick, once = cfg.schedules["weekly"], cfg.schedules["tick"], cfg.schedules["once"]
    assert (weekly.kind, weekly.crontab) == ("cron", "0 0 * * sun")
    assert (tick.kind, tick.every, tick.jitter, tick.misfire_grace, tick.coalesce) == (
        "every",
        30.0,
        2.0,
        60.0,
        True,
    )
    assert once.kind == "at" and once.at is not None and once.at.utcoffset() is not None
    for schedule in (weekly, tick, once):
        assert schedule.build_trigger() is not None


# -- workflows ------------------------------------------------------------------------------------------


def test_workflow_listen_references() -> None:
    base = {"endpoints": {"invoices": {}}, "webhooks": {"payments": {}}}
    ok = parse_config(
        {
            **base,
            "workflows": [
                {
                    "name": "a",
                    "listen": ["endpoints.invoices", "webhooks.*", "deletions.contact", "deletions.*"],
                },
            ],
        }
    )
    assert ok.workflows[0].listen[2] == "deletions.contact"
    keys = keys_of(
        {
            **base,
            "workflows": [
                {"name": "typo", "listen": "endpoints.invoice"},
                {"name": "kind", "listen": "queues.x"},
                {"name": "many", "listen": ["webhooks.payments", "forms.signup"]},
            ],
        }
    )
    assert keys["workflows.typo.listen"] == (
        "unknown source 'endpoints.invoice' (did you mean \"endpoints.invoices\"?); "
        "defined sources: endpoints.invoices, webhooks.payments"
    )
    assert "KIND one of endpoints, webhooks" in keys["workflows.kind.listen"]
    assert "unknown source 'forms.signup'" in keys["workflows.many.listen[1]"]


def test_workflow_names_unique_and_sse_needs_sync() -> None:
    keys = keys_of(
        {
            "endpoints": {"live": {"return_type": "sse"}},
            "workflows": [
                {"name": "dup", "listen": "endpoints.live", "run_mode": "sync"},
                {"name": "dup", "listen": "endpoints.live", "run_mode": "sync"},
                {"name": "stream", "listen": "endpoints.live"},
            ],
        }
    )
    assert "duplicate workflow name 'dup'" in keys["workflows[1].name"]
    assert 'needs run_mode = "sync"' in keys["workflows.stream.run_mode"]


def test_step_tree_rules() -> None:
    steps = [
        {"id": "a", "action": "log"},
        {"id": "a", "action": "log"},
        {"parent": "ghost", "action": "log"},
        {"branch": "yes", "action": "log"},
        {"id": "x", "parent": "y", "action": "log"},
        {"id": "y", "parent": "x", "action": "log"},
        {"parent": "a", "branch": "failure", "action": "log"},
    ]
    keys = keys_of(
        {"webhooks": {"w": {}}, "workflows": [{"name": "t", "listen": "webhooks.w", "steps": steps}]}
    )
    assert set(keys) == {
        "workflows.t.steps[1].id",
        "workflows.t.steps[2].parent",
        "workflows.t.steps[3].branch",
        "workflows.t.steps[4].parent",
        "workflows.t.steps[5].parent",
    }
    step = StepConfig(action="webhook", url="https://x", json={"a": 1})
    assert step.options() == {"url": "https://x", "json": {"a": 1}} and step.kind == "action"


# -- admin ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("listen", ["0.0.0.0:8081", "10.0.0.5:8081", "[::]:8081", "example.com:8081"])
def test_admin_empty_token_needs_loopback(listen: str) -> None:
    keys = keys_of({"admin": {"listen": listen, "token": "${ROUTER_ADMIN_TOKEN:-}"}}, environ={})
    assert "empty token is only allowed when admin listens on a loopback address" in keys["admin.token"]
    assert parse_config({"admin": {"listen": listen, "token": "t0k"}}).admin.token == "t0k"
    assert not parse_config({"admin": {"listen": listen, "enabled": False}}).admin.enabled


@pytest.mark.parametrize("listen", ["127.0.0.1:8081", "[::1]:8081", "localhost:8081"])
def test_admin_empty_token_fine_on_loopback(listen: str) -> None:
    assert parse_config({"admin": {"listen": listen}}).admin.is_loopback


def test_twilio_token_needed_for_active_sms() -> None:
    keys = keys_of({"sms": {"main": {"number": "+15551234567"}}})
    assert "sms.main needs the Twilio auth token" in keys["twilio.auth_token"]
    assert parse_config({"sms": {"main": {"active": False}}}).sms["main"].active is False
    cfg = parse_config(
        {
            "twilio": {"auth_token": "t", "api_base": "http://127.0.0.1:9999/"},
            "whatsapp": {"main": {"number": "whatsapp:+15551234567"}},
        }
    )
    assert cfg.twilio.api_base == "http://127.0.0.1:9999"
