"""Supervising child processes: the simulated beamline's servers, Tiled.

:class:`ManagedProcess` is the one supervisor every part of the project uses
for a process it starts:

* its own process group (``start_new_session``), so stopping it also stops its
  children, and a terminal's Ctrl-C reaches only the parent, which then stops
  it in order;
* its output in a log file (with the command line first), and a readiness
  check on a line it prints;
* parent-death handling: on Linux the child gets SIGTERM if the parent dies
  before it could stop the child (SIGKILL, ``os._exit``), so nothing is left
  holding a port;
* stopped by PID: closing stdin first for a child that wants it, then SIGTERM
  to the group, SIGKILL after a timeout; the PID is not reaped before its
  group is signalled, so it cannot have been reused.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from .polling import poll_until

__all__ = ["ManagedProcess", "ProcessError", "log_tail"]


class ProcessError(RuntimeError):
    """A managed process could not start, or died, or did not become ready."""


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (or why there are none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _parent_death_prefix(any_thread: bool = False) -> list[str]:
    """An argv prefix that makes the child get SIGTERM if this process dies.

    Covers the case no ``finally`` can (this process SIGKILLed, or ended by
    ``os._exit``): the child would otherwise hold its ports forever. Linux ties
    the signal to the *thread* that forked, so it is only asked for from the
    main thread, whose end is the process's end, unless ``any_thread`` says the
    calling thread outlives the child (a supervisor's). The shim execs the real
    command, so the PID (and the process group) stay the same.
    """
    if not sys.platform.startswith("linux"):
        return []
    if not any_thread and threading.current_thread() is not threading.main_thread():
        return []
    shim = (
        "import ctypes, os, signal, sys\n"
        # prctl(PR_SET_PDEATHSIG, SIGTERM)
        "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
        "if os.getppid() != int(sys.argv[1]): sys.exit(1)\n"  # parent already gone
        "os.execv(sys.argv[2], sys.argv[2:])\n"
    )
    # -I -S: no site-packages to scan, just the standard library.
    return [sys.executable, "-I", "-S", "-c", shim, str(os.getpid())]


class ManagedProcess:
    """One child process in its own process group, logging to a file.

    Args:
        name: What to call it in messages (``"ioc"``, ``"tiled"``).
        argv: The command line.
        log_path: Where its stdout and stderr go (appended).
        env: Its whole environment.
        cwd: Its working directory; default: this process's.
        ready: A line it prints on stdout once it serves: a string (the whole
            line) or a pattern (``fullmatch``); None: no readiness line.
        keep_stdin_open: Give it a pipe for stdin and close it only to stop it
            (a shell that exits at end of input, like the IOC's).
        thread_outlives_child: The thread calling :meth:`start` lives until
            the child is stopped (a supervisor thread), so the parent-death
            signal may be tied to it although it is not the main thread.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str],
        *,
        cwd: Path | None = None,
        ready: str | re.Pattern[str] | None = None,
        keep_stdin_open: bool = False,
        thread_outlives_child: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env)
        self.cwd = cwd
        self.ready = re.compile(re.escape(ready)) if isinstance(ready, str) else ready
        self.keep_stdin_open = keep_stdin_open
        self.thread_outlives_child = thread_outlives_child
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._ready_text: str | None = None
        self._output_closed = threading.Event()

    @property
    def pid(self) -> int | None:
        """The child's PID once started."""
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        """Start the child (returns at once; see :meth:`wait_ready`)."""
        argv = [*_parent_death_prefix(self.thread_outlives_child), *self.argv]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log: IO[bytes] = open(self.log_path, "ab")  # noqa: SIM115 - handed to a thread
        log.write(f"$ {shlex.join(self.argv)}\n".encode())
        log.flush()
        try:
            self._proc = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.PIPE if self.keep_stdin_open else subprocess.DEVNULL,
                # Watch stdout for the readiness line; otherwise straight to the log.
                stdout=subprocess.PIPE if self.ready else log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group; no terminal Ctrl-C
            )
        except BaseException:
            log.close()
            raise
        if self.ready is None:
            log.close()
            return
        stdout = self._proc.stdout
        assert stdout is not None
        threading.Thread(
            target=self._copy_output,
            args=(stdout, log),
            name=f"{self.name}-output",
            daemon=True,
        ).start()

    def _copy_output(self, stdout: IO[bytes], log: IO[bytes]) -> None:
        """Copy the child's output to its log, noting the readiness line."""
        assert self.ready is not None
        try:
            with stdout, log:
                for line in stdout:
                    log.write(line)
                    log.flush()
                    text = line.decode(errors="replace").strip()
                    if not self._ready.is_set() and self.ready.fullmatch(text):
                        self._ready_text = text
                        self._ready.set()
        finally:
            self._output_closed.set()

    def wait_ready(self, timeout: float) -> str:
        """Wait for the readiness line and return it; :class:`ProcessError` if
        the child exits first or ``timeout`` passes."""
        if self.ready is None:
            raise ProcessError(f"{self.name} has no readiness line to wait for")

        def ready_or_gone() -> bool:
            return self._ready.is_set() or self._output_closed.is_set() or self.exited()

        try:
            poll_until(ready_or_gone, timeout=timeout, interval=0.05)
        except TimeoutError:
            raise ProcessError(
                self.failure(f"{self.name} not ready after {timeout:g} s")
            ) from None
        if not self._ready.is_set():
            # Let the log catch up with its last words (or a late ready line).
            self._output_closed.wait(2.0)
        if self._ready_text is None:
            raise ProcessError(self.failure(f"{self.name} exited before ready"))
        return self._ready_text

    def _status(self) -> os.waitid_result | None:
        """The child's exit status if it has exited, without reaping it."""
        if self._proc is None:
            return None
        try:
            return os.waitid(
                os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT
            )
        except ChildProcessError:  # already reaped
            return None

    def exited(self) -> bool:
        """Whether the child has exited (without reaping it)."""
        if self._proc is None or self._proc.returncode is not None:
            return True
        return self._status() is not None

    @property
    def running(self) -> bool:
        """Started and not exited."""
        return self._proc is not None and not self.exited()

    def exit_code(self) -> int | None:
        """The exit code (minus the signal if killed) once exited, else None."""
        if self._proc is not None and self._proc.returncode is not None:
            return self._proc.returncode
        status = self._status()
        if status is None:
            return None
        if status.si_code == os.CLD_EXITED:
            return status.si_status
        return -status.si_status

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the child's log."""
        return log_tail(self.log_path, lines)

    def failure(self, what: str) -> str:
        """A message for ``what`` went wrong, with the tail of the log."""
        code = self.exit_code()
        status = "" if code is None else f" (exit code {code})"
        return f"{what}{status}; log {self.log_path}, ending:\n{self.log_tail()}"

    def _wait_exited(self, timeout: float) -> bool:
        try:
            poll_until(self.exited, timeout=timeout, interval=0.02)
        except TimeoutError:
            return False
        return True

    def _signal_group(self, sig: int) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the child and its process group; idempotent.

        With a stdin pipe, closing it comes first (a shell exits cleanly on end
        of input). Then SIGTERM to the group, then SIGKILL after ``timeout``
        seconds.
        """
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            self._wait_exited(timeout)
        # Also reaches children left in the group after the child itself exited.
        self._signal_group(signal.SIGTERM)
        if not self._wait_exited(timeout):
            self._signal_group(signal.SIGKILL)
            self._wait_exited(timeout)
        self._signal_group(signal.SIGKILL)  # stragglers that ignored SIGTERM
        proc.wait()
        if proc.stdout is not None:
            self._output_closed.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the child's group at once, as a crash would; reap it."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        self._signal_group(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            self._output_closed.wait(5.0)
