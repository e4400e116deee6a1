"""A stop signal that reaches a gunicorn worker while it is being forked is not lost (REST and SOAP).

Found in a CI run: Ctrl+C right after the ready line took 1.42 s and the master logged `Worker ... was sent
SIGKILL!`. Between the fork and gunicorn's `post_fork` hook, a worker still has the master's signal handlers,
which only queue the signal for a master loop the worker never runs, so the signal was lost. The master then
waited `graceful_timeout` (1 s) and killed the worker. That window is normally very short. Here a copy
of the folder gets a `post_fork` hook that sleeps, which widens the window to 0.3 s, so every run lands in it.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
from helpers import REST_READY, SOAP_READY, copy_folder_alone, standalone_env

#: folder -> its server's ready line
READY = {"rest": REST_READY, "soap": SOAP_READY}
#: How long the copy's post_fork hook keeps each new worker in the window between the fork and the hook.
WINDOW_SECONDS = 0.3
SLOW_POST_FORK = f"""

def post_fork(server, worker):  # added by tests/test_gunicorn_stop.py: a worker slow to reach this hook
    import time
    time.sleep({WINDOW_SECONDS})
"""


@pytest.mark.parametrize("folder", sorted(READY))
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl+C"])
def test_a_stop_signal_during_a_workers_fork_is_not_lost(spawn, port, tmp_path, folder, sig):
    copy = copy_folder_alone(folder, tmp_path)
    with open(copy / "gunicorn.conf.py", "a", encoding="utf-8") as conf:
        conf.write(SLOW_POST_FORK)
    proc = spawn([sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(port)], cwd=str(copy),
                 env=standalone_env())
    proc.wait_for(READY[folder], timeout=30)  # the master listens; its workers are being forked now
    started = time.monotonic()
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl+C reaches the whole process group
    else:
        proc.signal(sig)  # docker stop: the master only, which passes SIGTERM on to its workers
    proc.popen.wait(timeout=10)
    took = time.monotonic() - started
    proc.wait(5)  # its output read to the end
    assert "SIGKILL" not in proc.output, proc.output
    assert took < 1.0, f"took {took:.2f} s:\n{proc.output}"
    assert proc.popen.returncode == 0, proc.output
