"""Serve a WSGI app under gunicorn the lab's way: `serve()`, used by rest/server.py and soap/server.py.

A production server (several processes, threads, keep-alive, size limits) that a script embeds, so
`python server.py` is all it takes, and that behaves like every other lab server: one ready line, one
line per request, a clear line when the port is taken, and a stop within a second on SIGTERM or Ctrl+C.
On Linux each worker listens on its own SO_REUSEPORT socket, so the kernel spreads connections over them.

Every change to gunicorn's internals lives here, each tied to the gunicorn pinned in rest/ and
soap/requirements.txt (27.0.1): a new gunicorn means re-reading gunicorn/workers/gthread.py,
workers/base.py and arbiter.py against the comments marked "gunicorn 27.0.1".
Needs gunicorn, so only the REST and SOAP images (which install it) import this module.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from concurrent import futures

import gunicorn.util
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers import gthread

from labkit import cli

#: Seconds a worker thread waits for a new connection's first bytes before handing it to the worker's
#: poller, where it holds no thread (gunicorn's own 5 s let a dozen silent clients stall everyone).
FIRST_BYTES_WAIT_SECONDS = 0.02
#: Seconds an idle keep-alive connection stays open once a stop began (gunicorn's own is 2 s).
STOP_LINGER_SECONDS = 0.05
#: Seconds requests in progress get to finish after SIGTERM or Ctrl+C; then each worker ends itself.
STOP_GRACE_SECONDS = 0.3
#: Seconds after a stop at which the master SIGKILLs a worker still alive. Never needed (workers end
#: themselves after STOP_GRACE_SECONDS); beyond a second on purpose, so a worker that needed it shows up
#: as a stop slower than the lab's "within a second" in the tests.
STOP_KILL_SECONDS = 2

#: The signals that stop a worker: SIGTERM (from the master), SIGINT (Ctrl+C reaches the whole process
#: group), SIGQUIT (the master's quick stop).
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})

#: Each worker gets its own listening socket (gunicorn's reuse_port) and the kernel spreads new connections
#: over them by a hash of their addresses. With one shared socket a single worker could accept all of a
#: client's keep-alive connections and leave the other cores idle (benchmark: 4 runs of 12 at 16 clients).
#: The price: a connection waits in its own worker's queue, also when that worker is at its connection
#: limit and another is not, and is reset if that worker dies before accepting it. Linux only: elsewhere
#: SO_REUSEPORT does not balance, so the workers share the master's socket there.
REUSE_PORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")

#: (HTTP status, reason, gunicorn's message) -> (Content-Type, body): a request gunicorn cannot parse,
#: answered in the application's own format.
ErrorBody = Callable[[int, str, str], tuple[str, bytes]]


def serve(app, *, host: str, port: int, name: str, workers: int, threads: int, ready_line: str,
          max_connections_per_worker: int, idle_timeout: float, access_log_format: str | None = None,
          error_body: ErrorBody | None = None, settings: Mapping[str, object] | None = None) -> None:
    """Serve the WSGI callable `app` on host:port until SIGTERM or Ctrl+C, then exit the process.

    `name` ("REST server") names it in the port-taken line and in `ps` (rest-server). `ready_line` is
    printed once, when every worker is ready to serve (its socket listens, its app is loaded).
    `access_log_format` (gunicorn's access log syntax) logs every request on stdout; without it the app
    logs its own requests. `error_body` answers the requests gunicorn itself refuses (malformed, request
    line or headers too long) in the app's format instead of gunicorn's HTML page. `settings` are further
    gunicorn settings (limit_request_line, timeout...).
    """
    port_claim = _claim_port(host, port, name)  # held (the workers inherit it) until the server ends
    cli.ensure_port_free(host, port, name)
    _adapt_gunicorn(error_body)

    options: dict[str, object] = {
        "bind": [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"],
        "worker_class": LabWorker,
        "workers": workers,
        "threads": threads,
        "worker_connections": max_connections_per_worker,
        "keepalive": idle_timeout,
        "graceful_timeout": STOP_KILL_SECONDS,  # the master's SIGKILL deadline (see LabWorker for the stop)
        "accesslog": "-" if access_log_format else None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": name.lower().replace(" ", "-"),
        # Else every gunicorn on the machine shares one control socket ($XDG_RUNTIME_DIR/gunicorn.ctl or
        # ~/.gunicorn/gunicorn.ctl): a second server would take it over.
        "control_socket_disable": True,
        "reuse_port": REUSE_PORT,
        # Not when_ready: with reuse_port the master binds nothing, the workers do, after it.
        "post_worker_init": _announcer(ready_line, workers),
        "post_fork": _stop_at_once_while_booting,
    }
    if access_log_format:
        options["access_log_format"] = access_log_format
    options.update(settings or {})
    try:
        _EmbeddedGunicorn(app, options).run()
    finally:
        if port_claim is not None:
            port_claim.close()


class _EmbeddedGunicorn(BaseApplication):
    """gunicorn configured from code (no command line, no config file), serving one already-built app."""

    def __init__(self, app, options: Mapping[str, object]):
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return self.application

    def run(self) -> None:
        try:  # gunicorn 27.0.1 BaseApplication.run, with the lab's arbiter
            _LabArbiter(self).run()
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(1)


class _LabArbiter(Arbiter):
    """gunicorn's master (gunicorn 27.0.1), forking workers that cannot miss a stop signal while they start."""

    def spawn_worker(self):
        # Arbiter.spawn_worker forks, then in the child binds the worker's socket (reuse_port), then calls the
        # post_fork hook. Until that hook the child still has the master's handlers, which only queue a signal
        # for a loop the worker never runs: a stop arriving then was lost (the stop then took STOP_KILL_SECONDS).
        # The stop signals stay blocked across the fork; the hook unblocks them with its own handlers in place.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            return super().spawn_worker()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _claim_port(host: str, port: int, name: str) -> socket.socket | None:
    """Claim `port` for this server in the network namespace, so two copies started at once cannot share it.

    With SO_REUSEPORT a second copy whose workers bind after the probe (cli.ensure_port_free) would join
    the first one's sockets instead of failing. The claim is a Linux abstract Unix socket named after the
    port: one per network namespace (as ports are), released by the kernel when the last process holding
    it (master or worker) ends, however it ends. Elsewhere (no REUSE_PORT) the probe is enough.
    """
    if not REUSE_PORT:
        return None
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(f"\0labkit-wsgi-port-{port}")
    except OSError as e:
        claim.close()
        if e.errno == errno.EADDRINUSE:
            raise cli.LabError(cli.already_running(host, port, name), code=2) from None
        return None  # no abstract sockets here (a sandbox?): the probe alone guards the port
    return claim


def _announcer(ready_line: str, workers: int):
    """A post_worker_init hook printing `ready_line` once, in the last of the first `workers` workers to be
    ready (each listens by then), so that the first clients are spread over all of them. Each worker takes
    one byte from a pipe the master filled; the one that takes the last byte prints; later workers (ones the
    master starts to replace others) read nothing."""
    token_read, token_write = os.pipe()
    os.write(token_write, b"." * (workers - 1) + b"!")
    os.close(token_write)  # so once every byte is taken, a read returns at once with nothing

    def announce(_worker) -> None:
        if os.read(token_read, 1) == b"!":
            print(ready_line, flush=True)

    return announce


def _adapt_gunicorn(error_body: ErrorBody | None) -> None:
    """gunicorn 27.0.1 has module settings, not options, for these: set in the master, workers inherit them."""
    # gthread.ThreadWorker.handle waits this long for a new connection's first bytes while holding a
    # pool thread (default 5 s); after it, the connection waits in the poller instead.
    gthread.DEFAULT_WORKER_DATA_TIMEOUT = FIRST_BYTES_WAIT_SECONDS
    # gthread.ThreadWorker.run keeps idle keep-alive connections this long once stopping (default 2 s).
    gthread.STOP_KEEPALIVE_LINGER = STOP_LINGER_SECONDS
    if error_body is not None:
        # Worker.handle_error (workers/base.py) answers an unparsable request through util.write_error,
        # looked up at each call, with an HTML page: replaced by the app's own format.
        gunicorn.util.write_error = _error_writer(error_body)


def _error_writer(error_body: ErrorBody):
    def write_error(sock, status_int: int, reason: str, mesg: str) -> None:
        content_type, body = error_body(status_int, reason, mesg)
        head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
        gunicorn.util.write_nonblock(sock, head + body)

    return write_error


def _exit_now(_signum, _frame) -> None:
    os._exit(0)


def _stop_at_once_while_booting(_arbiter, _worker) -> None:
    """post_fork hook: a new worker still has the master's signal handlers (gunicorn 27.0.1 Arbiter.signal),
    which only queue a signal for a master loop this process never runs; until the worker installs its
    own (LabWorker.init_signals), a stop signal simply ends it. One that came since the fork was held
    blocked (_LabArbiter.spawn_worker): it ends the worker now."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _exit_now)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class LabWorker(gthread.ThreadWorker):
    """gunicorn's threaded worker (gunicorn 27.0.1), stopping within STOP_GRACE_SECONDS whatever its clients do.

    SIGTERM, SIGINT (once or twice) and SIGQUIT all mean one thing: stop accepting, drop idle keep-alive and
    silent connections, let requests in progress finish, and exit by STOP_GRACE_SECONDS at the latest. The
    stock worker could not: a connection that sent nothing kept its graceful stop waiting for the whole
    graceful timeout, a thread blocked reading half a request kept the process alive at exit (the
    interpreter joins every pool thread) until the master SIGKILLed it, and its Ctrl+C handler shuts the
    pool down under a lock, so a second Ctrl+C arriving inside that handler could hang it.
    """

    _stopping = False

    def get_thread_pool(self):
        # Pool threads block the stop signals (and the deadline's SIGALRM): the kernel then delivers them to
        # the main thread, interrupting its select() at once. Had a pool thread caught one, Python would run
        # the handler only when the main thread next woke up (up to a second later; gthread does not
        # watch gunicorn's signal wake-up pipe).
        return futures.ThreadPoolExecutor(max_workers=self.cfg.threads, initializer=signal.pthread_sigmask,
                                          initargs=(signal.SIG_BLOCK, set(self.SIGNALS) | {signal.SIGALRM}))

    def init_signals(self):
        # gunicorn 27.0.1 Worker.init_signals first resets every handler to the default (for SIGQUIT a core
        # dump, for SIGINT death by signal): a stop signal arriving meanwhile waits until ours are in place.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            super().init_signals()  # SIGTERM -> handle_exit, SIGINT and SIGQUIT -> handle_quit
            signal.signal(signal.SIGALRM, _exit_now)  # the stop's deadline, armed in _stop()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def handle_exit(self, sig, frame):  # noqa: ARG002 - signal handler signature
        self._stop()

    def handle_quit(self, sig, frame):  # noqa: ARG002 - signal handler signature
        self._stop()

    def _stop(self) -> None:
        """Runs in a signal handler, possibly inside itself (a second Ctrl+C): no locks, nothing that blocks."""
        if self._stopping:
            return
        self._stopping = True
        signal.setitimer(signal.ITIMER_REAL, STOP_GRACE_SECONDS)  # then SIGALRM: _exit_now, whatever is left
        self.alive = False  # ThreadWorker.run leaves its loop and starts its graceful stop
        self.method_queue.defer(lambda: None)  # wakes the loop now (what gunicorn's own handle_exit does)

    def _cap_keepalive(self, deadline):
        # gunicorn 27.0.1 ThreadWorker.run calls this once, when its graceful stop begins, to cap idle
        # keep-alive connections at STOP_KEEPALIVE_LINGER. Connections that never sent a byte have no
        # request to finish either: closed now, not after their whole keep-alive timeout.
        super()._cap_keepalive(deadline)
        for conn in self.pending_conns:
            conn.timeout = 0
        self.murder_pending()

    def run(self):
        super().run()
        # Leave without the interpreter's shutdown, which joins every pool thread, even one still blocked
        # reading a request that will never be completed; os._exit skips flushing, hence the flush first.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(0)
