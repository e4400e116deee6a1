"""The conventions every lab tool shares: flags, signals and one-line errors.

A tool builds its parser with `parser()`, does its work in `main(args)` and
hands that to `run()`. `run()` makes output line-buffered UTF-8, turns SIGTERM
and Ctrl+C into a clean exit within a second, and prints a `LabError` as one
line on stderr instead of a traceback.
"""

from __future__ import annotations

import argparse
import errno
import signal
import socket
import sys
from collections.abc import Callable


class LabError(Exception):
    """A failure the user can fix: printed as one line, exit code `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives (docker stop, kill)."""


def port_number(text: str) -> int:
    """argparse type for --port: an integer from 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, not {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type for counts such as --repeat: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parser(description: str, *, host: str, port: int, server: bool) -> argparse.ArgumentParser:
    """An ArgumentParser with the lab's --host/--port pair already on it."""
    p = argparse.ArgumentParser(description=description)
    if server:
        p.add_argument("--host", default=host, help=f"address to bind (default: {host})")
        p.add_argument("--port", type=port_number, default=port, help=f"port to listen on (default: {port})")
    else:
        p.add_argument("--host", default=host, help=f"server to connect to (default: {host}, the compose service)")
        p.add_argument("--port", type=port_number, default=port, help=f"server port (default: {port})")
    return p


def _on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Terminated()


def setup_process() -> None:
    """Line-buffered UTF-8 output and SIGTERM -> Terminated, for any script."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True, encoding="utf-8", errors="backslashreplace")
        except (AttributeError, ValueError):  # pragma: no cover - exotic streams
            pass
    signal.signal(signal.SIGTERM, _on_sigterm)


def run(main: Callable[[], int | None]) -> None:
    """Run `main()` and exit with its code, never with a traceback for the usual stops."""
    setup_process()
    try:
        code = main() or 0
    except Terminated:
        code = 0
    except KeyboardInterrupt:
        code = 130
    except LabError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        code = e.code
    except BrokenPipeError:
        code = 1
    sys.exit(code)


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Fail with one clear line if `host:port` cannot be bound (taken, or no permission)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise LabError(f"port {port} on {host} is already in use: stop the other {what} "
                           "(or choose another with --port)", code=2) from None
        if e.errno == errno.EACCES:
            raise LabError(f"no permission to bind {host}:{port}: use a port above 1023 (--port)", code=2) from None
        raise LabError(f"cannot bind {host}:{port}: {e.strerror}", code=2) from None
    finally:
        probe.close()


def unreachable(what: str, host: str, port: int, reason: object) -> LabError:
    """The one line a client prints when its server cannot be reached."""
    hint = " (running without Docker? add --host 127.0.0.1)" if "-" in host else ""
    return LabError(f"cannot reach the {what} at {host}:{port}: {reason}{hint}")
