"""Start lab processes, watch their output and stop them: for tests, demos and captures.

`Proc` runs a command with stdout and stderr merged, keeps every line, can wait
for a line matching a pattern (a server's ready line) and stops the process by
PID, SIGTERM first, SIGKILL only if it does not go within the grace period.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Module-level name: inside class Proc, `signal` is the method of that name, not the module.
SIGTERM = signal.SIGTERM


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment lab scripts run in: labkit importable, unbuffered UTF-8 output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    if extra:
        env.update(extra)
    return env


def script(folder: str, name: str, *args: str) -> list[str]:
    """argv that runs `<repo>/<folder>/<name>` with this interpreter."""
    return [sys.executable, str(REPO / folder / name), *args]


class Proc:
    """A child process whose merged output is collected line by line."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
        label: str | None = None,
        echo: Callable[[str, str], None] | None = None,
        stdin: bool = False,
        prefix: Sequence[str] = (),
    ):
        self.argv = list(argv)
        self.label = label or Path(self.argv[1] if len(self.argv) > 1 else self.argv[0]).name
        self.lines: list[str] = []
        self._echo = echo
        self._cond = threading.Condition()
        self.popen = subprocess.Popen(
            [*prefix, *self.argv],
            cwd=cwd,
            env=env if env is not None else python_env(),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="backslashreplace",
            bufsize=1,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            line = line.rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
            if self._echo:
                self._echo(self.label, line)
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait_for(self, pattern: str, timeout: float = 10.0, start: int = 0) -> re.Match:
        """Wait until a line (from index `start`) matches `pattern`; fail with the output so far."""
        rx = re.compile(pattern)

        def first_match() -> re.Match | None:
            return next((m for line in self.lines[start:] if (m := rx.search(line))), None)

        return self._wait_until(first_match, f"print /{pattern}/", timeout)

    def wait_for_count(self, pattern: str, count: int, timeout: float = 15.0, start: int = 0) -> int:
        """Wait until `pattern` has matched at least `count` lines (from index `start`); returns how many."""
        rx = re.compile(pattern)

        def enough() -> int | None:
            seen = sum(1 for line in self.lines[start:] if rx.search(line))
            return seen if seen >= count else None

        return self._wait_until(enough, f"print {count} lines /{pattern}/", timeout)

    def _wait_until(self, found, what: str, timeout: float):
        """Re-check `found()` (under the output lock) as lines arrive until it returns something else than
        None; fail if the output ends first or after `timeout`, with the output so far."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = found()
                if result is not None:
                    return result
                if not self._reader.is_alive():
                    raise RuntimeError(f"{self.label} exited (code {self.popen.poll()}) "
                                       f"before it did {what}:\n{self.output_unlocked()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.label} did not {what} within {timeout}s:\n"
                                       f"{self.output_unlocked()}")
                self._cond.wait(min(left, 0.2))

    def output_unlocked(self) -> str:
        return "\n".join(self.lines[-60:])

    def count(self, pattern: str) -> int:
        rx = re.compile(pattern)
        with self._cond:
            return sum(1 for line in self.lines if rx.search(line))

    def send(self, text: str) -> None:
        assert self.popen.stdin is not None, "start the Proc with stdin=True"
        self.popen.stdin.write(text)
        self.popen.stdin.flush()

    def close_stdin(self) -> None:
        if self.popen.stdin:
            self.popen.stdin.close()

    def wait(self, timeout: float = 10.0) -> int:
        rc = self.popen.wait(timeout)
        self._reader.join(2)
        return rc

    def signal(self, sig: int = SIGTERM) -> None:
        if self.running():
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 3.0, sig: int = SIGTERM) -> int:
        """SIGTERM (or `sig`), then SIGKILL after `timeout`; returns the exit code."""
        if self.running():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._reader.join(2)
        return self.popen.returncode
