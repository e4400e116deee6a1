"""A client container's main process: say how to use the container, then wait for `exec`.

Clients in the compose files run `python -m labkit.idle`, so the container stays
up (and on the network) while a student runs the real client in it with
`docker compose exec`. It stops at once on SIGTERM, so `docker compose down` is quick.
"""

from __future__ import annotations

import argparse
import os
import shlex
import time

from labkit import cli
from labkit.protocols import PROTOCOLS

#: Seconds per sleep; SIGTERM interrupts it at once (cli.run turns it into a clean exit).
SLEEP_SECONDS = 3600


def example_command(service: str) -> str | None:
    """The scripted demo's command for `service` (from labkit.protocols), e.g. `python client.py --op all ...`."""
    for proto in PROTOCOLS.values():
        for step in proto.demo:
            if step.service == service:
                return shlex.join(step.argv)
    return None


def usage_line(compose_file: str | None, service: str | None) -> str:
    """The one line an idle client prints: what to run in it, with the exact `exec` command."""
    if not (compose_file and service):
        return "idle: waiting to be stopped (set LAB_COMPOSE_FILE and LAB_SERVICE to get a usage hint)"
    command = example_command(service) or "python <script>.py --help"
    return (f"{service} is idle, ready for you to run a client in it: "
            f"docker compose -f {compose_file} exec {service} {command}")


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print(usage_line(os.environ.get("LAB_COMPOSE_FILE"), os.environ.get("LAB_SERVICE")))
    while True:
        time.sleep(SLEEP_SECONDS)


if __name__ == "__main__":
    cli.run(main)
