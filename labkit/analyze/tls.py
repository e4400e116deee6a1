"""TLS in a capture: each TLS connection's handshake, whether the file carries its secrets, and passwords in clear.

The ClientHello and ServerHello are in clear in every TLS version, so the lab reads them itself: the version
agreed, the cipher suite, the server name the client asked for (SNI). The server's certificate is in clear up to
TLS 1.2 but encrypted in TLS 1.3; its subject and issuer come from tshark (Wireshark's own dissector), which
decrypts it when the pcapng carries the session secrets: a Decryption Secrets Block, as `editcap --inject-secrets`
writes it (`make record-<proto>` with SSLKEYLOGFILE does). Without tshark the certificate is one line saying so.
The lesson beside it: a password sent in clear (MQTT CONNECT, HTTP Basic) is named with its frame, never shown.
"""

from __future__ import annotations

import base64
import binascii
import shutil
import struct
import subprocess
import tempfile
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

#: pcapng block types and the Decryption Secrets Block's secrets type for a TLS key log (pcapng spec, 4.7).
SECTION_HEADER_BLOCK = 0x0A0D0D0A
DECRYPTION_SECRETS_BLOCK = 0x0000000A
PACKET_BLOCKS = (0x2, 0x3, 0x6)  # packet, simple packet, enhanced packet: the secrets come before them
TLS_KEY_LOG = 0x544C534B  # "TLSK"
#: Seconds tshark may take to read a capture for the certificates (it dissects every packet).
TSHARK_TIMEOUT = 300.0
#: What stands for a password in every report: never its value, nor its length.
MASK = "********"

VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
#: TLS record content types and the handshake message types read here (RFC 8446, 5.1 and 4).
HANDSHAKE, CHANGE_CIPHER_SPEC = 22, 20
CLIENT_HELLO, SERVER_HELLO = 1, 2
EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS = 0, 16, 43


def version_name(code: int | None) -> str:
    return "unknown" if code is None else VERSIONS.get(code, f"0x{code:04x}")


def _openssl_cipher_names() -> dict[int, str]:
    """Cipher suite code -> name, from this Python's OpenSSL (the IANA names for TLS 1.3, OpenSSL's for older)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return {c["id"] & 0xFFFF: c["name"] for c in ctx.get_ciphers()}


# ------------------------------------------------------------------ secrets in the file


def embedded_secrets(path: Path) -> tuple[int, int]:
    """(key log lines, TLS sessions) the pcapng's Decryption Secrets Blocks carry: (0, 0) for none, or a pcap.

    The blocks before the first packet are read (editcap --inject-secrets writes them there, as Wireshark needs
    them before the packets they decrypt): a big capture is not read through for them.
    """
    randoms: set[bytes] = set()
    lines = 0
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError:
        return 0, 0
    with f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != SECTION_HEADER_BLOCK.to_bytes(4, "little"):
            return 0, 0  # pcap: it has no place for secrets
        order = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        f.seek(0)
        while len(block := f.read(8)) == 8:
            kind, length = struct.unpack(order + "II", block)
            if length < 12:
                break  # damaged: what was read so far stands
            if kind in PACKET_BLOCKS:
                break
            if kind != DECRYPTION_SECRETS_BLOCK:
                f.seek(length - 8, 1)
                continue
            body = f.read(length - 8)
            secrets_type, secrets_len = struct.unpack(order + "II", body[:8])
            if secrets_type == TLS_KEY_LOG:
                for line in body[8:8 + secrets_len].splitlines():
                    parts = line.split()
                    if len(parts) == 3 and not line.startswith(b"#"):
                        lines += 1
                        randoms.add(parts[1])
    return lines, len(randoms)


# ------------------------------------------------------------------ the handshake, read by the lab


@dataclass
class Handshake:
    """What the ClientHello and ServerHello of one connection say."""

    sni: str | None = None  # the server name the client asked for
    alpn: list[str] = field(default_factory=list)  # application protocols the client offered
    offered_versions: list[str] = field(default_factory=list)
    version: str | None = None  # agreed: ServerHello's supported_versions, else its legacy version
    cipher: int | None = None
    cipher_name: str | None = None
    client_hello_frame: int | None = None
    server_hello_frame: int | None = None
    subject: str | None = None  # the server certificate's (tshark)
    issuer: str | None = None
    certificate_note: str = ""  # why subject/issuer are missing, when they are


def handshake_messages(data: bytes, limit: int = 4) -> list[tuple[int, bytes]]:
    """(type, body) of the first handshake messages sent in clear, up to `limit`.

    Handshake records are put together (a message may span records); the first record of another type but a
    ChangeCipherSpec ends what is in clear (TLS 1.3 encrypts everything after the ServerHello).
    """
    messages: list[tuple[int, bytes]] = []
    buf = b""
    pos = 0
    while pos + 5 <= len(data) and len(messages) < limit:
        ctype, major, length = data[pos], data[pos + 1], struct.unpack_from(">H", data, pos + 3)[0]
        if major != 3 or ctype not in (HANDSHAKE, CHANGE_CIPHER_SPEC):
            break  # encrypted from here, an alert, or not TLS at all
        if ctype == HANDSHAKE:
            buf += data[pos + 5:pos + 5 + length]
        pos += 5 + length
        while len(buf) >= 4 and len(messages) < limit:
            size = int.from_bytes(buf[1:4], "big")
            if len(buf) < 4 + size:
                break
            messages.append((buf[0], buf[4:4 + size]))
            buf = buf[4 + size:]
    return messages


def _extensions(body: bytes, pos: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    if pos + 2 > len(body):
        return found
    end = min(len(body), pos + 2 + struct.unpack_from(">H", body, pos)[0])
    pos += 2
    while pos + 4 <= end:
        kind, length = struct.unpack_from(">HH", body, pos)
        found[kind] = body[pos + 4:pos + 4 + length]
        pos += 4 + length
    return found


def read_client_hello(body: bytes, hs: Handshake) -> None:
    pos = 2 + 32  # legacy_version, random
    pos += 1 + body[pos]  # session id
    pos += 2 + struct.unpack_from(">H", body, pos)[0]  # cipher suites offered
    pos += 1 + body[pos]  # compression methods
    ext = _extensions(body, pos)
    name = ext.get(EXT_SERVER_NAME, b"")
    if len(name) >= 5 and name[2] == 0:  # server_name_list, first entry of type host_name
        hs.sni = name[5:5 + struct.unpack_from(">H", name, 3)[0]].decode("ascii", "backslashreplace")
    alpn = ext.get(EXT_ALPN, b"")
    p = 2
    while p < len(alpn):
        hs.alpn.append(alpn[p + 1:p + 1 + alpn[p]].decode("ascii", "backslashreplace"))
        p += 1 + alpn[p]
    versions = ext.get(EXT_SUPPORTED_VERSIONS, b"")
    hs.offered_versions = [version_name(struct.unpack_from(">H", versions, 1 + i)[0])
                           for i in range(0, len(versions) - 1, 2) if (versions[1 + i] & 0x0F) != 0x0A]  # no GREASE
    if not hs.offered_versions:
        hs.offered_versions = [version_name(struct.unpack_from(">H", body, 0)[0])]


def read_server_hello(body: bytes, hs: Handshake) -> None:
    legacy = struct.unpack_from(">H", body, 0)[0]
    pos = 2 + 32
    pos += 1 + body[pos]
    hs.cipher = struct.unpack_from(">H", body, pos)[0]
    ext = _extensions(body, pos + 3)
    chosen = ext.get(EXT_SUPPORTED_VERSIONS, b"")
    hs.version = version_name(struct.unpack_from(">H", chosen)[0] if len(chosen) == 2 else legacy)


def looks_like_tls(data: bytes) -> bool:
    """A client's first bytes: a TLS handshake record holding a ClientHello."""
    return len(data) >= 6 and data[0] == HANDSHAKE and data[1] == 3 and data[5] == CLIENT_HELLO


def read_handshake(client_bytes: bytes, server_bytes: bytes) -> Handshake | None:
    """The handshake of one connection from its two reassembled streams; None if it is not TLS."""
    if not looks_like_tls(client_bytes):
        return None
    hs = Handshake()
    try:
        for kind, body in handshake_messages(client_bytes, limit=1):
            if kind == CLIENT_HELLO:
                read_client_hello(body, hs)
        for kind, body in handshake_messages(server_bytes, limit=1):
            if kind == SERVER_HELLO:
                read_server_hello(body, hs)
    except (struct.error, IndexError):
        hs.certificate_note = "the handshake is cut short in the capture"
    if hs.cipher is not None:
        hs.cipher_name = _openssl_cipher_names().get(hs.cipher)
    return hs


# ------------------------------------------------------------------ the certificate, read by tshark


@dataclass
class TsharkView:
    """What tshark says of each TLS connection, by (server ip, server port, client ip, client port)."""

    certificates: dict = field(default_factory=dict)  # key -> (subject, issuer)
    ciphers: dict = field(default_factory=dict)  # key -> IANA name
    error: str = ""


def _rdn(node) -> str | None:
    """`id-at-commonName=localhost,id-at-organizationName=...` -> `CN=localhost, O=...` (Wireshark's text)."""
    for child in node.iter("field"):
        if child.get("name", "").endswith(".rdnSequence"):
            text = child.get("showname", "")
            inner = text[text.find("(") + 1:text.rfind(")")] if "(" in text else text
            short = {"id-at-commonName": "CN", "id-at-organizationName": "O", "id-at-countryName": "C",
                     "id-at-organizationalUnitName": "OU", "id-at-localityName": "L",
                     "id-at-stateOrProvinceName": "ST"}
            parts = []
            for item in inner.split(","):
                key, _, value = item.partition("=")
                parts.append(f"{short.get(key, key)}={value}")
            return ", ".join(parts)
    return None


ADDRESS_FIELDS = ("ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport")


def tshark_view(path: Path) -> TsharkView:
    """Certificates (subject, issuer of the first, the server's) and cipher names, as tshark decodes them.

    tshark's PDML is read as it comes (a capture with many TLS connections is not held in memory at once).
    """
    view = TsharkView()
    exe = shutil.which("tshark")
    if exe is None:
        view.error = "tshark is not installed (`sudo apt-get install tshark`): no certificate subject or issuer"
        return view
    argv = [exe, "-n", "-r", str(path), "-Y", "tls.handshake.type == 2 || tls.handshake.type == 11", "-T", "pdml"]
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        except OSError as e:
            view.error = f"tshark could not run: {e.strerror or e}"
            return view
        timer = threading.Timer(TSHARK_TIMEOUT, proc.kill)
        timer.start()
        try:
            for _event, element in ET.iterparse(proc.stdout):
                if element.tag == "packet":
                    _read_packet(element, view)
                    element.clear()
        except ET.ParseError as e:
            view.error = f"tshark's output could not be read: {e}"
        finally:
            proc.stdout.close()
            code = proc.wait()
            late = not timer.is_alive()
            timer.cancel()
        if late:
            view.error = f"tshark took more than {TSHARK_TIMEOUT:g} s: no certificate subject or issuer"
        elif code != 0:
            err.seek(0)
            lines = [ln for ln in err.read().decode(errors="replace").splitlines() if "Running as user" not in ln]
            view.error = f"tshark could not read the file: {lines[-1] if lines else 'no reason given'}"
    return view


def _read_packet(packet, view: TsharkView) -> None:
    fields = {}
    for f in packet.iter("field"):
        name = f.get("name")
        if name in ADDRESS_FIELDS and name not in fields:
            fields[name] = f.get("show")
    src = fields.get("ip.src") or fields.get("ipv6.src")
    dst = fields.get("ip.dst") or fields.get("ipv6.dst")
    key = (src, int(fields.get("tcp.srcport", 0)), dst, int(fields.get("tcp.dstport", 0)))
    for f in packet.iter("field"):
        if f.get("name") == "tls.handshake.ciphersuite" and key not in view.ciphers:
            shown = f.get("showname", "")
            view.ciphers[key] = shown.split(": ", 1)[-1].rsplit(" (", 1)[0]
        if f.get("name") == "tls.handshake.certificate" and key not in view.certificates:
            subject = issuer = None
            for g in f.iter("field"):
                if g.get("name") == "x509af.subject" and subject is None:
                    subject = _rdn(g)
                elif g.get("name") == "x509af.issuer" and issuer is None:
                    issuer = _rdn(g)
            view.certificates[key] = (subject, issuer)


# ------------------------------------------------------------------ passwords in clear


def _basic_user(value: str) -> str | None:
    """The user name of an `Authorization: Basic ...` header value (None if it is not Basic)."""
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(token.strip(), validate=True).decode("utf-8", "backslashreplace").partition(":")[0]
    except (binascii.Error, ValueError):
        return "(unreadable)"


class Credentials:
    """Collects every password a message carries in clear (analyze's `on_message`, or a list of messages):
    an MQTT CONNECT with its password flag set, an HTTP request with `Authorization: Basic`.

    Only where and whose: the MQTT decoder never keeps the password, and the HTTP header's value is replaced
    by MASK in the message itself, so that no report repeats it.
    """

    def __init__(self) -> None:
        self.found: list[dict] = []

    def message(self, m) -> None:
        if m.protocol == "MQTT" and m.kind == "CONNECT" and m.fields.get("password_sent"):
            user = m.fields.get("username", "(no user name)")
            self._add(m, "MQTT", user, f"MQTT CONNECT in frame {m.frame} carries user {user}'s password in clear")
        elif m.protocol in ("HTTP", "SOAP") and "authorization" in (m.fields.get("headers") or {}):
            headers = m.fields["headers"]
            user = _basic_user(headers["authorization"])
            if user is not None:
                headers["authorization"] = f"Basic {MASK}"
                self._add(m, "HTTP", user, f"HTTP {m.fields.get('method', 'request')} in frame {m.frame} carries "
                                           f"user {user}'s password in clear (Authorization: Basic, base64 is no "
                                           "encryption)")

    def _add(self, m, protocol: str, user: str, text: str) -> None:
        self.found.append({"frame": m.frame, "protocol": protocol, "user": user, "password": MASK, "text": text})


# ------------------------------------------------------------------ the report's TLS section


class Handshakes:
    """Reads the handshake of every TLS connection as analyze decodes it (its `on_conversation`): a big capture's
    analysis lets go of the streams afterwards. Keeps (conversation index, client, server, Handshake)."""

    def __init__(self) -> None:
        self.found: list[tuple[int, tuple, tuple, Handshake]] = []

    def conversation(self, c) -> None:
        hs = read_handshake(c.cs.data, c.sc.data)  # reads only the first records (a copy would cost each connection)
        if hs is not None:
            hs.client_hello_frame, hs.server_hello_frame = _frame(c.cs), _frame(c.sc)
            self.found.append((c.index, c.client, c.server, hs))


def _frame(stream) -> int | None:
    return stream.frames[0] if stream.frames else None


def section(a) -> dict:
    """The TLS connections (handshake in clear, certificate by tshark), the secrets the file carries and the
    passwords sent in clear; computed once per analysis (a.memo). What `Handshakes` and `Credentials` collected
    while the capture was read (a.memo "handshakes", "credentials") is used, else the analysis's own lists."""
    if "tls" in a.memo:
        return a.memo["tls"]
    lines, sessions = embedded_secrets(a.capture.path)
    if "handshakes" in a.memo:
        found_handshakes = a.memo["handshakes"]
    else:
        collector = Handshakes()
        for c in (*a.conversations, *a.unrecognised):
            if not isinstance(c, dict):  # a spilled analysis keeps small dicts of some
                collector.conversation(c)
        found_handshakes = collector.found
    connections = sorted(found_handshakes, key=lambda found: found[0])
    note = ""
    if connections:
        view = tshark_view(a.capture.path)
        note = view.error
        for _index, client, server, hs in connections:
            key = (server[0], server[1], client[0], client[1])
            hs.cipher_name = view.ciphers.get(key) or hs.cipher_name  # Wireshark's (IANA) name where tshark ran
            hs.subject, hs.issuer = view.certificates.get(key, (None, None))
            if hs.subject is None and not view.error:
                hs.certificate_note = (hs.certificate_note or
                                       ("encrypted (TLS 1.3) and this file carries no secrets to decrypt it"
                                        if hs.version == "TLS 1.3" and not lines else
                                        "not in the capture"))
    if "credentials" in a.memo:
        found = a.memo["credentials"]
    else:
        collector = Credentials()
        for m in a.messages:
            collector.message(m)
        found = collector.found
    a.memo["tls"] = {
        "secrets_embedded": {"key_log_lines": lines, "sessions": sessions},
        "connections": [{
            "conversation": index, "client": {"ip": client[0], "port": client[1]},
            "server": {"ip": server[0], "port": server[1]},
            "client_hello_frame": hs.client_hello_frame, "server_hello_frame": hs.server_hello_frame,
            "version": hs.version, "offered_versions": hs.offered_versions,
            "cipher_suite": None if hs.cipher is None else f"0x{hs.cipher:04x}", "cipher_suite_name": hs.cipher_name,
            "server_name": hs.sni, "alpn": hs.alpn, "certificate_subject": hs.subject,
            "certificate_issuer": hs.issuer, "certificate_note": hs.certificate_note or None,
        } for index, client, server, hs in connections],
        "certificates_by": "tshark" if connections and not note else None,
        "note": note or None,
        "credentials_in_clear": found,
    }
    return a.memo["tls"]


def _ep(d: dict) -> str:
    return f"[{d['ip']}]:{d['port']}" if ":" in d["ip"] else f"{d['ip']}:{d['port']}"


def _secrets_text(s: dict, any_tls: bool) -> str:
    if s["key_log_lines"]:
        return (f"embedded in this file ({s['key_log_lines']} key log lines, {s['sessions']} TLS session(s)): "
                "Wireshark and tshark decrypt it with no settings")
    if any_tls:
        return ("none in this file: Wireshark shows only encrypted Application Data; record with a key log "
                "(make record-<proto> KEYLOG=<file>, the clients with SSLKEYLOGFILE=<file>) to embed them")
    return "none in this file"


def _connection_lines(t: dict) -> list[tuple[str, list[str]]]:
    """(headline, details) of each TLS connection, for the text and Markdown reports."""
    out = []
    for c in t["connections"]:
        cipher = f"{c['cipher_suite_name'] or 'cipher suite'} ({c['cipher_suite']})" if c["cipher_suite"] else \
            "no ServerHello in the capture"
        head = (f"#{c['conversation']} {_ep(c['client'])} -> {_ep(c['server'])}  {c['version'] or 'TLS'}, {cipher}, "
                f"server name {c['server_name'] or '(none sent: the client connected to an IP address)'}")
        details = [f"ClientHello frame {c['client_hello_frame']} (offers {', '.join(c['offered_versions']) or '?'}"
                   f"{'; ALPN ' + ', '.join(c['alpn']) if c['alpn'] else ''}), ServerHello frame "
                   f"{c['server_hello_frame']}"]
        if c["certificate_subject"]:
            details.append(f"certificate: subject {c['certificate_subject']}; issuer {c['certificate_issuer']}")
        elif c["certificate_note"]:
            details.append(f"certificate: {c['certificate_note']}")
        out.append((head, details))
    return out


def text_lines(a) -> list[str]:
    """The text report's TLS and passwords-in-clear sections (none for a capture without either)."""
    t = section(a)
    out: list[str] = []
    if t["connections"] or t["secrets_embedded"]["key_log_lines"]:
        out.append("TLS (what each handshake shows in clear; the certificate subject and issuer as tshark reads them)")
        out.append(f"  secrets: {_secrets_text(t['secrets_embedded'], bool(t['connections']))}")
        for head, details in _connection_lines(t):
            out.append(f"  {head}")
            out += [f"      {d}" for d in details]
        if t["note"]:
            out.append(f"  note: {t['note']}")
        out.append("")
    if t["credentials_in_clear"]:
        out.append("Passwords in clear (anyone with this capture reads them; shown here as " + MASK + ")")
        out += [f"  ! {c['text']} (password {c['password']}; Wireshark shows it in that frame)"
                for c in t["credentials_in_clear"]]
        out.append("")
    return out


def markdown_lines(a) -> list[str]:
    t = section(a)
    out: list[str] = []
    if t["connections"] or t["secrets_embedded"]["key_log_lines"]:
        out += ["## TLS", "", f"Secrets: {_secrets_text(t['secrets_embedded'], bool(t['connections']))}.", ""]
        for head, details in _connection_lines(t):
            out.append(f"- **{head}**")
            out += [f"  - {d}" for d in details]
        if t["note"]:
            out += ["", f"> {t['note']}"]
        out.append("")
    if t["credentials_in_clear"]:
        out += ["## Passwords in clear", ""]
        out += [f"> **{c['text']}** (password `{c['password']}`; Wireshark shows it in that frame)"
                for c in t["credentials_in_clear"]]
        out.append("")
    return out
