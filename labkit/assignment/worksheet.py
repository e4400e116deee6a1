"""The worksheet: what one student does for one protocol, with their own values, in English and Bahasa Indonesia.

The tasks are the ones both seed reports did (run the demo, change it, capture it, explain the capture); the
commands are the lab's own, with Docker (as in the reports) or without it (RUNTIME=local, plain processes).
"""

from __future__ import annotations

from .checks import LABELS
from .values import Secret, Values

DC = "docker compose -f compose/{proto}.yml exec {service}"
LOCAL = ".venv/bin/python {proto}/{script} --host 127.0.0.1"


def _soap_method(v: Values) -> str:
    return (f"    @rpc(Operand, Operand, _returns=Integer)\n"
            f"    def {v.soap_op}(ctx, a, b):\n"
            f"        return {v.soap_formula[0]}")


def tasks_text(proto: str, v: Values) -> tuple[list[str], list[str]]:
    """(English, Bahasa Indonesia) task lines."""
    if proto == "rest":
        return ([f"Call all four operations, add, sub, mul and div, with a={v.rest_a} and b={v.rest_b}.",
                 f"Divide by zero: div with a={v.rest_a} and b=0 (the server answers 400 with a JSON error)."],
                [f"Panggil keempat operasi, add, sub, mul dan div, dengan a={v.rest_a} dan b={v.rest_b}.",
                 f"Bagi dengan nol: div dengan a={v.rest_a} dan b=0 (server menjawab 400 dengan galat JSON)."])
    if proto == "soap":
        expr, en, id_ = v.soap_formula
        return ([f"Add a new operation {v.soap_op}(a, b) to CalculatorService in soap/server.py; it returns "
                 f"{en} ({expr}). Restart the server.",
                 "Let the client fetch the WSDL (it does so first) and call every operation, yours too, with "
                 f"a={v.soap_a} and b={v.soap_b}: {v.soap_op}({v.soap_a}, {v.soap_b}) must answer "
                 f"{v.soap_expected()}."],
                [f"Tambahkan operasi baru {v.soap_op}(a, b) ke CalculatorService di soap/server.py; hasilnya "
                 f"{id_} ({expr}). Jalankan ulang server.",
                 "Biarkan klien mengambil WSDL (itu yang pertama dilakukannya) lalu panggil semua operasi, termasuk "
                 f"milik Anda, dengan a={v.soap_a} dan b={v.soap_b}: {v.soap_op}({v.soap_a}, {v.soap_b}) harus "
                 f"menjawab {v.soap_expected()}."])
    if proto == "mqtt":
        return ([f"Subscribe to your topic {v.mqtt_topic} and publish your message \"{v.mqtt_message}\" to it: the "
                 "subscriber must receive it.",
                 "Publish it once more at QoS 1, so that the broker answers with PUBACK."],
                [f"Berlangganan topik Anda {v.mqtt_topic} dan publikasikan pesan Anda \"{v.mqtt_message}\" ke sana: "
                 "subscriber harus menerimanya.",
                 "Publikasikan sekali lagi dengan QoS 1, agar broker menjawab PUBACK."])
    msgs = v.reqresp_messages if proto == "reqresp" else v.upcall_messages
    quoted = ", ".join(f"\"{m}\"" for m in msgs)
    if proto == "reqresp":
        return ([f"Send your messages {quoted}, one line each, then bye."],
                [f"Kirim pesan-pesan Anda {quoted}, satu baris per pesan, lalu bye."])
    return ([f"Type your messages comma-separated on one line: {','.join(msgs)} ; then bye. Wait for the "
             "server's own upcalls (Progress, Done) after them before you stop the recording."],
            [f"Ketik pesan-pesan Anda dipisah koma dalam satu baris: {','.join(msgs)} ; lalu bye. Tunggu upcall "
             "dari server sendiri (Progress, Done) sebelum menghentikan perekaman."])


def commands(proto: str, v: Values) -> tuple[list[str], list[str]]:
    """(Docker, no Docker) commands: terminal 1 records, the others run the demo by hand."""
    if proto == "rest":
        args = f"--op all -a {v.rest_a} -b {v.rest_b}"
        div0 = f"--op div -a {v.rest_a} -b 0"
        d = [f"{DC.format(proto='rest', service='rest-client')} python client.py {args}",
             f"{DC.format(proto='rest', service='rest-client')} python client.py {div0}   # prints the server's error"]
        n = [f"{LOCAL.format(proto='rest', script='client.py')} {args}",
             f"{LOCAL.format(proto='rest', script='client.py')} {div0}   # prints the server's error"]
    elif proto == "soap":
        args = f"--op all -a {v.soap_a} -b {v.soap_b}"
        d = [f"{DC.format(proto='soap', service='soap-client')} python client.py {args}"]
        n = [f"{LOCAL.format(proto='soap', script='client.py')} {args}"]
    elif proto == "mqtt":
        topic, msg = v.mqtt_topic, v.mqtt_message
        pub = f"--topic {topic} --message \"{msg}\""
        d = [f"{DC.format(proto='mqtt', service='mqtt-sub')} python sub.py --topic {topic}        # terminal 2",
             f"{DC.format(proto='mqtt', service='mqtt-pub')} python pub.py {pub} --count 3      # terminal 3",
             f"{DC.format(proto='mqtt', service='mqtt-pub')} python pub.py {pub} --count 1 --qos 1"]
        n = [f"{LOCAL.format(proto='mqtt', script='sub.py')} --topic {topic}        # terminal 2",
             f"{LOCAL.format(proto='mqtt', script='pub.py')} {pub} --count 3      # terminal 3",
             f"{LOCAL.format(proto='mqtt', script='pub.py')} {pub} --count 1 --qos 1"]
    elif proto == "reqresp":
        args = " ".join(f"\"{m}\"" for m in v.reqresp_messages) + " bye"
        d = [f"{DC.format(proto='reqresp', service='reqresp-client')} python client.py   # type each message, then bye",
             f"#   or at once: ... python client.py {args}"]
        n = [f"{LOCAL.format(proto='reqresp', script='client.py')} {args}"]
    else:
        line = ",".join(v.upcall_messages)
        d = [f"{DC.format(proto='upcall', service='upcall-client')} python clientcall.py   # type: {line}   then: bye",
             f"#   or at once: ... python clientcall.py --messages \"{line},bye\""]
        n = [f"{LOCAL.format(proto='upcall', script='clientcall.py')} --messages \"{line},bye\""]
    before = {"docker": [], "local": []}
    if proto == "soap":  # the server must run the edited file before the recording starts (a restart of the
        # container would also take the capture sidecar's network namespace away)
        before["docker"] = ["# add your method to soap/server.py, then BEFORE recording:",
                            "docker compose -f compose/soap.yml up -d && "
                            "docker compose -f compose/soap.yml restart soap-server"]
        before["local"] = ["# add your method to soap/server.py BEFORE recording: the recorder starts the server "
                           "from it"]
    docker = [*before["docker"], f"make record-{proto}                      # terminal 1: records until Ctrl+C", *d,
              f"# Ctrl+C in terminal 1, then: make check-{proto} STUDENT={v.student}"]
    local = [*before["local"],
             f"sudo make record-{proto} RUNTIME=local   # terminal 1: starts the server, records until Ctrl+C", *n,
             f"# Ctrl+C in terminal 1, then: make check-{proto} STUDENT={v.student}"]
    return docker, local


EXPLAIN = {
    "rest": (["the TCP handshake (SYN, SYN-ACK, ACK) before the first request",
              "each HTTP request (method, path, query a and b) and its response (status, JSON body)",
              "the 400 answer to the division by zero",
              "that every call uses the same keep-alive connection, and who closes it first (FIN)"],
             ["jabat tangan TCP (SYN, SYN-ACK, ACK) sebelum request pertama",
              "setiap request HTTP (metode, path, query a dan b) dan response-nya (status, body JSON)",
              "jawaban 400 untuk pembagian dengan nol",
              "bahwa semua panggilan memakai satu koneksi keep-alive, dan siapa yang menutupnya lebih dulu (FIN)"]),
    "soap": (["the TCP handshake", "the GET of the WSDL and the operations it lists (yours among them)",
              "each SOAP request (an XML envelope in an HTTP POST) and its response",
              "who closes the connection first"],
             ["jabat tangan TCP", "GET WSDL dan operasi yang didaftarkannya (termasuk milik Anda)",
              "setiap request SOAP (amplop XML dalam HTTP POST) dan response-nya",
              "siapa yang menutup koneksi lebih dulu"]),
    "mqtt": (["the TCP handshake and CONNECT/CONNACK of each client",
              "SUBSCRIBE and SUBACK", "your PUBLISH to the broker, and the broker forwarding it to the subscriber",
              "PUBLISH at QoS 1 and its PUBACK", "who closes each connection first (DISCONNECT, FIN)"],
             ["jabat tangan TCP dan CONNECT/CONNACK setiap klien", "SUBSCRIBE dan SUBACK",
              "PUBLISH Anda ke broker, dan broker meneruskannya ke subscriber", "PUBLISH QoS 1 dan PUBACK-nya",
              "siapa yang menutup setiap koneksi lebih dulu (DISCONNECT, FIN)"]),
    "reqresp": (["the TCP handshake", "each line you sent and the Echo reply to it (one reply per request)",
                 "bye, and who closes the connection first"],
                ["jabat tangan TCP", "setiap baris yang Anda kirim dan balasan Echo-nya (satu balasan per request)",
                 "bye, dan siapa yang menutup koneksi lebih dulu"]),
    "upcall": (["the TCP handshake", "each message and its immediate Processing reply",
                "the server-initiated frames (Progress, Done) that no request asked for: the upcall",
                "bye, and who closes the connection first"],
               ["jabat tangan TCP", "setiap pesan dan balasan Processing langsungnya",
                "frame yang dikirim server atas inisiatif sendiri (Progress, Done) tanpa diminta: upcall",
                "bye, dan siapa yang menutup koneksi lebih dulu"]),
}


def render(proto: str, v: Values, secret: Secret) -> str:
    en, id_ = tasks_text(proto, v)
    docker, local = commands(proto, v)
    explain_en, explain_id = EXPLAIN[proto]
    key = f"values key {secret.fingerprint}" + (" (the public default: no COURSE_SECRET set)" if secret.is_default
                                               else f" (from {secret.source.split(' ')[0]})")
    out = [f"# Worksheet {LABELS[proto]} ({proto}) for student {v.student}",
           f"# Lembar kerja {LABELS[proto]} ({proto}) untuk mahasiswa {v.student}   [{key}]", "",
           "Your tasks (your values are yours alone):"]
    out += [f"  {i}. {t}" for i, t in enumerate(en, 1)]
    out += ["Tugas Anda (nilai-nilai ini khusus untuk Anda):"]
    out += [f"  {i}. {t}" for i, t in enumerate(id_, 1)]
    if proto == "soap":
        out += ["", "Add this method to class CalculatorService in soap/server.py / Tambahkan method ini:", "",
                _soap_method(v)]
    out += ["", "Record your session, with Docker (as in the course reports) / Rekam sesi Anda, dengan Docker:"]
    out += [f"  {c}" for c in docker]
    out += ["", "Without Docker (plain processes on this machine) / Tanpa Docker:"]
    out += [f"  {c}" for c in local]
    out += ["  (RUNTIME=netns: the recorder prints the `sudo ip netns exec ...` command for each client; add the same "
            "arguments)", "",
            f"Check it: `make check-{proto} STUDENT={v.student}` says, task by task, done (with the Wireshark frame "
            "numbers to cite) or not yet (with what is missing), and writes an annotated copy whose packet comments "
            "explain those frames in Wireshark.",
            f"Periksa: `make check-{proto} STUDENT={v.student}` menyebut tiap tugas selesai (dengan nomor frame "
            "Wireshark) atau belum (dengan apa yang kurang), dan menulis salinan beranotasi.", "",
            "In your report, explain frame by frame / Dalam laporan, jelaskan frame demi frame:"]
    out += [f"  - {e}  /  {i}" for e, i in zip(explain_en, explain_id, strict=True)]
    return "\n".join(out) + "\n"
