"""The HTTP caller's side of a run: waits for a `respond`, streams `emit` frames."""

from __future__ import annotations

import math

import structlog
import trio

from engine.ports import Reply

log = structlog.get_logger("router.http")


class HttpResponder:
    """First `respond` wins; later ones are ignored and logged. `finish` marks the runs' end."""

    def __init__(self, signal_hint: str = "", *, stream: bool = False) -> None:
        self.reply: Reply | None = None
        self.twiml: list[str] = []
        self.replied = trio.Event()
        self.finished = trio.Event()
        self.signal_hint = signal_hint
        self._frames_send: trio.MemorySendChannel[tuple[str, str]] | None = None
        self.frames: trio.MemoryReceiveChannel[tuple[str, str]] | None = None
        if stream:
            self._frames_send, self.frames = trio.open_memory_channel[tuple[str, str]](math.inf)

    def respond(self, reply: Reply) -> bool:
        if self.reply is not None:
            log.info("respond ignored: a response was already sent", signal_id=self.signal_hint)
            return False
        self.reply = reply
        self.replied.set()
        return True

    async def emit(self, event: str, data: str) -> None:
        if self._frames_send is None:
            return
        try:
            self._frames_send.send_nowait((event, data))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; the run goes on

    def twiml_reply(self, message: str) -> None:
        self.twiml.append(message)

    def finish(self) -> None:
        if not self.finished.is_set():
            self.finished.set()
            if self._frames_send is not None:
                self._frames_send.close()

    async def wait_reply(self) -> Reply | None:
        """The first reply, or None if the runs finished without one (bound it with a cancel scope)."""
        async with trio.open_nursery() as nursery:

            async def watch(event: trio.Event) -> None:
                await event.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch, self.replied)
            nursery.start_soon(watch, self.finished)
        return self.reply
