"""Issue 14: `router check` reports every problem of a file in one run (schema, references,
workflow trees, templates), names files one way, takes durations wherever a time is asked, and
refuses strings where a boolean is asked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from router.exitcodes import EX_CONFIG

TEN_MISTAKES = """
[router]
max_attempts = "many"                 # 1 schema: not an integer

[http]
listen = "nowhere"                    # 2 schema: not HOST:PORT

[endpoints.a]
return_type = "sometimes"             # 3 schema: not one of the choices

[endpoints.jwt]
return_type = "data"
add_authentication = "yes"            # 4 strict boolean

[endpoints.t]
return_type = "data"
return_data = "{{ unclosed"           # 5 a source's template

[webhooks.w]
unknown_option = 1                    # 6 unknown key

[schedules.s]
cron = "0 2 * * *"
every = "5m"                          # 7 a rule across fields

[[workflows]]
name = "wf"
listen = "endpoints.missing"          # 8 reference to no source

[[workflows.steps]]
id = "c"
parent = "nope"                       # 9 workflow tree: unknown parent
action = "log"
message = "{{ bad syntax"             # 10 a step's template

[[workflows]]
name = "wf2"
listen = "endpoints.a"

[[workflows.steps]]
action = "webhook"
url = "http://example.com"
timeout = "40s"                       # not a mistake: durations are accepted

[[workflows.steps]]
action = "frobnicate"                 # 11 unknown action
"""

EXPECTED = [
    "router.max_attempts:",
    "http.listen: invalid listen address",
    "endpoints.a.return_type: invalid value 'sometimes'",
    "endpoints.jwt.add_authentication: expected true or false",
    "endpoints.t.return_data: template syntax error",
    "webhooks.w.unknown_option: unknown key",
    "schedules.s: set exactly one of cron, every or at",
    "workflows.wf.listen: unknown source 'endpoints.missing'",
    "workflows.wf.steps[0].parent: unknown parent 'nope'",
    "workflows.wf.steps[0].message:",
    "workflows.wf2.steps[1].action:",
]


def check(path: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        [sys.executable, "-m", "router.cli", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(root)},
    )


def test_every_mistake_of_a_file_in_one_run(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(TEN_MISTAKES)
    out = check(cfg)
    assert out.returncode == EX_CONFIG
    lines = [line.strip() for line in out.stderr.splitlines()[1:]]
    for expected in EXPECTED:
        assert sum(expected in line for line in lines) == 1, (expected, out.stderr)
    assert len(lines) == len(EXPECTED), out.stderr
    assert out.stderr.splitlines()[0] == f"{cfg}: {len(EXPECTED)} problem(s):"
    assert "timeout" not in out.stderr  # "40s" is a duration


def test_one_path_style_for_every_file(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "main.toml").write_text('include = ["conf.d/*.toml"]\n[endpoints.a]\nreturn_type = "nope"\n')
    (tmp_path / "conf.d" / "more.toml").write_text(
        '[endpoints.b]\nreturn_type = "data"\n\n[[workflows]]\nname = "w"\nlisten = "endpoints.b"\n\n'
        '[[workflows.steps]]\naction = "frobnicate"\n'
    )
    for cwd, main in ((tmp_path, Path("main.toml")), (tmp_path / "conf.d", tmp_path / "main.toml")):
        out = check(main, cwd=cwd)
        files = {line.strip().split(": ", 1)[0] for line in out.stderr.splitlines()[1:]}
        # Absolute, schema and engine problems alike, whatever the working directory.
        assert files == {str(tmp_path / "main.toml"), str(tmp_path / "conf.d" / "more.toml")}, out.stderr


def test_durations_for_webhook_times_and_strict_booleans(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.toml"
    cfg.write_text(
        '[endpoints.e]\nreturn_type = "data"\nallow_cors = true\ncors_domains = "*"\n\n[[workflows]]\nname = "w"\nlisten = "endpoints.e"\n\n'
        '[[workflows.steps]]\naction = "webhook"\nurl = "http://example.com"\ntimeout = "1m30s"\n'
        'retry_backoff = "250ms"\nretries = 2\n'
    )
    out = check(cfg)
    assert out.returncode == 0, out.stderr
    for bad, fragment in (
        ('timeout = "soon"', "webhook: timeout: invalid duration 'soon'"),
        ('timeout = "0s"', "timeout must be more than 0 seconds"),
    ):
        cfg.write_text(cfg.read_text().replace('timeout = "1m30s"', bad))
        out = check(cfg)
        assert out.returncode == EX_CONFIG and fragment in out.stderr, out.stderr
        cfg.write_text(cfg.read_text().replace(bad, 'timeout = "1m30s"'))
    for value in ('"yes"', '"true"', "1"):
        cfg.write_text(cfg.read_text().replace("allow_cors = true", f"allow_cors = {value}"))
        out = check(cfg)
        assert out.returncode == EX_CONFIG and "endpoints.e.allow_cors: expected true or false" in out.stderr
        cfg.write_text(cfg.read_text().replace(f"allow_cors = {value}", "allow_cors = true"))
