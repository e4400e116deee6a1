"""gunicorn settings of the SOAP server: a plain `gunicorn` in this folder reads them (and `python server.py` too).

Every lower-case name is a documented gunicorn setting or hook (https://docs.gunicorn.org/en/stable/settings.html).
README.md "Limits" lists every limit set here, by its name in this file."""

import logging
import os
import signal

#: Seconds a client has to send a whole request head (request line and headers), and an idle keep-alive
#: connection stays open: gunicorn's gevent worker waits `keepalive` seconds for each head, then hangs up.
HEADER_TIMEOUT_SECONDS = 5

wsgi_app = "server:app"  # what `gunicorn` serves: the WSGI app of server.py
bind = ["0.0.0.0:8000"]  # `python server.py --host --port` and `gunicorn -b HOST:PORT` override it
workers = 2  # processes, one per core of a usual laptop
worker_class = "gevent"  # for clients slow to send: a waiting connection holds a greenlet, not a thread
worker_connections = 500  # connections a worker holds at once (on one thread); more wait in the listen queue
keepalive = HEADER_TIMEOUT_SECONDS
limit_request_line = 2048  # longest request line (bytes); beyond this or the next two: gunicorn's own HTML page
limit_request_fields = 50  # most header fields
limit_request_field_size = 4096  # longest header field (bytes)
# Ctrl+C (SIGINT, compose's stop_signal) stops the workers at once; on SIGTERM calls in progress get this many
# seconds, then the master kills the workers: either way the server is gone within 3 s.
graceful_timeout = 1
proc_name = "soap-server"
control_socket_disable = True  # else every gunicorn of a user shares one control socket file
# One line per request; soap.call is what server.py noted (`add(10,5) = 15`, or the fault), `-` if none.
access_log_format = '%(h)s:%({remote_port}e)s "%(r)s" %(s)s %({soap.call}e)s'

# Every line goes to stdout and, when SERVER_LOG names a file (the Docker image sets it), is appended there
# too: `python server.py` in the container then follows this server's output from that file.
OUTPUTS = {"stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}}
if os.environ.get("SERVER_LOG"):
    OUTPUTS["file"] = {"class": "logging.FileHandler", "filename": os.environ["SERVER_LOG"]}
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


def post_worker_init(worker):  # noqa: ARG001 - gunicorn's hook signature
    """Hook: Ctrl+C in a terminal reaches the workers too, but the master stops them (SIGQUIT); a gevent worker
    that got both signals would print a traceback as it left."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
