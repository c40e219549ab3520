"""ingest.sock under load reads its connections on shared turns, straight from their
sockets: nothing is lost or reordered, several agents' reads go to the store together
with each event its own agent's pid, an agent that exits mid-stream has its last line
taken, a connection that goes quiet is read again when it speaks (a line after a quiet
spell at once, with no turn after it), a sender the socket holds back is read again at
once rather than a turn later, a writer that falls behind stops the reading, and once
traffic stops the daemon stops waking up.

The protocol on a real Unix socket (only the store replaced by one that records), and the
real daemon for what a user sees of it (stored events, its wake-ups).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

from agent_telemetry._wire import encode_event
from agent_telemetryd.events import Limits
from agent_telemetryd.ingest import Ingestor, Source, Transform
from agent_telemetryd.receivers.ndjson_socket import NdjsonProtocol
from agent_telemetryd.receivers.read_turns import (
    BUSY_READ_BYTES,
    KEEP_FOR,
    READ_BYTES,
    READ_INTERVAL,
    ReadTurns,
)
from agent_telemetryd.receivers.turn_lines import TurnLines
from tests.daemon_process import DaemonProcess
from tests.fakes.ingest_parts import daemon_transforms
from tests.test_daemon_ingest import wait_for_rows

MAX_LINE = 64 * 1024


class RecordingWriter:
    """Keeps what would be committed; with `hold`, keeps it queued as a stuck disk would."""

    def __init__(self, *, hold: bool = False) -> None:
        self.rows: list[Any] = []
        self.counters: dict[str, int] = {}
        self.queued_events = 0
        self.request_pids: list[set[int | None]] = []  # whose rows each write request held
        self.gathered: list[tuple[int, bool]] = []  # rows, and gathered over a read turn
        self._hold = hold

    def submit(
        self,
        rows: list[Any],
        counters: dict[str, int],
        *,
        ack: bool,
        meta: Any = None,
        gathered: bool = False,
    ) -> None:
        self.rows.extend(rows)
        self.request_pids.append({row.pid for row in rows})
        self.gathered.append((len(rows), gathered))
        if self._hold:
            self.queued_events += len(rows)
        for name, value in counters.items():
            self.counters[name] = self.counters.get(name, 0) + value

    def commit_all(self) -> None:
        self.queued_events = 0

    def properties(self) -> list[dict[str, Any]]:
        return [json.loads(row[4]) for row in self.rows]


def ingestor_for(writer: RecordingWriter, transforms: Iterable[Transform] = ()) -> Ingestor:
    """An ingestor in mode local that hands its rows to `writer`."""
    return Ingestor(
        limits=Limits(),
        mode=lambda: "local",
        writer=lambda: writer,  # type: ignore[arg-type, return-value]
        anonymous_id=lambda: "id",
        transforms=transforms,
    )


@contextlib.asynccontextmanager
async def serving(
    path: Path,
    writer: RecordingWriter,
    max_queued: int = 10_000,
    interval: float = READ_INTERVAL,
    keep_for: float = KEEP_FOR,
) -> AsyncIterator[ReadTurns]:
    """ingest.sock's protocol served at `path` as the daemon serves it (reading on turns,
    each turn's lines handed over together, the daemon's transforms); every connection is
    closed afterwards."""
    ingestor = ingestor_for(writer, daemon_transforms(capture_content=False, one_by_one=False))
    lines = TurnLines(ingestor)
    turns = ReadTurns(
        lambda: writer.queued_events,
        interval=interval,
        keep_for=keep_for,
        max_queued=max_queued,
        batch=lines,
    )
    protocols: list[NdjsonProtocol] = []

    def made() -> NdjsonProtocol:
        protocols.append(NdjsonProtocol(ingestor, MAX_LINE, turns=turns, lines=lines))
        return protocols[-1]

    server = await asyncio.get_running_loop().create_unix_server(made, str(path))
    try:
        yield turns
    finally:
        server.close()
        for protocol in protocols:
            protocol.close_now()
        await asyncio.sleep(0)


async def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, str(path))
    return sock


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for `condition`; the deadline is only for one that never comes."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.005)


def line(sender: int, n: int) -> bytes:
    return json.dumps({"event": "turn", "properties": {"c": sender, "n": n}}).encode() + b"\n"


async def test_steady_senders_over_many_turns_lose_nothing_and_keep_their_order(
    tmp_path: Path,
) -> None:
    writer = RecordingWriter()
    path = tmp_path / "ingest.sock"
    senders, per_sender = 3, 3000
    async with serving(path, writer) as turns:
        loop = asyncio.get_running_loop()

        async def send(sender: int) -> None:
            sock = await connect(path)
            payload = b"".join(line(sender, n) for n in range(per_sender))
            # Pieces that cut lines anywhere, a few ms apart: a line often straddles two
            # turns' reads.
            step = 331 + 97 * sender
            for start in range(0, len(payload), step):
                await loop.sock_sendall(sock, payload[start : start + step])
                await asyncio.sleep(0.001)
            await until(lambda: len(writer.rows) == senders * per_sender, "all lines stored")
            sock.close()

        await asyncio.gather(*(send(sender) for sender in range(senders)))
        await until(lambda: turns.waiting == 0, "every connection back in the poller")

    got = writer.properties()
    assert len(got) == senders * per_sender
    for sender in range(senders):
        assert [p["n"] for p in got if p["c"] == sender] == list(range(per_sender))
    assert writer.counters.get("rejected", 0) == 0


# An agent process: connects, waits for the word, then sends its lines as the shim writes
# them (known shapes, all in one second) a few at a time, a few ms apart.
SHIM_SENDER = """
import socket, sys, time
from agent_telemetry._wire import encode_event
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
c, total = int(sys.argv[2]), int(sys.argv[3])
lines = [
    encode_event("turn", {"c": c, "n": n}, agent=f"agent-{c}", now_ms=1_796_212_800_000)
    for n in range(total)
]
print("connected", flush=True)
sys.stdin.readline()
for start in range(0, total, 20):
    sock.sendall(b"".join(lines[start:start + 20]))
    time.sleep(0.002)
sock.close()
"""


def start_senders(path: Path, senders: int, per_sender: int) -> list[subprocess.Popen[str]]:
    """`senders` agent processes connected to `path`, each sending once told to."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SHIM_SENDER, str(path), str(c), str(per_sender)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for c in range(senders)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "connected\n"
    for proc in procs:  # all at once: a turn finds several of them with lines
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return procs


async def test_several_agents_reads_are_stored_together_each_event_with_its_agents_pid(
    tmp_path: Path,
) -> None:
    writer = RecordingWriter()
    path = tmp_path / "ingest.sock"
    senders, per_sender = 4, 2000
    async with serving(path, writer) as turns:
        procs = await asyncio.to_thread(start_senders, path, senders, per_sender)
        try:
            await until(lambda: len(writer.rows) == senders * per_sender, "all lines stored")
            assert [await asyncio.to_thread(proc.wait, 30) for proc in procs] == [0] * senders
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
        await until(lambda: turns.waiting == 0, "every connection back in the poller")

    assert writer.counters == {"received": senders * per_sender, "rejected": 0}
    got = [(json.loads(row.properties), row.pid) for row in writer.rows]
    for c, proc in enumerate(procs):
        mine = [(p["n"], pid) for p, pid in got if p["c"] == c]
        assert mine == [(n, proc.pid) for n in range(per_sender)]


async def test_a_peer_that_exits_while_held_has_its_last_line_taken_at_eof(
    tmp_path: Path,
) -> None:
    writer = RecordingWriter()
    path = tmp_path / "ingest.sock"
    async with serving(path, writer) as turns:
        loop = asyncio.get_running_loop()
        whole, cut = await connect(path), await connect(path)
        sent = 0
        deadline = time.monotonic() + 30
        # Steady until both are being read on turns.
        while sent < 50 or turns.waiting < 2:
            assert time.monotonic() < deadline, "never read on turns"
            await loop.sock_sendall(whole, line(0, sent))
            await loop.sock_sendall(cut, line(1, sent))
            sent += 1
            await asyncio.sleep(0.001)
        # One ends on a whole document without its newline, the other mid-document.
        await loop.sock_sendall(whole, line(0, sent).rstrip(b"\n"))
        await loop.sock_sendall(cut, line(1, sent)[:20])
        whole.close()
        cut.close()
        await until(lambda: len(writer.rows) == 2 * sent + 1, "the last whole line taken")
        torn = writer.counters.get
        await until(lambda: torn("dropped.torn_line", 0) == 1, "the cut line counted")
        await until(lambda: turns.waiting == 0, "both back to their transports")

    got = writer.properties()
    assert [p["n"] for p in got if p["c"] == 0] == list(range(sent + 1))
    assert [p["n"] for p in got if p["c"] == 1] == list(range(sent))
    assert writer.counters.get("rejected", 0) == 0


async def test_a_connection_that_goes_quiet_is_read_again_when_it_sends(tmp_path: Path) -> None:
    writer = RecordingWriter()
    path = tmp_path / "ingest.sock"
    async with serving(path, writer) as turns:
        loop = asyncio.get_running_loop()
        sock = await connect(path)
        for burst in range(3):
            for n in range(50):
                await loop.sock_sendall(sock, line(0, burst * 50 + n))
            await until(lambda b=burst: len(writer.rows) == (b + 1) * 50, "the burst stored")
            # Quiet: a turn finds nothing and gives it back to the poller; no turn is
            # pending, and nothing but its own next line can get it read.
            await until(lambda: turns.waiting == 0, "the quiet connection out of the turns")
        sock.close()

    assert [p["n"] for p in writer.properties()] == list(range(150))


async def test_a_line_after_a_quiet_spell_is_read_without_waiting_for_a_turn(
    tmp_path: Path,
) -> None:
    # An agent sending now and then: each line is read when it comes, and the connection
    # stays with the poller, since a turn after it would only find nothing.
    writer = RecordingWriter()
    path = tmp_path / "ingest.sock"
    interval = 1.0
    async with serving(path, writer, interval=interval) as turns:
        loop = asyncio.get_running_loop()
        sock = await connect(path)
        for n in range(2):
            await asyncio.sleep(interval * 1.2)  # quiet for longer than a turn
            await loop.sock_sendall(sock, line(0, n))
            await until(lambda n=n: len(writer.rows) == n + 1, "the line stored")
            assert turns.waiting == 0  # held, it would be out of the poller for a second
        sock.close()

    assert [p["n"] for p in writer.properties()] == [0, 1]


async def test_agents_each_sending_now_and_then_are_read_together_on_the_turns(
    tmp_path: Path,
) -> None:
    # Four agents, each a line every two turns: each line alone would be a lone read, a
    # wake-up of its own. Sending together, they keep the turns going and share them,
    # and what a turn gathered goes to the store as gathered (no wait for company there).
    writer = RecordingWriter()
    path = tmp_path / "ingest.sock"
    interval, senders, rounds = 0.1, 4, 12
    async with serving(path, writer, interval=interval, keep_for=2.5 * interval) as turns:
        loop = asyncio.get_running_loop()
        socks = [await connect(path) for _ in range(senders)]
        for n in range(rounds):
            for c, sock in enumerate(socks):
                await loop.sock_sendall(sock, line(c, n))
                await asyncio.sleep(2 * interval / senders)
        await until(lambda: len(writer.rows) == senders * rounds, "every line stored")
        await until(lambda: turns.waiting == 0, "all back in the poller once they stop")
        for sock in socks:
            sock.close()

    got = writer.properties()
    for c in range(senders):
        assert [p["n"] for p in got if p["c"] == c] == list(range(rounds))
    gathered = sum(rows for rows, on_a_turn in writer.gathered if on_a_turn)
    # All but the first few lines, before the turns began.
    assert gathered >= senders * rounds // 2, writer.gathered


# Turns so long that a test waiting for one would fail at `until`'s deadline.
LONG_TURN = 60.0


async def test_a_sender_the_socket_holds_back_is_read_again_at_once(tmp_path: Path) -> None:
    # An agent with a burst writes far more than the socket buffers: it is blocked until
    # the daemon reads. Waiting a whole turn between reads would hold it back that long
    # for every ~200 KB; a read that brought that much is followed by the next at once.
    writer = RecordingWriter()
    path = tmp_path / "ingest.sock"
    total = 20_000
    payload = b"".join(line(0, n) for n in range(total))
    assert len(payload) > 10 * BUSY_READ_BYTES
    async with serving(path, writer, interval=LONG_TURN) as turns:
        sock = await connect(path)
        sending = asyncio.ensure_future(asyncio.get_running_loop().sock_sendall(sock, payload))
        await until(lambda: len(writer.rows) == total, "the whole burst stored")
        await sending
        sock.close()
        await until(lambda: turns.waiting == 0, "the connection back in the poller")

    assert [p["n"] for p in writer.properties()] == list(range(total))


async def test_a_sender_of_a_few_lines_waits_for_the_next_turn(tmp_path: Path) -> None:
    # The other side of it: reads of a steady agent stay a turn apart, so they are taken
    # together. A connection's first read comes from the poller; after it, the connection
    # is on the turns, and a line sent then waits for the next one.
    writer = RecordingWriter()
    path = tmp_path / "ingest.sock"
    async with serving(path, writer, interval=LONG_TURN) as turns:
        loop = asyncio.get_running_loop()
        sock = await connect(path)
        await loop.sock_sendall(sock, b"".join(line(0, n) for n in range(100)))
        await until(lambda: len(writer.rows) == 100, "the first read stored")
        await until(lambda: turns.waiting == 1, "the connection on the turns")
        await loop.sock_sendall(sock, line(0, 100))
        await asyncio.sleep(0.5)
        assert len(writer.rows) == 100  # on a turn LONG_TURN away, not read at once
        sock.close()


async def test_a_writer_that_falls_behind_stops_reading_every_connection(tmp_path: Path) -> None:
    writer = RecordingWriter(hold=True)
    path = tmp_path / "ingest.sock"
    limit, senders = 500, 3
    one = line(0, 0)
    per_sender = 4 * READ_BYTES // len(one)  # more than the socket's buffer can hold
    async with serving(path, writer, max_queued=limit) as turns:
        socks = [await connect(path) for _ in range(senders)]
        payloads = [b"".join(line(s, n) for n in range(per_sender)) for s in range(senders)]
        sent = [0] * senders

        def send_what_fits() -> None:
            for s, sock in enumerate(socks):
                with contextlib.suppress(BlockingIOError):
                    while sent[s] < len(payloads[s]):
                        sent[s] += sock.send(payloads[s][sent[s] :])

        # Fill every socket: the daemon stops reading once the writer holds `limit`.
        send_what_fits()
        await until(lambda: writer.queued_events >= limit, "the writer behind")
        await until(lambda: turns.waiting == senders, "every connection held")
        before = len(writer.rows)
        for _ in range(20):  # turns come and go: nothing more is read
            send_what_fits()
            await asyncio.sleep(0.01)
        assert len(writer.rows) == before
        # At most one read per connection beyond the limit: each connection's first read
        # comes from the poller before any turn has looked at the writer.
        assert before <= limit + senders * (READ_BYTES // len(one) + 1)
        assert any(sent[s] < len(payloads[s]) for s in range(senders))

        # The writer catches up: reading resumes until every line is in.
        total = senders * per_sender
        deadline = time.monotonic() + 60
        while len(writer.rows) < total:
            assert time.monotonic() < deadline, "the reading never resumed"
            send_what_fits()
            writer.commit_all()
            await asyncio.sleep(0.005)
        for sock in socks:
            sock.close()

    got = writer.properties()
    assert len(got) == total
    for s in range(senders):
        assert [p["n"] for p in got if p["c"] == s] == list(range(per_sender))


class HeldTransport:
    """What ReadTurns asks of a connection's transport, for a socket read on the turns
    from its first read on."""

    def __init__(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return False


async def test_lines_a_turn_holds_count_toward_the_writers_limit() -> None:
    """A turn stops reading once the lines it has read and not yet handed over, with what
    the writer holds, reach the limit: memory stays bounded however many connections a
    turn reads before it hands their lines over."""
    writer = RecordingWriter(hold=True)
    ingestor = ingestor_for(writer)
    lines = TurnLines(ingestor)
    turns = ReadTurns(lambda: writer.queued_events, max_queued=150, batch=lines)
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        for c, (ours, theirs) in enumerate(pairs):
            theirs.sendall(b"".join(line(c, n) for n in range(100)))
            ours.setblocking(False)
            protocol = NdjsonProtocol(ingestor, MAX_LINE, turns=turns, lines=lines)
            turns.hold(HeldTransport(), ours.fileno(), protocol)  # type: ignore[arg-type]
        await until(lambda: len(writer.request_pids) > 0, "the first turn")
        # Two connections read (100 lines, then 200 >= 150): the third waits.
        assert [p["c"] for p in writer.properties()] == [0] * 100 + [1] * 100
        for _ in range(5):
            await asyncio.sleep(0.02)
        assert len(writer.rows) == 200, "nothing more read while the writer holds 200"
        writer.commit_all()
        await until(lambda: len(writer.rows) == 300, "the third read once the writer caught up")
        await until(lambda: turns.waiting == 0, "every socket found empty and given back")
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


async def test_a_turn_hands_every_connections_lines_to_the_store_in_one_write() -> None:
    """Three connections with shim lines waiting when the turn comes: one write, each
    connection's lines in the order the turn read them."""
    writer = RecordingWriter()
    ingestor = ingestor_for(writer, daemon_transforms(capture_content=False, one_by_one=False))

    def shim_line(c: int, n: int) -> bytes:
        return encode_event("turn", {"c": c, "n": n}, agent=f"agent-{c}", now_ms=1_796_212_800_000)

    # Shapes and the second seen once, as after a daemon's first reads.
    ingestor.accept_lines([shim_line(c, -1).rstrip(b"\n") for c in range(3)], Source("unix"))
    writer.rows.clear()
    writer.request_pids.clear()
    lines = TurnLines(ingestor)
    turns = ReadTurns(lambda: writer.queued_events, batch=lines)
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        for c, (ours, theirs) in enumerate(pairs):
            theirs.sendall(b"".join(shim_line(c, n) for n in range(40)))
            ours.setblocking(False)
            protocol = NdjsonProtocol(ingestor, MAX_LINE, turns=turns, lines=lines)
            turns.hold(HeldTransport(), ours.fileno(), protocol)  # type: ignore[arg-type]
        await until(lambda: len(writer.rows) == 120, "the turn's lines stored")
        assert len(writer.request_pids) == 1, writer.request_pids
        assert [(p["c"], p["n"]) for p in writer.properties()] == [
            (c, n) for c in range(3) for n in range(40)
        ]
        await until(lambda: turns.waiting == 0, "every socket found empty and given back")
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


# An agent that sends steadily for a while, then stays connected and silent until told to
# exit; at exit it writes one last line without its newline.
QUIET_AGENT = """
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
for i in range(2000):
    s.sendall((json.dumps({"event": "steady", "properties": {"i": i}}) + "\\n").encode())
    if i % 20 == 0:
        time.sleep(0.002)
print("sent", flush=True)
sys.stdin.readline()
s.sendall(json.dumps({"event": "last", "properties": {"i": 2000}}).encode())
"""


def context_switches(pid: int) -> int:
    """Every thread's voluntary context switches: one per time a thread sleeps and wakes."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for row in (task / "status").read_text().splitlines():
                if row.startswith("voluntary_ctxt_switches:"):
                    total += int(row.split()[1])
    return total


def test_the_daemon_stops_waking_when_a_connected_agent_goes_quiet(
    daemon: DaemonProcess,
) -> None:
    assert daemon.proc is not None
    agent = subprocess.Popen(
        [sys.executable, "-c", QUIET_AGENT, str(daemon.ingest_socket)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert agent.stdout is not None and agent.stdin is not None
        assert agent.stdout.readline() == "sent\n"
        assert wait_for_rows(daemon, 2000)["buffer"]["events"] == 2000
        time.sleep(0.5)  # the last turn and group commit, then the status request's end
        before = context_switches(daemon.proc.pid)
        time.sleep(2.0)
        woke = context_switches(daemon.proc.pid) - before
        # Reading on turns while nothing comes would be ~100 wake-ups a second.
        assert woke <= 10, woke

        agent.stdin.write("exit\n")
        agent.stdin.flush()
        assert agent.wait(30) == 0
    finally:
        agent.kill()
        agent.wait()
    assert wait_for_rows(daemon, 2001)["buffer"]["events"] == 2001
    assert sorted(row["properties"]["i"] for row in daemon.export()) == list(range(2001))


def test_the_daemon_stores_several_agents_events_each_in_its_order_with_its_pid(
    daemon: DaemonProcess,
) -> None:
    senders, per_sender = 4, 2500
    procs = start_senders(daemon.ingest_socket, senders, per_sender)
    try:
        assert [proc.wait(60) for proc in procs] == [0] * senders
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    status = wait_for_rows(daemon, senders * per_sender)
    assert status["buffer"]["events"] == senders * per_sender
    assert (status["counters"]["received"], status["counters"]["rejected"]) == (
        senders * per_sender,
        0,
    )
    rows = daemon.export()  # in the order stored
    for c, proc in enumerate(procs):
        mine = [row for row in rows if row["properties"]["c"] == c]
        assert [row["properties"]["n"] for row in mine] == list(range(per_sender))
        assert {(row["pid"], row["agent"], row["transport"]) for row in mine} == {
            (proc.pid, f"agent-{c}", "unix")
        }
