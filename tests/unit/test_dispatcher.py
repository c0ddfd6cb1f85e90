"""The dispatcher in process, over a real storage in a temp dir: claims, the concurrency bound,
retries with backoff, idempotency keys and drain (tests/unit/conftest.py wires it as `router
serve` does). Several processes sharing one journal are the storage contract suite's subject."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest
import trio

from channels.intake import Submission
from engine.entity import Entity
from tests.standins import free_port
from tests.standins.http_target import HttpTarget, Scripted
from tests.unit.conftest import Node

Factory = Callable[..., Awaitable[Node]]


@pytest.fixture
def target() -> Iterator[HttpTarget]:
    with HttpTarget() as server:
        yield server


def forward(url: str, *, mode: str = "async") -> str:
    return f"""
[webhooks.w]

[[workflows]]
name = "forward"
listen = "webhooks.w"
run_mode = "{mode}"

[[workflows.steps]]
action = "webhook"
url = "{url}"
json = {{ n = "{{{{ __data.n }}}}" }}
timeout = "5s"
"""


def entity(n: int, source: str = "webhooks.w") -> Entity:
    return Entity("webhooks", source, {"n": n})


async def test_every_signal_runs_once_within_the_concurrency_bound(
    node_factory: Factory, target: HttpTarget
) -> None:
    target.answer(*[Scripted(200, "ok", delay=0.1) for _ in range(12)])
    node = await node_factory(forward(target.url("/hook")), router_extra="concurrency = 3")
    most = 0

    async def watch() -> None:
        nonlocal most
        while True:
            most = max(most, node.dispatcher.active_runs)
            await trio.sleep(0.005)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        subs = [await node.dispatcher.submit(entity(i)) for i in range(12)]
        pending = node.storage.read(lambda tx: tx.count_pending())
        settled = [await node.settled(s.signal_id) for s in subs]
        nursery.cancel_scope.cancel()
    assert all(isinstance(s, Submission) and not s.duplicate for s in subs)
    # 3 claimed at submit time, the rest waited in the journal for a free slot (fewer by now if
    # some runs already ended while the later ones were being submitted).
    assert 0 < pending <= 9
    assert most == 3
    assert {s.status for s in settled} == {"done"} and {s.attempts for s in settled} == {1}
    assert sorted(int(r.json["n"]) for r in target.requests) == list(range(12))  # type: ignore[index]
    assert node.observed.runs == [("forward", "done")] * 12


async def test_a_failing_run_is_retried_with_backoff_then_failed(node_factory: Factory) -> None:
    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    node = await node_factory(forward(url), router_extra="max_attempts = 3")
    sub = await node.dispatcher.submit(entity(1))
    signal = await node.settled(sub.signal_id)
    assert signal.status == "failed" and signal.attempts == 3
    assert "forward" in (signal.last_error or "")
    runs = node.storage.read(lambda tx: tx.runs_for(sub.signal_id))
    assert [r["attempt"] for r in runs] == [1, 2, 3] and {r["status"] for r in runs} == {"failed"}
    assert node.observed.retries == ["signal", "signal"]


async def test_a_repeated_key_returns_the_first_submission(node_factory: Factory, target: HttpTarget) -> None:
    node = await node_factory(forward(target.url("/hook")))
    first = await node.dispatcher.submit(entity(1), dedup_key="k", ack={"status": 200, "body": "first"})
    again = await node.dispatcher.submit(entity(2), dedup_key="k", ack={"status": 200, "body": "second"})
    assert not first.duplicate and again.duplicate
    assert again.signal_id == first.signal_id and again.ack == {"status": 200, "body": "first"}
    await node.settled(first.signal_id)
    assert len(node.signals()) == 1 and len(target.requests) == 1


async def test_nobody_listening_is_journaled_done(node_factory: Factory) -> None:
    node = await node_factory(forward("http://127.0.0.1:9/"))
    sub = await node.dispatcher.submit(entity(1, source="webhooks.other"))
    assert sub.workflows == 0
    signal = node.signal(sub.signal_id)
    assert signal is not None and signal.status == "done" and signal.attempts == 0


async def test_drain_waits_for_the_runs_under_way(node_factory: Factory, target: HttpTarget) -> None:
    target.answer(Scripted(200, "slow", delay=0.5))
    node = await node_factory(forward(target.url("/hook")))
    sub = await node.dispatcher.submit(entity(1))
    assert node.dispatcher.active_runs == 1
    with trio.fail_after(10):
        await node.dispatcher.drain()
    signal = node.signal(sub.signal_id)
    assert signal is not None and signal.status == "done"
    with pytest.raises(Exception, match="overloaded"):  # a draining dispatcher takes nothing new
        await node.dispatcher.submit(entity(2))


async def test_a_run_whose_outcome_cannot_be_journaled_is_left_to_run_again(
    node_factory: Factory, target: HttpTarget, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer stops (shutdown) while a run is under way: its settle fails, which is logged as
    what it is, not as a crash, and the signal stays claimed for the next start to run again."""
    target.answer(Scripted(200, "slow", delay=0.5))
    node = await node_factory(forward(target.url("/hook")))
    sub = await node.dispatcher.submit(entity(1))
    node.storage.stop_writer()
    with trio.fail_after(10):
        await node.dispatcher.drain()
    err = caplog.text
    assert "run not recorded; the signal runs again" in err and sub.signal_id in err
    assert "signal processing crashed" not in err
    signal = node.signal(sub.signal_id)
    assert signal is not None and signal.status == "running" and signal.attempts == 0
