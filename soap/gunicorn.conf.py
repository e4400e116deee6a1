"""gunicorn settings of the SOAP server, for `gunicorn -c gunicorn.conf.py server:app` and `python server.py`.

Lower-case names are documented gunicorn settings and hooks (https://docs.gunicorn.org/en/stable/settings.html),
but for `stop_at_once`, a Python fork hook. README.md "Limits" lists every limit set here, by its name in this file."""

import logging
import os
import signal

import gevent

#: Seconds a client has to send a whole request head (request line and headers), and an idle keep-alive
#: connection stays open: gunicorn's gevent worker waits `keepalive` seconds for each head, then hangs up.
HEADER_TIMEOUT_SECONDS = 5
#: Seconds calls in progress get to finish after SIGTERM or Ctrl+C; then each worker exits.
STOP_GRACE_SECONDS = 0.1

bind = ["0.0.0.0:8000"]  # `python server.py --host --port` and `gunicorn -b HOST:PORT` override it
workers = 2  # processes, one per core of a usual laptop
worker_class = "gevent"  # for clients slow to send: a waiting connection holds a greenlet, not a thread
worker_connections = 500  # connections a worker holds at once (on one thread); more wait in the listen queue
keepalive = HEADER_TIMEOUT_SECONDS
limit_request_line = 2048  # longest request line (bytes); beyond this or the next two: gunicorn's own HTML page
limit_request_fields = 50  # most header fields
limit_request_field_size = 4096  # longest header field (bytes)
graceful_timeout = 1  # whole seconds the master waits for its workers (they need STOP_GRACE_SECONDS)
proc_name = "soap-server"
control_socket_disable = True  # else every gunicorn of a user shares one control socket file
# One line per request; soap.call is what server.py noted (`add(10,5) = 15`, or the fault), `-` if none.
access_log_format = '%(h)s:%({remote_port}e)s "%(r)s" %(s)s %({soap.call}e)s'

# Every line goes to stdout and, when SERVER_LOG names a file (the Docker image sets it), is appended there
# too: `python server.py` in the container then follows this server's output from that file.
SERVER_LOG = os.environ.get("SERVER_LOG")
OUTPUTS = {"stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}}
if SERVER_LOG:
    OUTPUTS["file"] = {"class": "logging.FileHandler", "filename": SERVER_LOG}
logconfig_dict = {
    "handlers": OUTPUTS,  # with no formatter named, each line is the message alone
    "root": {"level": "WARNING", "handlers": list(OUTPUTS)},  # every logger below propagates to these
    "loggers": {"gunicorn.error": {"level": "WARNING", "propagate": True},
                "gunicorn.access": {"level": "INFO", "propagate": True},
                "soap": {"level": "INFO"},  # the ready line
                "spyne": {"level": "CRITICAL"}},  # spyne logs each Fault with a traceback; the access line names it
}


def when_ready(server):
    """Hook: the listening socket is open, so the ready line can be printed."""
    host, port = server.cfg.bind[0].rsplit(":", 1)
    logging.getLogger("soap").info("SOAP server listening on %s:%s (WSDL: http://%s:%s/?wsdl)",
                                   host.strip("[]"), port, host, port)


def stop_at_once():
    """In a new worker, right after the fork: Ctrl+C is the master's to handle; SIGTERM or SIGQUIT ends it at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, lambda *_: os._exit(0))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


# Python's own fork hooks, not gunicorn's post_fork: that runs after the new worker has logged, and a stop signal
# arriving before it would be lost (the master then kills the worker a second later). Held back during the fork,
# such a signal reaches the worker's own handlers.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGQUIT}
os.register_at_fork(before=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS),
                    after_in_parent=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS),
                    after_in_child=stop_at_once)


def post_worker_init(worker):  # noqa: ARG001 - gunicorn's hook signature
    """Hook, in a booted worker: SIGTERM or SIGQUIT (the master's on Ctrl+C) ends it STOP_GRACE_SECONDS later, time
    for calls in progress. gevent's signal_handler reacts at once; gunicorn's own stop waits whole seconds."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGQUIT):
        gevent.signal_handler(sig, gevent.spawn_later, STOP_GRACE_SECONDS, os._exit, 0)
