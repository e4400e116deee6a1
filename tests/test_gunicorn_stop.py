"""A stop signal that reaches a gunicorn worker while it is being forked still stops the server within 3 s (REST, SOAP).

Between the fork and gunicorn's worker signal set-up, a new worker still has the master's handlers, which only
queue a signal for a master loop the worker never runs: the signal is lost. gunicorn's own answer is
`graceful_timeout` (gunicorn.conf.py): the master waits that long for its workers, then kills them. So the spec's
bound holds by that setting alone. Here a copy of the folder gets a `post_fork` hook that sleeps, which widens the
window to 0.3 s, so every run lands in it; with gunicorn's default graceful_timeout (30 s) this test fails.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
from helpers import REST_READY, SOAP_READY, children, copy_folder_alone, standalone_env

#: folder -> its server's ready line
READY = {"rest": REST_READY, "soap": SOAP_READY}
#: The spec's bound on a stop (SIGTERM, Ctrl+C or `docker compose stop`).
STOP_SECONDS = 3.0
#: How long the copy's post_fork hook keeps each new worker in the window between the fork and its signal set-up.
WINDOW_SECONDS = 0.3
SLOW_POST_FORK = f"""

def post_fork(server, worker):  # added by tests/test_gunicorn_stop.py: a worker slow to reach this hook
    import time
    time.sleep({WINDOW_SECONDS})
"""


def gone(pid: int) -> bool:
    """Exited: no longer there, or a zombie (a worker its master killed as it left is reaped by whoever adopts it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("folder", sorted(READY))
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl+C"])
def test_a_stop_signal_during_a_workers_fork_still_stops_the_server_within_3_seconds(spawn, port, tmp_path, folder,
                                                                                     sig):
    copy = copy_folder_alone(folder, tmp_path)
    with open(copy / "gunicorn.conf.py", "a", encoding="utf-8") as conf:
        conf.write(SLOW_POST_FORK)
    proc = spawn([sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(port)], cwd=str(copy),
                 env=standalone_env())
    proc.wait_for(READY[folder], timeout=30)  # the master listens; its workers are being forked now
    time.sleep(WINDOW_SECONDS / 3)  # the first worker is in its slow post_fork
    workers = children(proc.pid)
    started = time.monotonic()
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl+C reaches the whole process group
    else:
        proc.signal(sig)  # docker stop / kill: the master only, which passes SIGTERM on to its workers
    proc.popen.wait(timeout=10)
    took = time.monotonic() - started
    proc.wait(5)  # its output read to the end
    assert took < STOP_SECONDS, f"took {took:.2f} s:\n{proc.output}"
    assert proc.popen.returncode == 0, proc.output
    assert "Traceback" not in proc.output, proc.output
    assert workers and all(gone(w) for w in workers), "a worker outlived its master"
