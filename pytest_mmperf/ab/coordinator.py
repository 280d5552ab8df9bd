"""The coordinator of one process pair: a base and a head worker alive at once, taking turns.

Each worker is a ``python -m pytest --mmperf`` in its side's worktree whose environment names a
Unix socket in ``MMPERF_LOCKSTEP`` (protocol: :mod:`pytest_mmperf.measure.lockstep`). A worker
asks for a turn before each measured round and computes only while it holds one, so the two never
compute at the same time and their rounds alternate in time:

1. the first worker starts alone; the second starts only once the first waits for its first
   turn (or has exited), so imports, collection and the first build overlap nothing;
2. then turns go ABBA (first, second, second, first, ...). When the two wait on different
   benchmarks (one side has a benchmark the other lacks), the side that is behind, i.e. waits on
   a benchmark the other side has already passed, goes first, so that each benchmark's rounds of
   both sides stay close in time;
3. a side that exits (pytest finished) leaves the other to run its remaining rounds alone. A
   worker that never asks for a turn (code from before lockstep) simply runs to its end in its
   first turn: the pair then ran one side after the other, which :class:`PairReport` says.

A worker that runs longer than ``timeout_s`` without asking for a turn or exiting is stopped and
reported (one line); a worker that dies (exit status other than pytest's 0 or 1) likewise. Every
worker is stopped (its whole process group: a compile worker included) whenever the coordinator
leaves, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pytest_mmperf.measure import lockstep


class WorkerError(Exception):
    """A worker died or hung; the message is one line."""


@dataclass(frozen=True)
class WorkerSpec:
    side: str  # "base" or "head"
    repeat: int  # 1-based process pair
    command: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    log: Path  # stdout and stderr of the worker


class Worker(Protocol):
    def poll(self) -> int | None: ...

    def stop(self) -> None:
        """End the worker and whatever it started; return once it is gone."""


Spawn = Callable[[WorkerSpec], Worker]


class ProcessWorker:
    """A real worker process in its own process group (so that Ctrl-C in a terminal reaches the
    coordinator only, which then stops the group: pytest and any compile workers it started)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self._log = open(spec.log, "w", encoding="utf-8")  # noqa: SIM115 -- closed in stop()
        try:
            self._proc = subprocess.Popen(
                list(spec.command), cwd=spec.cwd, env=dict(spec.env), stdout=self._log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise WorkerError(f"{spec.side} worker: cannot start {spec.command[0]}: {exc}") from None

    def poll(self) -> int | None:
        return self._proc.poll()

    def stop(self) -> None:
        try:
            if self._proc.poll() is None:
                for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self._proc.pid, sig)
                    try:
                        self._proc.wait(wait_s)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)  # leftovers of an exited pytest
        finally:
            self._log.close()


class Schedule:
    """Which waiting side gets the next turn (pure; no sockets)."""

    def __init__(self, first: str, second: str) -> None:
        self.order = (first, second)
        self.turns = 0

    def choose(self, waiting: Mapping[str, str], seen: Mapping[str, set[str]]) -> str:
        """``waiting``: side -> the benchmark it waits on (only sides that wait);
        ``seen``: side -> every benchmark it has waited on so far."""
        first, second = self.order
        if not waiting:
            raise ValueError("no side is waiting")
        if len(waiting) == 1:
            (side,) = waiting
        elif waiting[first] != waiting[second] and waiting[first] in seen.get(second, set()):
            side = first  # second has passed first's benchmark: first catches up
        elif waiting[first] != waiting[second] and waiting[second] in seen.get(first, set()):
            side = second
        else:
            side = first if self.turns % 4 in (0, 3) else second  # ABBA
        self.turns += 1
        return side


@dataclass
class _Side:
    spec: WorkerSpec
    listener: socket.socket
    worker: Worker | None = None
    conn: socket.socket | None = None
    buffer: bytes = b""
    waiting: str | None = None  # the benchmark it waits on; None while it computes
    seen: set[str] = field(default_factory=set)
    returncode: int | None = None
    turns: int = 0

    @property
    def done(self) -> bool:
        return self.returncode is not None


@dataclass
class PairReport:
    returncodes: dict[str, int]
    turns: dict[str, int]  # turns each side asked for (its measured rounds)
    notes: list[str]


@contextlib.contextmanager
def _listeners(sockets_dir: Path, specs: Sequence[WorkerSpec]) -> Iterator[dict[str, socket.socket]]:
    made: dict[str, socket.socket] = {}
    try:
        for spec in specs:
            path = sockets_dir / f"{spec.side}-{spec.repeat}.sock"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(str(path))
            except OSError as exc:
                sock.close()
                raise WorkerError(f"cannot create the lockstep socket {path} ({exc}); "
                                  "a shorter TMPDIR helps when the path is too long") from None
            sock.listen(1)
            sock.setblocking(False)
            made[spec.side] = sock
        yield made
    finally:
        for sock in made.values():
            path = sock.getsockname()
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(path)


def run_pair(
    specs: Sequence[WorkerSpec],
    sockets_dir: Path,
    *,
    spawn: Spawn = ProcessWorker,
    timeout_s: float = 1800.0,
    progress: Callable[[str], None] = lambda line: None,
    repeats: int | str = 1,  # the pairs planned, as the progress lines show them ("5", "10 at most")
) -> PairReport:
    """Run the two workers of ``specs`` (first starts and moves first) in lockstep to their end."""
    if len(specs) != 2:
        raise ValueError("a process pair has two workers")
    with _listeners(sockets_dir, specs) as listeners, selectors.DefaultSelector() as sel:
        sides = {
            s.side: _Side(
                WorkerSpec(s.side, s.repeat, s.command, s.cwd,
                           {**s.env, lockstep.ENV: str(listeners[s.side].getsockname())}, s.log),
                listeners[s.side],
            )
            for s in specs
        }
        for side in sides.values():
            sel.register(side.listener, selectors.EVENT_READ, (side, "accept"))
        pair = _Pair(sides, sel, spawn, timeout_s, progress, repeats)
        try:
            for s in specs:  # one at a time: a starting process overlaps nothing
                pair.start(sides[s.side])
                pair.wait_for(sides[s.side])
            schedule = Schedule(specs[0].side, specs[1].side)
            while True:
                waiting = {name: side.waiting for name, side in sides.items()
                           if not side.done and side.waiting is not None}
                if not waiting:
                    break
                chosen = sides[schedule.choose(waiting, {n: s.seen for n, s in sides.items()})]
                pair.grant(chosen)
                pair.wait_for(chosen)
        finally:
            for side in sides.values():
                if side.conn is not None:  # a worker still waiting for a turn sees the end at once
                    side.conn.close()
                if side.worker is not None:
                    side.worker.stop()
    notes = [f"{name} never asked for a turn (its code predates lockstep?): the pair ran one side "
             "after the other" for name, side in sides.items() if side.turns == 0]
    return PairReport({n: s.returncode or 0 for n, s in sides.items()},
                      {n: s.turns for n, s in sides.items()}, notes)


class _Pair:
    def __init__(self, sides: dict[str, _Side], sel: selectors.BaseSelector, spawn: Spawn,
                 timeout_s: float, progress: Callable[[str], None], repeats: int | str) -> None:
        self.sides = sides
        self.sel = sel
        self.spawn = spawn
        self.timeout_s = timeout_s
        self.progress = progress
        self.repeats = repeats

    def start(self, side: _Side) -> None:
        side.worker = self.spawn(side.spec)

    def grant(self, side: _Side) -> None:
        assert side.conn is not None
        side.waiting = None
        with contextlib.suppress(OSError):  # it is exiting: wait_for sees it end
            side.conn.sendall(f"{lockstep.GO}\n".encode())

    def wait_for(self, side: _Side) -> None:
        """Until ``side`` waits for a turn or has exited; the other side is waiting meanwhile."""
        deadline = time.monotonic() + self.timeout_s
        while side.waiting is None and not side.done:
            for key, _ in self.sel.select(timeout=0.05):
                owner, what = key.data
                if what == "accept":
                    self._accept(owner)
                else:
                    self._read(owner)
            for other in self.sides.values():
                self._check_exit(other)
            if side.waiting is None and not side.done and time.monotonic() > deadline:
                raise WorkerError(
                    f"{side.spec.side} worker (pair {side.spec.repeat}) computed {self.timeout_s:.0f} s "
                    f"without finishing a round or exiting; stopped (log {side.spec.log})")

    def _accept(self, side: _Side) -> None:
        try:
            conn, _ = side.listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        if side.conn is not None:  # one connection per worker; a second one is refused
            conn.close()
            return
        side.conn = conn
        self.sel.register(conn, selectors.EVENT_READ, (side, "read"))

    def _read(self, side: _Side) -> None:
        assert side.conn is not None
        try:
            data = side.conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the worker closed its end: it is exiting
            self.sel.unregister(side.conn)
            side.conn.close()
            side.conn = None
            side.waiting = None
            return
        side.buffer += data
        while b"\n" in side.buffer:
            line, side.buffer = side.buffer.split(b"\n", 1)
            verb, _, benchmark = line.decode(errors="replace").partition(" ")
            if verb != lockstep.WAIT:
                continue
            if benchmark not in side.seen:
                self.progress(f"[{side.spec.repeat}/{self.repeats}] {side.spec.side} {benchmark}")
            side.seen.add(benchmark)
            side.waiting = benchmark
            side.turns += 1

    def _check_exit(self, side: _Side) -> None:
        if side.worker is None or side.done:
            return
        rc = side.worker.poll()
        if rc is None:
            return
        side.returncode = rc
        side.waiting = None
        if rc not in (0, 1):
            what = {2: "interrupted", 3: "internal error", 4: "usage error", 5: "no tests collected"}
            raise WorkerError(f"{side.spec.side} worker (pair {side.spec.repeat}): pytest exited {rc} "
                              f"({what.get(rc, 'died')}): {last_line(side.spec.log)} (log {side.spec.log})")


def last_line(log: Path) -> str:
    """The last non-empty line of a worker's log, without pytest's ``=`` frame."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "no output"
    return next((ln.strip(" =") for ln in reversed(text.splitlines()) if ln.strip(" =")), "no output")
