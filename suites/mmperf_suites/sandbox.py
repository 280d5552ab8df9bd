"""Runs model-written code (a HumanEval answer and its test) in a child interpreter, never in
the pytest process: pass@1 of the trained-model LLM benchmarks.

The child is ``python -I -S -B`` (no user site, no site-packages, no environment variables, no
bytecode written) in a fresh temporary folder, in its own session, and

* is killed (its whole process group) after ``timeout_s`` of wall time; ``RLIMIT_CPU`` also
  stops it after that much CPU time;
* has ``RLIMIT_AS`` (address space), ``RLIMIT_FSIZE`` (what it may write, stdout included: it
  goes to a file) and ``RLIMIT_CORE`` = 0;
* runs under an audit hook (``sys.addaudithook``, which code cannot remove) that refuses every
  socket operation (no network), process creation (``subprocess``, ``os.system``, ``fork``,
  ``exec``, ``spawn``), ``ctypes`` (which could go around the hook), signals to other processes,
  file deletion and renaming, and opening files for writing;
* passes only when the program ran to its end: the child prints a random token it was given
  after ``check(...)`` returned; an exception, ``sys.exit``/``os._exit``, a timeout or a kill is a
  failed problem, never an error of the run.

This contains the accidents a small model's code makes (an endless loop, ``exit()``, a stray
``import socket``); it is not a security boundary against code written to escape (no kernel
namespaces or seccomp).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_S = 5.0  # HumanEval's own check_correctness uses 3 s; a loaded 2-core VM needs some slack
MEMORY_BYTES = 1 << 30
OUTPUT_BYTES = 1 << 20

# Runs in the child. argv: program file, token, timeout, memory bytes, output bytes.
_CHILD = r'''
import resource, sys
path, token, timeout, memory, output = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
del sys.argv[1:]
cpu = int(timeout) + 1
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_FSIZE, (output, output))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
with open(path) as f:
    source = f.read()
code = compile(source, "<answer>", "exec")
import os
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
BLOCKED_MODULES = frozenset({"socket", "_socket", "ssl", "_ssl", "subprocess", "_posixsubprocess",
                             "multiprocessing", "_multiprocessing", "ctypes", "_ctypes", "pty"})
BLOCKED_EVENTS = frozenset({"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
                            "os.kill", "os.killpg", "os.remove", "os.rmdir", "os.rename", "os.truncate",
                            "shutil.rmtree", "subprocess.Popen", "os.startfile", "ctypes.dlopen", "os.chmod",
                            "os.chown", "os.link", "os.symlink", "os.mkdir", "os.putenv", "os.unsetenv"})
def _audit(event, args):
    if event == "import" and args[0].split(".")[0] in BLOCKED_MODULES:
        raise ImportError(f"sandbox: import {args[0]} is not allowed")
    if event.startswith("socket.") or event in BLOCKED_EVENTS:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open":
        mode, flags = args[1], args[2]
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & WRITE):
            raise PermissionError("sandbox: opening files for writing is not allowed")
sys.addaudithook(_audit)
del os, resource, f, path, source
scope = {"__name__": "__main__", "__builtins__": __builtins__}
try:
    exec(code, scope)
except SystemExit:
    sys.stderr.write("sandbox: the program exited before its test finished\n")
    sys.stderr.flush()
    raise SystemExit(3)
print(token, flush=True)
'''


@dataclass(frozen=True)
class Execution:
    passed: bool
    status: str  # "passed" | "failed" | "timeout"
    detail: str = ""  # the last line of stderr, or what stopped it

    def to_json(self) -> dict[str, object]:
        return {"passed": self.passed, "status": self.status, "detail": self.detail}


def run_program(source: str, timeout_s: float = TIMEOUT_S, memory_bytes: int = MEMORY_BYTES,
                output_bytes: int = OUTPUT_BYTES) -> Execution:
    """Run ``source`` in a sandboxed child interpreter; passed = it ran to its end."""
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="mmperf-sandbox-") as tmp:
        folder = Path(tmp)
        program = folder / "program.py"
        program.write_text(source)
        out_path, err_path = folder / "stdout", folder / "stderr"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", "-c", _CHILD, str(program), token,
                 str(timeout_s), str(memory_bytes), str(output_bytes)],
                cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}, start_new_session=True,
            )
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                return Execution(False, "timeout", f"still running after {timeout_s:g} s: killed")
            finally:
                _kill_group(proc)  # anything the program left behind in its session
        stdout = out_path.read_bytes()[-4096:].decode(errors="replace")
        stderr = err_path.read_bytes()[-4096:].decode(errors="replace").strip()
    if code == 0 and stdout.strip().splitlines()[-1:] == [token]:
        return Execution(True, "passed")
    last = stderr.splitlines()[-1] if stderr else ""
    if code < 0:
        last = last or f"killed by signal {signal.Signals(-code).name}"
    elif code == 0:
        last = last or "exited before its test finished"
    return Execution(False, "failed", last[:300])


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
