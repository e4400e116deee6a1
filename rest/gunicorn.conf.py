"""gunicorn settings of the REST server: `gunicorn -c gunicorn.conf.py server:app` and `python server.py`.

Every lower-case name is a documented gunicorn setting (https://docs.gunicorn.org/en/stable/settings.html);
the upper-case names are the lab's limits, each listed in README.md "Limits".
"""

import logging
import os
import signal
import sys

import gevent

#: Seconds a client has to send a whole request head (request line and headers); also how long an idle
#: keep-alive connection stays open. gunicorn's gevent worker waits `keepalive` seconds for each request
#: head, then closes the connection without an answer: this drops slow (or silent) clients.
HEADER_TIMEOUT_SECONDS = 5
#: Longest request line (method, path, query, version) in bytes; longer gets gunicorn's 414 page.
MAX_REQUEST_LINE_BYTES = 2048
#: Most header fields in one request; more gets gunicorn's 431 page.
MAX_HEADER_FIELDS = 50
#: Longest header field (name and value) in bytes; longer gets gunicorn's 431 page.
MAX_HEADER_FIELD_BYTES = 4096
#: Worker processes: one per core of a usual laptop. Each serves many connections on one thread (gevent).
WORKERS = 2
#: Open connections per worker; beyond that a new client waits in the listen queue until one closes.
MAX_CONNECTIONS_PER_WORKER = 500
#: Seconds requests in progress get to finish after SIGTERM or Ctrl+C; then each worker ends.
STOP_GRACE_SECONDS = 0.2

bind = ["0.0.0.0:5151"]  # `python server.py --host --port` and `gunicorn -b HOST:PORT` override it
workers = WORKERS
# gevent: gunicorn's documented worker type for clients that may be slow to send (see README.md). A
# connection waiting for bytes holds a cheap greenlet, not one of a few threads.
worker_class = "gevent"
worker_connections = MAX_CONNECTIONS_PER_WORKER
keepalive = HEADER_TIMEOUT_SECONDS
limit_request_line = MAX_REQUEST_LINE_BYTES
limit_request_fields = MAX_HEADER_FIELDS
limit_request_field_size = MAX_HEADER_FIELD_BYTES
graceful_timeout = 1  # whole seconds: the master SIGKILLs a worker still alive then (never needed)
proc_name = "rest-server"
control_socket_disable = True  # else every gunicorn of a user shares one control socket file
loglevel = "warning"
# One line per request: time, client address and port, request line, status, size, duration.
access_log_format = '%(t)s %(h)s:%({remote_port}e)s "%(r)s" %(s)s %(b)s bytes %(M)s ms'

# Every line on stdout and, when SERVER_LOG names a file (the Docker image sets it), appended there too:
# `python server.py` in the container then follows the running server's output from that file.
SERVER_LOG = os.environ.get("SERVER_LOG")


def outputs(formatter: str) -> dict:
    """Logging handlers writing each line to stdout and, with SERVER_LOG set, appending it to that file."""
    found = {f"{formatter}-stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout",
                                     "formatter": formatter}}
    if SERVER_LOG:
        found[f"{formatter}-file"] = {"class": "logging.FileHandler", "filename": SERVER_LOG, "formatter": formatter}
    return found


logconfig_dict = {
    "formatters": {"plain": {"format": "%(message)s"}, "tagged": {"format": "[%(levelname)s] %(message)s"}},
    "handlers": {**outputs("plain"), **outputs("tagged")},
    "root": {"level": "WARNING", "handlers": list(outputs("tagged"))},  # the app's own errors
    "loggers": {
        "gunicorn.error": {"level": "WARNING", "handlers": list(outputs("tagged")), "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": list(outputs("plain")), "propagate": False},
        "rest": {"level": "INFO", "handlers": list(outputs("plain")), "propagate": False},  # the ready line
    },
}


def when_ready(server):
    """gunicorn hook: the listening socket is open, so the ready line can be printed."""
    logging.getLogger("rest").info("REST server listening on %s (gunicorn, %d %s workers)",
                                   ", ".join(server.cfg.bind), server.cfg.workers, server.cfg.worker_class_str)




def post_request(_worker, _req, _environ, _resp):
    """gunicorn hook, after each request: let the worker's other connections take their turn. gevent switches
    only when a connection has to wait; one whose client always has the next request ready would otherwise
    be served again and again while the others wait (up to a second, with 16 busy clients)."""
    gevent.idle()  # returns once the loop has run everything else that is ready, network reads included


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)  # docker stop or kill, Ctrl+C, gunicorn's quick stop


def post_fork(_server, _worker):
    """gunicorn hook, in a new worker: until it sets its own handlers, a stop signal ends it at once."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: os._exit(0))


def post_worker_init(_worker):
    """gunicorn hook, in a worker ready to serve: a stop signal ends it within STOP_GRACE_SECONDS. Handled in
    gevent's loop, which reacts at once (gunicorn's own handlers can wait a second for the loop to wake up)."""
    for signum in STOP_SIGNALS:
        gevent.signal_handler(signum, stop_worker)


def stop_worker():
    gevent.sleep(STOP_GRACE_SECONDS)  # requests in progress finish meanwhile (each takes milliseconds)
    sys.stdout.flush()
    os._exit(0)
