"""One table of the lab's protocols: ports, compose service names and scripts.

Every script, the demo runner, the capture tool, the compose checks and the
analyzer read their numbers from here, so a port is written down exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

REST_PORT = 5151
SOAP_PORT = 8000
MQTT_PORT = 1883
REQRESP_PORT = 2222
UPCALL_PORT = 4141

#: Port on the host that compose publishes the REST server on (spec: 127.0.0.1:8080).
REST_HOST_PORT = 8080


@dataclass(frozen=True)
class Step:
    """One process of a scripted demo: a compose service running a command.

    `argv` is relative to the protocol folder and carries no --host/--port:
    inside Docker (or the namespace lab) the defaults are right; locally the
    demo runner appends `--host 127.0.0.1 --port <port>`.
    `ready` is a regular expression the step prints when the next step may
    start; `background` steps keep running while later steps run.
    """

    service: str
    argv: tuple[str, ...]
    ready: str | None = None
    background: bool = False


@dataclass(frozen=True)
class Protocol:
    name: str
    title: str
    port: int
    server_service: str
    client_service: str
    servers: tuple[Step, ...]
    demo: tuple[Step, ...]
    wire: str  # what Wireshark should decode the port as
    extra_services: tuple[str, ...] = field(default=())

    @property
    def folder(self) -> str:
        return self.name


PROTOCOLS: dict[str, Protocol] = {
    "rest": Protocol(
        name="rest",
        title="REST (HTTP + JSON)",
        port=REST_PORT,
        server_service="rest-server",
        client_service="rest-client",
        servers=(Step("rest-server", ("python", "server.py"), ready=r"listening on"),),
        demo=(Step("rest-client", ("python", "client.py", "--op", "all", "-a", "2", "-b", "3")),),
        wire="http",
    ),
    "soap": Protocol(
        name="soap",
        title="SOAP 1.1 (XML over HTTP)",
        port=SOAP_PORT,
        server_service="soap-server",
        client_service="soap-client",
        servers=(Step("soap-server", ("python", "server.py"), ready=r"listening on"),),
        demo=(Step("soap-client", ("python", "client.py", "--op", "all", "-a", "10", "-b", "5")),),
        wire="http",
    ),
    "mqtt": Protocol(
        name="mqtt",
        title="MQTT publish/subscribe",
        port=MQTT_PORT,
        server_service="mqtt-broker",
        client_service="mqtt-sub",
        servers=(
            Step(
                "mqtt-broker",
                ("mosquitto", "-c", "mosquitto.conf"),
                ready=r"running|Opening ipv4 listen socket",
            ),
        ),
        demo=(
            Step("mqtt-sub", ("python", "sub.py", "--count", "6"), ready=r"Subscribed", background=True),
            Step("mqtt-pub", ("python", "pub.py", "--count", "3", "--interval", "0.5")),
        ),
        wire="mqtt",
        extra_services=("mqtt-pub",),
    ),
    "reqresp": Protocol(
        name="reqresp",
        title="Request/response over TCP",
        port=REQRESP_PORT,
        server_service="reqresp-server",
        client_service="reqresp-client",
        servers=(Step("reqresp-server", ("python", "server.py"), ready=r"Server listening on"),),
        demo=(Step("reqresp-client", ("python", "client.py", "one", "two", "three", "bye")),),
        wire="lineproto",
    ),
    "upcall": Protocol(
        name="upcall",
        title="Upcall (server calls the client back)",
        port=UPCALL_PORT,
        server_service="upcall-server",
        client_service="upcall-client",
        servers=(Step("upcall-server", ("python", "servercall.py"), ready=r"Upcall server listening on"),),
        demo=(Step("upcall-client", ("python", "clientcall.py", "--messages", "wanda,riri,bye")),),
        wire="lineproto",
    ),
}

NAMES = tuple(PROTOCOLS)


def get(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise SystemExit(f"unknown protocol {name!r}: choose one of {', '.join(NAMES)}") from None
