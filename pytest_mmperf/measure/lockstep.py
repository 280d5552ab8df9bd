"""Lockstep: two benchmark processes that take turns, so that they never compute at the same time.

``mmperf ab`` keeps a base and a head worker process alive at once and alternates their measured
rounds (see :mod:`pytest_mmperf.ab.coordinator`). On a 2-core machine two processes computing at
once disturb each other (caches, memory bandwidth, the other core's load), so a worker computes
only while it holds the turn:

* the coordinator names one Unix socket per worker in the environment variable ``MMPERF_LOCKSTEP``;
* before each measured round the :class:`~pytest_mmperf.measure.sampler.Sampler` calls
  :meth:`Turnstile.wait_turn`: the worker writes ``wait <benchmark>`` and blocks until the
  coordinator answers ``go``. Asking for a turn *is* giving the previous one back;
* between two ``wait`` lines the worker holds the turn: the round itself and everything after it
  until the next round (bookkeeping, the next benchmark's build and warm-up, writing results), so
  none of that overlaps the other side's rounds. Exiting gives the turn back for good.

A worker starts computing before its first ``wait`` (imports, collection, the first build); the
coordinator starts the second worker only once the first is waiting, so that overlaps nothing
either. Without ``MMPERF_LOCKSTEP`` :func:`from_environment` returns a turnstile that does nothing.
The protocol is one line each way per round (about 50 us on a Unix socket).
"""

from __future__ import annotations

import os
import socket
from typing import Protocol

ENV = "MMPERF_LOCKSTEP"
WAIT = "wait"
GO = "go"


class LockstepError(RuntimeError):
    """The coordinator went away or answered something else; one line."""


class Turn(Protocol):
    def wait_turn(self, benchmark: str | None = None) -> None: ...


class NoTurnstile:
    """Not in lockstep: a round starts at once."""

    def wait_turn(self, benchmark: str | None = None) -> None:
        return None


def current_benchmark() -> str:
    """The running test's node id, as pytest publishes it (``PYTEST_CURRENT_TEST``), for the
    coordinator's progress lines and its alignment of the two sides' benchmarks."""
    value = os.environ.get("PYTEST_CURRENT_TEST", "")
    return value.rsplit(" (", 1)[0].replace("\n", " ") or "?"


class Turnstile:
    """The worker's end: one connection to the coordinator, opened at the first round."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._sock: socket.socket | None = None

    def wait_turn(self, benchmark: str | None = None) -> None:
        """Give the turn back and block until it is this process's turn again."""
        label = (benchmark or current_benchmark()).replace("\n", " ")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.connect(self.path)
            self._sock.sendall(f"{WAIT} {label}\n".encode())
            answer = _read_line(self._sock)
        except OSError as exc:
            self.close()
            raise LockstepError(f"lockstep: the coordinator at {self.path} is gone ({exc})") from None
        if answer != GO:
            raise LockstepError(f"lockstep: the coordinator at {self.path} answered {answer!r}, not {GO!r}")

    def close(self) -> None:
        """Give the turn back for good (exiting does the same)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _read_line(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(64)
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data.decode().strip()


_TURNSTILES: dict[str, Turnstile] = {}


def from_environment() -> Turn:
    """This process's turnstile: one connection per process, kept for its lifetime (the socket is
    the process's place in the coordinator's schedule)."""
    path = os.environ.get(ENV)
    if not path:
        return NoTurnstile()
    if path not in _TURNSTILES:
        _TURNSTILES[path] = Turnstile(path)
    return _TURNSTILES[path]


def close_all() -> None:
    """Give every turn of this process back for good (at session end)."""
    for turnstile in _TURNSTILES.values():
        turnstile.close()
