"""Compiling workflows: the tree, and every configuration problem reported in one pass."""

from __future__ import annotations

from engine.templates import TemplateEngine
from engine.workflow import SourceCaps, Workflow, compile_workflows
from tests.test_engine_runner import WfCfg, caps, step


def compile_all(*cfgs: WfCfg) -> tuple[list[Workflow], list[tuple[str, str]]]:
    return compile_workflows(list(cfgs), caps, TemplateEngine())


def test_tree_auto_ids_and_defaults() -> None:
    (wf,), problems = compile_all(
        WfCfg(
            name="w",
            listen=["webhooks.a", "deletions.*"],
            max_attempts=3,
            steps=[
                step("c", condition={"left": "{{ __data.x }}", "operator": "is_empty"}),
                step(parent="c", branch="yes", action="log", message="empty"),
                step("n", parent="c", branch="no", action="store", name="seen", value="1"),
                step(parent="n", action="log", message="after"),
                step(parent="n", branch="failure", action="log", message="failed"),
                step(action="log", message="another root"),
            ],
        )
    )
    assert problems == []
    assert [s.id for s in wf.roots] == ["c", "step-6"]
    c = wf.roots[0]
    assert c.is_condition and [s.id for s in c.children["yes"]] == ["step-2"]
    n = wf.steps["n"]
    assert [s.id for s in n.children["success"]] == ["step-4"] and n.children["success"][
        0
    ].branch == "success"
    assert [s.id for s in n.children["failure"]] == ["step-5"]
    assert n.options == {"name": "seen", "value": "1"}
    assert (wf.listen, wf.run_mode, wf.max_attempts) == (["webhooks.a", "deletions.*"], "async", 3)


def test_matches() -> None:
    (wf, off), _ = compile_all(
        WfCfg(name="w", listen=["webhooks.*", "deletions.contact"], steps=[]),
        WfCfg(name="off", listen="webhooks.a", steps=[], active=False),
    )
    assert wf.matches("webhooks.payments") and wf.matches("deletions.contact")
    assert not wf.matches("deletions.note") and not wf.matches("endpoints.payments")
    assert not wf.matches("webhooksx.a")
    assert not off.matches("webhooks.a")


def test_every_problem_reported_together() -> None:
    cond = {"left": "{{ __data.x }}", "operator": "is_not_empty"}
    broken = WfCfg(
        name="broken",
        listen="webhooks.pay",
        steps=[
            step("a", action="log", message="hi"),  # 0
            step("a", action="log", message="dup"),  # 1 duplicate id
            step("orphan", parent="ghost", action="log", message="x"),  # 2 unknown parent
            step("yes-under-action", parent="a", branch="yes", action="log", message="x"),  # 3
            step("c", condition=cond),  # 4
            step("succ-under-cond", parent="c", branch="success", action="log", message="x"),  # 5
            step("nobranch", parent="c", action="log", message="x"),  # 6
            step("loop1", parent="loop2", action="log", message="x"),  # 7
            step("loop2", parent="loop1", action="log", message="x"),  # 8
            step("unk", action="frobnicate"),  # 9 unknown action
            step("keys", action="store", name="n", colour="red"),  # 10 missing value, unknown colour
            step("badcond", condition={"left": "x", "operator": "sounds_like"}),  # 11
            step("tpl", action="log", message="{{ __data.x "),  # 12 template syntax
            step("tplcond", condition={"left": "{% if %}", "operator": "is_empty"}),  # 13
            step("resp", action="respond", return_data="ok"),  # 14 webhook cannot respond
            step("em", action="emit", data="x"),  # 15
            step("rep", action="reply", message="x"),  # 16
        ],
    )
    sse = WfCfg(name="live", listen="endpoints.live", run_mode="async", steps=[step(action="emit", data="x")])
    _, problems = compile_all(broken, sse)
    text = "\n".join(f"{k}: {m}" for k, m in problems)

    def has(key: str, *words: str) -> None:
        assert any(k == key and all(w in m for w in words) for k, m in problems), (
            f"{key} {words} not in:\n{text}"
        )

    s = "workflows.broken.steps"
    has(f"{s}[1].id", "duplicate step id", '"a"')
    has(f"{s}[2].parent", "unknown parent", "ghost")
    has(f"{s}[3].branch", "yes-under-action", '"yes"', "success", "failure")
    has(f"{s}[5].branch", "succ-under-cond", '"success"', '"yes" or "no"')
    has(f"{s}[6].branch", "nobranch", "needs branch")
    has(f"{s}[7].parent", "loop", "loop1", "loop2")
    has(f"{s}[9].action", "unknown action", "frobnicate", "allowed:", "create_record", "respond")
    has(f"{s}[10].value", "keys", "needs the key")
    has(f"{s}[10].colour", "keys", 'no key "colour"', "allowed: name, value")
    has(f"{s}[11].condition.operator", "badcond", "unknown operator", "sounds_like")
    has(f"{s}[12].message", 'step "tpl"', "template syntax error")
    has(f"{s}[13].condition.left", 'step "tplcond"', "template syntax error")
    has(f"{s}[14].action", 'step "resp"', "respond", "webhooks.pay")
    has(f"{s}[15].action", 'step "em"', "emit", "webhooks.pay")
    has(f"{s}[16].action", 'step "rep"', "reply", "webhooks.pay")
    has("workflows.live.run_mode", "endpoints.live", "sync")
    assert (
        len([1 for k, _ in problems if k == f"{s}[7].parent" or k == f"{s}[8].parent"]) == 1
    )  # one loop, once
    assert len(problems) == 16, text
    # reported in the order of the steps, whatever check found them
    assert [k for k, _ in problems if k.startswith(s)] == sorted(
        (k for k, _ in problems if k.startswith(s)), key=lambda k: int(k[len(s) + 1 : k.index("]")])
    )


def test_action_specific_validation() -> None:
    _, problems = compile_all(
        WfCfg(
            name="v",
            listen="endpoints.invoices",
            steps=[
                step(action="respond", return_type="redirect"),
                step(action="respond", return_type="html", return_html="<p>", return_data="x"),
                step(action="respond", status=999),
                step(action="create_record", record_type="Bad-Type"),
                step(action="upsert_record", record_type="contact", key=["email"], fields={"name": "x"}),
                step(action="store", name="__signal_id", value="x"),
                step(action="log", message="x", level="loud"),
                step(action="webhook", url="ftp://x"),
            ],
        )
    )
    messages = [m for _, m in problems]
    expected = [
        "needs return_redirect",
        "return_data is not used",
        "between 100 and 599",
        "record_type 'Bad-Type'",
        "key field(s) email missing",
        "reserved",
        "level must be one of",
        "url must start with http://",
    ]
    for words in expected:
        assert any(words in m for m in messages), (words, messages)


def test_unknown_source_from_caps_is_reported() -> None:
    def strict(source: str) -> SourceCaps:
        raise KeyError(f'unknown source "{source}"')

    _, problems = compile_workflows(
        [WfCfg(name="w", listen="forms.nope", steps=[])], strict, TemplateEngine()
    )
    assert problems == [("workflows.w.listen", 'unknown source "forms.nope"')]
