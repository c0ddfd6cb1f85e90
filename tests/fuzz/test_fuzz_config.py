"""Fuzz config loading: random TOML documents and random values for the known keys → a Config
or a ConfigError listing its issues, never another exception."""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from config import Config, ConfigError, load_config, parse_config
from config.schema import SOURCE_MODELS
from config.settings import OutboundSmtpSettings
from config.workflows import StepConfig, WorkflowConfig
from tests.fuzz.profiles import examples

ENVIRON = {"TOKEN": "t" * 40, "EMPTY": "", "PORT": "8080"}
SECTIONS = {
    name: field.annotation
    for name, field in Config.model_fields.items()
    if name not in SOURCE_MODELS and name != "workflows"
}


def keys_of(model: Any) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


# Values of every type TOML can produce, with the edge cases that break naive converters.
toml_scalars = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.dates(),
    st.times(),
    st.sampled_from(
        [
            "9" * 400,
            "1e999",
            "-1",
            "0",
            "1.5",
            "1KiB",
            "99999999999999999999PiB",
            "1h30m",
            "-5s",
            "10/s",
            "0/s",
            "1e308/s",
            "127.0.0.1:8080",
            "[::1]:99999",
            "a:b:c",
            ":",
            "* * * * *",
            "*/0 * * * *",
            "61 25 32 13 8",
            "@reboot",
            "${TOKEN}",
            "${NOPE}",
            "${",
            "$${TOKEN}",
            "${EMPTY:-x}",
            "Europe/Paris",
            "../../etc/passwd",
            "\x00",
            "UTC\x00",
            "endpoints.*",
            "nope.x",
            "{{ __data.x",
            "https://",
            "http://[::1",
            "pbkdf2_sha256$1$x$y",
            "hex",
            "hmac-sha256",
            "\u00e9",
        ]
    ),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def table(draw: st.DrawFn, model: Any) -> dict[str, Any]:
    """A table with random values for the model's real keys, and now and then a wrong key."""
    names = keys_of(model)
    out = {k: draw(toml_values) for k in draw(st.lists(st.sampled_from(names), max_size=5, unique=True))}
    if draw(st.integers(0, 4)) == 0:
        out[draw(st.text(max_size=8))] = draw(toml_values)
    return out


source_names = st.sampled_from(["a", "main", "x-y_1", "", "a.b", "\u00e9", "a b", "*"])


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=4, unique=True)):
        doc[name] = draw(table(SECTIONS[name]))
        if name == "outbound" and draw(st.booleans()):
            doc[name]["smtp"] = draw(table(OutboundSmtpSettings))
    for kind in draw(st.lists(st.sampled_from(sorted(SOURCE_MODELS)), max_size=3, unique=True)):
        doc[kind] = draw(st.dictionaries(source_names, table(SOURCE_MODELS[kind]) | toml_values, max_size=2))
    if draw(st.booleans()):
        workflows = []
        for _ in range(draw(st.integers(0, 3))):
            flow = draw(table(WorkflowConfig))
            if draw(st.booleans()):
                flow["steps"] = draw(st.lists(table(StepConfig) | toml_values, max_size=4))
            workflows.append(flow)
        doc["workflows"] = draw(st.sampled_from([workflows, {"a": workflows}]) | toml_values)
    if draw(st.integers(0, 6)) == 0:
        doc[draw(st.text(max_size=8))] = draw(toml_values)
    if draw(st.integers(0, 8)) == 0:  # never absolute or upward: a glob must stay in the test's directory
        doc["include"] = draw(
            st.sampled_from(["conf.d/*.toml", "nope.toml", "*.toml", "", "**", 5, ["x"], [1], {}])
        )
    return doc


@pytest.fixture(scope="module")
def base_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as tmp:
        yield Path(tmp)


def assert_clean(load: Any) -> Config | None:
    try:
        return load()
    except ConfigError as exc:
        assert exc.issues, "a ConfigError must say what is wrong"
        for issue in exc.issues:
            assert isinstance(issue.file, str) and isinstance(issue.key, str) and issue.message
        str(exc)
        return None


@examples(900)
@given(doc=documents())
@example(doc={"http": {"max_body": "9" * 400}})
@example(doc={"http": {"max_body": "1e400 B"}})
@example(
    doc={
        "smtp": {"max_message_size": "99999999999999999999999999999999999999999999999999" + "9" * 300 + "PiB"}
    }
)
@example(doc={"endpoints": {"a": {"max_body": "9" * 400}}})
@example(doc={"router": {"run_timeout": "9" * 400 + "w"}})
@example(doc={"router": {"lease": "9" * 400}})
@example(doc={"endpoints": {"a": {"rate_limit": "9" * 400 + "/s"}}})
@example(doc={"schedules": {"a": {"cron": "* * * * *", "at": dt.datetime(2026, 1, 1)}}})
@example(doc={"schedules": {"a": {"every": "1s", "timezone": dt.time(1, 2)}}})
def test_parse_config(doc: dict[str, Any], base_dir: Path) -> None:
    assert_clean(lambda: parse_config(doc, str(base_dir / "router.toml"), environ=ENVIRON))


def toml_text(value: Any) -> str:
    """A TOML rendering of `value` (inline tables); invalid TOML now and then is fine too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_text(v)}" for k, v in value.items()) + "}"


def toml_document(doc: dict[str, Any]) -> str:
    return "\n".join(f"{json.dumps(k)} = {toml_text(v)}" for k, v in doc.items()) + "\n"


@examples(450)
@given(doc=documents(), damage=st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=4)), max_size=3))
@example(doc={}, damage=[(0, b"\xff\xfe")])
@example(doc={"include": "*.toml"}, damage=[])
def test_load_config(doc: dict[str, Any], damage: list[tuple[int, bytes]], base_dir: Path) -> None:
    raw = bytearray(toml_document(doc).encode("utf-8", "surrogatepass"))
    for offset, junk in damage:
        raw[offset % (len(raw) + 1) : offset % (len(raw) + 1)] = junk
    path = base_dir / "router.toml"
    path.write_bytes(bytes(raw))
    assert_clean(lambda: load_config(path, environ=ENVIRON))


@examples(300)
@given(text=st.text(max_size=300))
@example(text='[http]\nmax_body = "' + "9" * 400 + '"\n')
@example(text="a = [" * 10_000)
@example(text="[[workflows]]\n" * 3 + "[workflows.steps]\n")
def test_load_random_text(text: str, base_dir: Path) -> None:
    path = base_dir / "router.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    assert_clean(lambda: load_config(path, environ=ENVIRON))


@pytest.mark.parametrize(
    "doc",
    [
        {"http": {"max_body": "9" * 400}},
        {"router": {"run_timeout": "9" * 400 + "w"}},
        {"router": {"lease": "9" * 400}},
        {"endpoints": {"a": {"rate_limit": "9" * 400 + "/s"}}},
    ],
)
def test_overflowing_numbers_are_config_errors(doc: dict[str, Any], base_dir: Path) -> None:
    """Hundreds of digits overflow to infinity: refused by name, not accepted as an endless timer."""
    with pytest.raises(ConfigError, match="too large"):
        parse_config(doc, str(base_dir / "router.toml"), environ=ENVIRON)
