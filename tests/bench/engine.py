"""Engine throughput: runs/s for a 1-step and a 5-step workflow, in one process, one run.

    .venv/bin/python tests/bench/engine.py [--runs 2000] [--concurrency 32]

The 5-step workflow is condition → store → create_record → webhook (to a local server) →
respond. Baselines measured in the same run: the bare local server hit by httpx alone (what the
webhook step cannot beat) and a run of an empty-bodied `log` step (the runner's own overhead).
Records go to a real SQLite file through the same group-committing Storage the daemon uses.
"""

from __future__ import annotations

import sys

# tests/bench/http.py would shadow the stdlib `http` package: keep this folder off sys.path.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("tests/bench")]

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from config import parse_config
from engine.actions import Services
from engine.entity import Entity
from engine.ports import Reply
from engine.records import RecordStore
from engine.runner import Engine
from engine.templates import TemplateEngine
from engine.workflow import SourceCaps, compile_workflows
from router.storage import open_storage
from tests.standins.bare_asgi import BareServer


class Sink:
    def respond(self, reply: Reply) -> bool:
        return True

    async def emit(self, event: str, data: str) -> None:
        return None

    def twiml_reply(self, message: str) -> None:
        return None


def workflows(target_url: str) -> dict[str, Any]:
    return {
        "endpoints": {"bench": {"return_type": "continue"}},
        "workflows": [
            {
                "name": "one-step",
                "listen": "endpoints.bench",
                "run_mode": "sync",
                "steps": [{"action": "store", "name": "x", "value": "{{ __data.n }}"}],
            },
            {
                "name": "five-step",
                "listen": "endpoints.bench",
                "run_mode": "sync",
                "steps": [
                    {
                        "id": "check",
                        "condition": {"left": "{{ __data.n }}", "operator": "greater", "right": "0"},
                    },
                    {
                        "id": "keep",
                        "parent": "check",
                        "branch": "yes",
                        "action": "store",
                        "name": "amount",
                        "value": "{{ __data.n * 2 }}",
                    },
                    {
                        "id": "note",
                        "parent": "keep",
                        "action": "create_record",
                        "record_type": "bench",
                        "fields": {"n": "{{ __data.amount }}"},
                    },
                    {
                        "id": "call",
                        "parent": "note",
                        "action": "webhook",
                        "url": target_url,
                        "json": {"id": "{{ __data.__entity_inserted_id }}"},
                    },
                    {"parent": "call", "action": "respond", "return_data": '{"ok": true}'},
                ],
            },
        ],
    }


async def bench(runs: int, concurrency: int) -> None:
    target = BareServer()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            storage = open_storage(Path(tmp) / "bench.db")
            cfg = parse_config(workflows(target.url("/hook")))
            records = RecordStore(storage)
            templates = TemplateEngine(records)
            compiled, problems = compile_workflows(
                cfg.workflows, lambda s: SourceCaps(can_respond=True), templates
            )
            assert not problems, problems
            by_name = {w.name: w for w in compiled}
            async with httpx.AsyncClient() as client, trio.open_nursery() as nursery:
                await nursery.start(storage.run_writer)
                engine = Engine(Services(db=storage, http=client), templates, default_timeout=30)

                async def measure(label: str, one: Any) -> float:
                    limiter = trio.CapacityLimiter(concurrency)

                    async def task(i: int) -> None:
                        async with limiter:
                            await one(i)

                    t0 = time.perf_counter()
                    async with trio.open_nursery() as inner:
                        for i in range(runs):
                            inner.start_soon(task, i)
                    rate = runs / (time.perf_counter() - t0)
                    print(f"{label:<52} {rate:>8.0f} /s", flush=True)
                    return rate

                async def bare_http(i: int) -> None:
                    await client.post(target.url("/hook"), json={"id": i})

                async def run(name: str, i: int) -> None:
                    result = await engine.run(
                        by_name[name], Entity("endpoints", "endpoints.bench", {"n": i + 1}), Sink()
                    )
                    assert result.status == "done", result.error

                http_rate = await measure("baseline: bare httpx POST to the local server", bare_http)
                one_rate = await measure("1-step workflow (store)", lambda i: run("one-step", i))
                five_rate = await measure(
                    "5-step workflow (condition, store, record, webhook, respond)",
                    lambda i: run("five-step", i),
                )
                print(
                    f"\n1-step / 5-step: {one_rate / five_rate:.1f}x;  5-step / bare webhook POST: "
                    f"{five_rate / http_rate:.2f}"
                )
                storage.stop_writer()
            storage.close()
    finally:
        target.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    trio.run(bench, args.runs, args.concurrency)


if __name__ == "__main__":
    main()
