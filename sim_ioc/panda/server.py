"""The asyncio transport: control (8888) and data (8889) ports of a simulated PandA.

The protocol logic lives in :mod:`.protocol`; the behaviour in
:class:`~sim_ioc.panda.device.SimulatedPanda`. This module only moves bytes and
keeps simulated time in step with the wall clock (125 MHz ticks since start).

One client cannot stall the others: the control parser's work is linear in
what arrives and bounded per line (:data:`.protocol.control.MAX_LINE`), a
handler hands the event loop back every :data:`REQUESTS_PER_YIELD` requests,
and a bad request costs its sender an ``ERR``, never the connection. The
server tracks its open connections so that ``*SIM.DROP_CONNECTIONS=`` can
reset them as a network fault would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import struct
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from .capture import End, Event, Frames, Start
from .device import SimulatedPanda
from .protocol import control, data

log = logging.getLogger(__name__)

TICKS_PER_SECOND = 125_000_000
#: Events simulated between checks of the sockets: bounds control-port latency
#: when the simulation is busy (the IOC gives up after 1 s without an answer).
EVENT_BUDGET = 5_000
#: Longest idle sleep of the simulation loop: bounds streaming latency.
MAX_IDLE = 0.005
#: Shortest sleep once caught up: simulating (and streaming) at least this
#: much at a time, rather than each 10 us trigger on its own, is what makes
#: high trigger rates cheap. Events still happen on their ticks; a control
#: write wakes the loop at once.
MIN_IDLE = 0.001
#: Bytes a data client may fall behind before the capture ends in overrun.
OVERRUN_BYTES = 64 * 1024 * 1024
#: Bytes read from a control client at a time (the parser's work per read is
#: linear in them).
CONTROL_READ = 64 * 1024
#: Requests a control handler answers before letting the event loop run the
#: other connections: a chunk of empty lines is 64 k requests, some 0.25 s of
#: work; every 256 a yield keeps the others' waits to about a millisecond.
REQUESTS_PER_YIELD = 256
#: SO_LINGER on, zero seconds: close() then sends a TCP reset.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


@dataclass
class PandaServer:
    """Serve a :class:`SimulatedPanda` on ``host``."""

    panda: SimulatedPanda = field(default_factory=SimulatedPanda)
    host: str = "127.0.0.1"
    control_port: int = 8888
    data_port: int = 8889
    #: Bytes a data client may fall behind before the capture ends in overrun.
    overrun_bytes: int = OVERRUN_BYTES

    def __post_init__(self) -> None:
        self._t0 = time.monotonic()
        self._servers: list[asyncio.Server] = []
        self._sim_task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        # Open connections' writers, for *SIM.DROP_CONNECTIONS / CONNECTIONS.
        self._control_writers: set[asyncio.StreamWriter] = set()
        self._data_writers: set[asyncio.StreamWriter] = set()

    def now(self) -> int:
        """The current tick of simulated time."""
        return int((time.monotonic() - self._t0) * TICKS_PER_SECOND)

    async def start(self) -> None:
        """Listen on both ports; a port of 0 becomes the free one chosen."""
        self._t0 = time.monotonic() - self.panda.now / TICKS_PER_SECOND
        self._servers = [
            await asyncio.start_server(self._control, self.host, self.control_port),
            await asyncio.start_server(self._data, self.host, self.data_port),
        ]
        self.control_port, self.data_port = (
            s.sockets[0].getsockname()[1] for s in self._servers
        )
        self._sim_task = asyncio.create_task(self._simulate())

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        if self._sim_task:
            self._sim_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sim_task
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)

    async def __aenter__(self) -> PandaServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- connections --------------------------------------------------------------

    def connection_counts(self) -> tuple[int, int]:
        """How many control and data connections are open."""
        return len(self._control_writers), len(self._data_writers)

    def drop_connections(self, keep: asyncio.StreamWriter | None = None) -> None:
        """Reset every open control and data connection except ``keep``'s, as
        a network fault would: the peer sees a TCP reset, not an orderly
        close. Their handlers then end as on any lost connection."""
        for writers in (self._control_writers, self._data_writers):
            for writer in [w for w in writers if w is not keep]:
                writers.discard(writer)
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE
                        )
                writer.transport.abort()

    # -- simulation ---------------------------------------------------------------

    def _step(self) -> bool:
        """Simulate up to now within the event budget; True when caught up."""
        return self.panda.advance(self.now(), EVENT_BUDGET)

    async def _simulate(self) -> None:
        while True:
            if not self._step():
                await asyncio.sleep(0)  # let the sockets in, then carry on
                continue
            nxt = self.panda.engine.next_event()
            delay = MAX_IDLE
            if nxt is not None:
                delay = min(delay, max(MIN_IDLE, (nxt - self.now()) / TICKS_PER_SECOND))
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)

    # -- control port -------------------------------------------------------------

    async def _control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        parser = control.ControlParser()
        session = control.Session(connections=_Connections(self, writer))
        self._control_writers.add(writer)
        replies: list[str] = []

        async def send() -> None:
            writer.write("".join(replies).encode())
            replies.clear()
            await writer.drain()
            # A write may have scheduled events sooner than we sleep.
            self._wakeup.set()

        try:
            while chunk := await reader.read(CONTROL_READ):
                for request in parser.feed(chunk):
                    # Catch up first, but never make a client wait on a
                    # simulation that has fallen behind real time.
                    self.panda.advance(self.now(), EVENT_BUDGET // 10)
                    replies.append(control.respond(self.panda, session, request))
                    if len(replies) >= REQUESTS_PER_YIELD:
                        await send()
                        await asyncio.sleep(0)  # the other connections' turn
                if replies:
                    await send()
            # EOF: a line the client left unfinished is dropped unanswered.
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away (or the server is stopping)
        finally:
            self._control_writers.discard(writer)
            writer.close()

    # -- data port ----------------------------------------------------------------

    async def _data(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        unsubscribe = None
        self._data_writers.add(writer)
        try:
            try:
                line = (await reader.readline()).decode().strip()
                options = data.Options.parse(line)
            except ValueError as e:  # bad options, not UTF-8, or a line too long
                writer.write(f"ERR {e}\n".encode())
                await writer.drain()
                return
            writer.write(b"OK\n")
            await writer.drain()
            state: dict[str, object] = {}
            queued = [0]  # bytes in `queue`

            def backlog() -> int:
                return queued[0] + writer.transport.get_write_buffer_size()

            def on_event(event: Event) -> None:
                if isinstance(event, Start):
                    state["plan"] = event.plan
                    queue.put_nowait(data.header(event.plan, options, event.arm_time))
                elif isinstance(event, Frames) and "plan" in state:
                    if backlog() > self.overrun_bytes:
                        # This client cannot keep up: end the capture as the
                        # hardware does when its buffer overflows.
                        self.panda.overrun()
                        return
                    plan = state["plan"]
                    message = data.encode_frames(plan, options, event.frames)  # type: ignore[arg-type]
                    queued[0] += len(message)
                    queue.put_nowait(message)
                elif isinstance(event, End) and "plan" in state:
                    queue.put_nowait(data.end(event.samples, event.reason))
                    state.pop("plan")
                    if options.one_shot:
                        queue.put_nowait(None)

            unsubscribe = self.panda.subscribe(on_event)
            # A client that connects after ARM still gets this acquisition,
            # as clients do that open the data port just before arming.
            cap = self.panda.capture
            if cap is not None and not cap.ended:
                on_event(Start(cap.plan, cap.arm_time))
            closed = asyncio.ensure_future(reader.read())
            while True:
                get = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {get, closed}, return_when=asyncio.FIRST_COMPLETED
                )
                if get not in done:
                    get.cancel()
                    break
                message = get.result()
                if message is None:
                    break
                queued[0] = max(0, queued[0] - len(message))
                writer.write(message)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._data_writers.discard(writer)
            if unsubscribe:
                unsubscribe()
            writer.close()


@dataclass(frozen=True)
class _Connections:
    """The server's connections as one control connection's session sees
    them (:class:`.protocol.control.Connections`)."""

    server: PandaServer
    writer: asyncio.StreamWriter

    def drop_others(self) -> None:
        self.server.drop_connections(keep=self.writer)

    def counts(self) -> tuple[int, int]:
        return self.server.connection_counts()


async def serve(host: str, control_port: int = 8888, data_port: int = 8889) -> None:
    """Run a simulated PandA until cancelled; prints READY once listening."""
    async with PandaServer(SimulatedPanda(), host, control_port, data_port):
        print("READY", flush=True)
        await asyncio.Event().wait()


def run_until_signalled(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` in a new event loop until it ends or SIGINT/SIGTERM
    cancels it (the simulators' entry points: a clean stop either way)."""

    async def run() -> None:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())
