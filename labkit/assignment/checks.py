"""Does a capture show what the worksheet asked for? One list of tasks per protocol, each done or not yet.

Built on the analyzer's public API only (labkit.analyze.analyze: conversations and messages with Wireshark's
frame numbers). A task that is done carries the frames that prove it and a packet comment for each of them
(the annotated copy); a task not yet done says what is missing and its likely cause.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from .values import DEMO, Values

REST_OPS = {"add": ("+", lambda a, b: a + b), "sub": ("-", lambda a, b: a - b), "mul": ("*", lambda a, b: a * b),
            "div": ("/", lambda a, b: a / b)}
SOAP_OPS = {"add": lambda a, b: a + b, "subtract": lambda a, b: a - b, "multiply": lambda a, b: a * b,
            "divide": lambda a, b: a / b}
SERVER_NAME = {"rest": "REST server", "soap": "SOAP server", "mqtt": "broker", "reqresp": "server",
               "upcall": "upcall server"}
LABELS = {"rest": "REST", "soap": "SOAP", "mqtt": "MQTT", "reqresp": "request/response", "upcall": "upcall"}


@dataclass
class Task:
    key: str  # stable across students: a column of the grading table
    en: str  # what is asked, in English
    id: str  # the same in Bahasa Indonesia
    done: bool = False
    frames: list[int] = field(default_factory=list)
    evidence: str = ""  # what the frames show, one line
    hint: str = ""  # not yet: what is missing, and the likely cause
    notes: dict[int, str] = field(default_factory=dict)  # frame -> packet comment for the annotated copy

    def prove(self, evidence: str, notes: dict[int, str]) -> Task:
        self.done, self.evidence, self.notes = True, evidence, notes
        self.frames = sorted(notes)
        return self


# ------------------------------------------------------------------ which lab protocol a conversation is


def lab_protocol(conv) -> str | None:
    """rest, soap, mqtt, reqresp or upcall, from what the conversation carries (its port only as a tiebreak)."""
    if conv.protocol == "SOAP" or any("wsdl" in m.fields for m in conv.messages):
        return "soap"
    if conv.protocol == "HTTP":
        return "soap" if conv.server[1] == 8000 and not conv.messages else "rest"
    if conv.protocol == "MQTT":
        return "mqtt"
    if conv.protocol == "LINE":
        texts = (m.fields.get("text", "") for m in conv.messages if not m.from_client)
        if any(t.startswith("Upcall event:") for t in texts):
            return "upcall"
        if any(m.fields.get("text", "").startswith("Echo:") for m in conv.messages):
            return "reqresp"
        return "upcall" if conv.server[1] == 4141 else "reqresp"
    return None


def protocols_in(analysis) -> dict[str, int]:
    """Lab protocol -> number of its conversations in the capture."""
    seen: dict[str, int] = {}
    for conv in analysis.conversations:
        p = lab_protocol(conv)
        if p:
            seen[p] = seen.get(p, 0) + 1
    return seen


# ------------------------------------------------------------------ TCP: the handshake and who closes first


def handshake_task(convs, proto: str) -> Task:
    task = Task("handshake", "TCP handshake: SYN, SYN-ACK, ACK", "jabat tangan TCP: SYN, SYN-ACK, ACK")
    server = SERVER_NAME[proto]
    for conv in convs:
        hs = conv.handshake()
        if hs and hs.get("complete"):
            ip, port = conv.server
            return task.prove(
                f"client {conv.client[0]}:{conv.client[1]} -> {server} {ip}:{port}",
                {hs["syn_frame"]: f"SYN: the client opens a TCP connection to the {server} ({ip}:{port})",
                 hs["syn_ack_frame"]: f"SYN-ACK: the {server} accepts the connection",
                 hs["ack_frame"]: "ACK: the client confirms; the connection is open (three-way handshake done)"})
    task.hint = (f"no complete handshake of a {LABELS[proto]} connection: start `make record-{proto}` first, then "
                 "the client, so the recording sees the connection open")
    return task


def close_task(convs, proto: str) -> Task:
    task = Task("close", "who closes the connection first (FIN)", "siapa yang menutup koneksi lebih dulu (FIN)")
    server = SERVER_NAME[proto]
    for conv in convs:
        td = conv.teardown()
        if td.get("kind") == "fin" and td.get("second_fin_frame"):
            first = "client" if td["initiator"] == "client" else server
            second = server if first == "client" else "client"
            return task.prove(
                f"the {first} closes first",
                {td["first_fin_frame"]: f"FIN from the {first}: the {first} closes the connection first",
                 td["second_fin_frame"]: f"FIN from the {second}: it closes its side too; the connection ends"})
        if td.get("kind") == "reset":
            who = "client" if td["by"] == "client" else server
            return task.prove(f"the {who} resets the connection",
                              {td["frame"]: f"RST from the {who}: the connection is reset, not closed with FIN"})
    task.hint = ("the connection was still open when the recording stopped: stop `make record-"
                 f"{proto}` (Ctrl+C) only after the client has finished")
    return task


def main_conversations(convs, wanted) -> list:
    """The conversations holding one of the `wanted` messages first, then the rest."""
    numbers = {m.conversation for m in wanted}
    return sorted(convs, key=lambda c: c.index not in numbers)


def _responses(messages) -> dict[int, object]:
    return {m.reply_to: m for m in messages if m.reply_to is not None}


def _num(text) -> float | None:
    try:
        x = float(text)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _same(x: float | None, y: float) -> bool:
    return x is not None and math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)


def _g(x: float) -> str:
    return f"{x:g}"


# ------------------------------------------------------------------ REST


def rest_query(m) -> tuple[str, float | None, float | None]:
    """(path, a, b) of a GET; the first value of a repeated parameter counts, as on the server."""
    parts = urlsplit(m.fields.get("uri", ""))
    q = parse_qs(parts.query, keep_blank_values=True)
    return parts.path, _num(q.get("a", [None])[0]), _num(q.get("b", [None])[0])


def _json_result(body: str):
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_rest(convs, v: Values) -> list[Task]:
    msgs = [m for c in convs for m in c.messages]
    requests = [m for m in msgs if m.kind == "request" and m.fields.get("method")]
    answers = _responses(msgs)
    a, b = float(v.rest_a), float(v.rest_b)
    mine = [m for m in requests if rest_query(m)[1:] == (a, b)]
    tasks = [handshake_task(main_conversations(convs, mine), "rest")]
    for op, (sign, fn) in REST_OPS.items():
        task = Task(op, f"GET /{op} with a={v.rest_a}, b={v.rest_b} answered 200 ({_g(a)} {sign} {_g(b)})",
                    f"GET /{op} dengan a={v.rest_a}, b={v.rest_b} dijawab 200")
        tasks.append(_rest_call(task, requests, answers, op, a, b, fn(a, b)))
    div0 = Task("div0", f"GET /div with a={v.rest_a}, b=0 answered 400 (division by zero)",
                f"GET /div dengan a={v.rest_a}, b=0 dijawab 400 (pembagian dengan nol)")
    tasks.append(_rest_call(div0, requests, answers, "div", a, 0.0, None))
    tasks.append(close_task(main_conversations(convs, mine), "rest"))
    return tasks


def _rest_call(task: Task, requests, answers, op: str, a: float, b: float, expected: float | None) -> Task:
    path = f"/{op}"
    calls = [m for m in requests if rest_query(m) == (path, a, b)]
    for req in calls:
        resp = answers.get(req.number)
        if resp is None:
            continue
        body = resp.fields.get("body", "")
        status = resp.fields.get("status")
        data = _json_result(body) or {}
        if expected is None and status == 400:
            return task.prove(f"{req.fields['uri']} -> {status} {body.strip()}", {
                req.frame: f"HTTP request GET {req.fields['uri']}: the client asks the REST server to divide by zero",
                resp.frame: f"HTTP response {status} {body.strip()}: the server refuses the division by zero "
                            f"(answer to frame {req.frame}); an error is a status code plus a JSON body"})
        if expected is not None and status == 200 and _same(_num(data.get("result")), expected):
            return task.prove(f"{req.fields['uri']} -> 200 {body.strip()}", {
                req.frame: f"HTTP request GET {req.fields['uri']}: the client asks the REST server for "
                           f"{op}({_g(a)}, {_g(b)}); the operands travel in the URL's query string",
                resp.frame: f"HTTP response 200 {body.strip()}: the server's answer to the request in frame "
                            f"{req.frame}, as JSON"})
        task.hint = (f"the request in frame {req.frame} got {status} {body.strip()[:80]} "
                     f"(expected {'400' if expected is None else f'200 with result {_g(expected)}'}): "
                     "is the server's code changed?")
    if calls and not task.hint:
        task.hint = (f"the request in frame {calls[0].frame} has no response in the capture: stop the recording "
                     "only after the client has printed its answer")
    if not calls:
        seen = [rest_query(m) for m in requests if rest_query(m)[0] == path]
        cmd = f"client.py --op {op} -a {_g(a)} -b {_g(b)}"
        if any(s[1:] == DEMO["rest"]["operands"] for s in seen):
            task.hint = (f"{path} is called only with the demo's operands a=2, b=3: use yours, `{cmd}`")
        elif seen:
            shown = ", ".join(f"a={_g(x)}, b={_g(y)}" for _p, x, y in seen[:3] if x is not None and y is not None)
            task.hint = f"{path} is called with {shown or 'other operands'}, not a={_g(a)}, b={_g(b)}: run `{cmd}`"
        else:
            task.hint = f"no GET {path} with a={_g(a)}, b={_g(b)} in this capture: run `{cmd}`"
    return task


# ------------------------------------------------------------------ SOAP


def _soap_args(m) -> tuple[int | None, int | None]:
    args = m.fields.get("soap", {}).get("arguments") or {}
    out = []
    for name in ("a", "b"):
        try:
            out.append(int(str(args.get(name, "")).strip()))
        except ValueError:
            out.append(None)
    return out[0], out[1]


def check_soap(convs, v: Values) -> list[Task]:
    msgs = [m for c in convs for m in c.messages]
    answers = _responses(msgs)
    calls = [m for m in msgs if m.kind == "request" and "soap" in m.fields]
    mine = [m for m in calls if _soap_args(m) == (v.soap_a, v.soap_b)]
    tasks = [handshake_task(main_conversations(convs, mine), "soap")]

    wsdl = Task("wsdl", "the WSDL fetched (GET /?wsdl) and answered", "WSDL diambil (GET /?wsdl) dan dijawab")
    offered: list[str] = []
    wsdl_frame = None
    for req in (m for m in msgs if m.kind == "request" and m.fields.get("wsdl")):
        resp = answers.get(req.number)
        if resp is not None and isinstance(resp.fields.get("wsdl"), dict):
            offered = resp.fields["wsdl"].get("operations") or []
            wsdl_frame = resp.frame
            wsdl.prove(f"operations: {', '.join(offered)}", {
                req.frame: f"HTTP GET {req.fields['uri']}: the client (zeep) fetches the service's contract, the WSDL",
                resp.frame: f"the WSDL (answer to frame {req.frame}): the contract lists the operations "
                            f"{', '.join(offered)}"})
            if v.soap_op in offered:
                break
    if not wsdl.done:
        wsdl.hint = "no WSDL in this capture: the client fetches it first; start the recording before the client"
    tasks.append(wsdl)

    for op, fn in SOAP_OPS.items():
        task = Task(op, f"{op}({v.soap_a}, {v.soap_b}) called and answered",
                    f"{op}({v.soap_a}, {v.soap_b}) dipanggil dan dijawab")
        tasks.append(_soap_call(task, calls, answers, op, v, fn(v.soap_a, v.soap_b)))
    expr, en, _id = v.soap_formula
    new = Task("newop", f"your new operation {v.soap_op}({v.soap_a}, {v.soap_b}) = {en} = {v.soap_expected()}",
               f"operasi baru Anda {v.soap_op}({v.soap_a}, {v.soap_b}) = {v.soap_formula[2]} = {v.soap_expected()}")
    _soap_call(new, calls, answers, v.soap_op, v, v.soap_expected(), new_op=True)
    if not new.done and not new.hint.startswith("the call"):
        if wsdl_frame and v.soap_op not in offered:
            new.hint = (f"the WSDL in frame {wsdl_frame} offers {', '.join(offered)} but no {v.soap_op}: add it to "
                        "soap/server.py (see the worksheet) and restart the server before the client runs")
        elif wsdl_frame:
            new.hint = (f"the server offers {v.soap_op} (WSDL in frame {wsdl_frame}) but this capture has no call "
                        f"of it with your operands: run `client.py --op {v.soap_op} -a {v.soap_a} -b {v.soap_b}`")
    tasks.append(new)
    tasks.append(close_task(main_conversations(convs, mine), "soap"))
    return tasks


def _soap_call(task: Task, calls, answers, op: str, v: Values, expected, new_op: bool = False) -> Task:
    cmd = f"client.py --op {'all' if not new_op else op} -a {v.soap_a} -b {v.soap_b}"
    named = [m for m in calls if m.fields["soap"].get("operation") == op]
    for req in (m for m in named if _soap_args(m) == (v.soap_a, v.soap_b)):
        resp = answers.get(req.number)
        if resp is None:
            task.hint = f"the call in frame {req.frame} has no answer in the capture: stop the recording later"
            continue
        soap = resp.fields.get("soap", {})
        if "fault" in soap:
            fault = soap["fault"]
            task.hint = (f"the call in frame {req.frame} was answered with a SOAP Fault: "
                         f"{fault['code']} {fault['string']}")
            continue
        result = _num(soap.get("result"))
        if not _same(result, float(expected)):
            task.hint = f"the call in frame {req.frame} was answered {soap.get('result')}, not {expected}"
            if new_op:
                task.hint += f" ({v.soap_formula[0]} with a={v.soap_a}, b={v.soap_b}): check the method's return line"
            continue
        what = ("your new operation, added to CalculatorService: the client found it in the WSDL"
                if new_op else f"operation {op}")
        return task.prove(f"{op}({v.soap_a},{v.soap_b}) -> {soap.get('result')}", {
            req.frame: f"SOAP request (HTTP POST, XML envelope): {op}(a={v.soap_a}, b={v.soap_b}), {what}",
            resp.frame: f"SOAP response {op}Response: {soap.get('result')} (answer to frame {req.frame})"})
    if not task.hint:
        if named:
            seen = {_soap_args(m) for m in named}
            demo = " (the client's default operands)" if tuple(DEMO["soap"]["operands"]) in seen else ""
            shown = ", ".join(f"a={x}, b={y}" for x, y in sorted(seen, key=str)[:3])
            task.hint = f"{op} is called with {shown}{demo}, not a={v.soap_a}, b={v.soap_b}: run `{cmd}`"
        elif not new_op:
            task.hint = f"no call of {op} in this capture: run `{cmd}`"
    return task


# ------------------------------------------------------------------ MQTT


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching (+ one level, # the rest)."""
    f, t = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


def check_mqtt(convs, v: Values) -> list[Task]:
    msgs = [m for c in convs for m in c.messages]
    answers = _responses(msgs)
    topic, text = v.mqtt_topic, v.mqtt_message
    published = [m for m in msgs if m.kind == "PUBLISH" and m.from_client and "topic" in m.fields]
    to_topic = [m for m in published if m.fields["topic"] == topic]
    mine = [m for m in to_topic if text in str(m.fields.get("payload", ""))]
    forwards = [m for m in msgs if m.kind == "PUBLISH" and not m.from_client and m.forwarded_from is not None]
    subscribes = [m for m in msgs if m.kind == "SUBSCRIBE" and m.from_client]
    filters = [s["topic"] for m in subscribes for s in m.fields.get("subscriptions", [])]
    tasks = [handshake_task(main_conversations(convs, mine), "mqtt")]

    sub = Task("subscribe", f"a subscriber subscribes to {topic} (SUBSCRIBE, SUBACK)",
               f"subscriber berlangganan {topic} (SUBSCRIBE, SUBACK)")
    for m in subscribes:
        matching = [s["topic"] for s in m.fields.get("subscriptions", []) if topic_matches(s["topic"], topic)]
        ack = answers.get(m.number)
        if matching and ack is not None:
            sub.prove(f"filter {matching[0]}", {
                m.frame: f"SUBSCRIBE {matching[0]}: the subscriber tells the broker which topics it wants",
                ack.frame: f"SUBACK: the broker confirms the subscription (answer to frame {m.frame})"})
            break
    if not sub.done:
        if filters:
            sub.hint = (f"the subscriber(s) here subscribe to {', '.join(sorted(set(filters)))}, which do not match "
                        f"{topic}: run `sub.py --topic {topic}`")
        elif forwards:
            sub.hint = ("the subscriber subscribed before the recording started: start `make record-mqtt` first, "
                        "then sub.py")
        else:
            sub.hint = f"no SUBSCRIBE in this capture: start `sub.py --topic {topic}` while recording"
    tasks.append(sub)

    pub = Task("publish", f"your message \"{text}\" published to {topic}",
               f"pesan Anda \"{text}\" dipublikasikan ke {topic}")
    def publish_note(m) -> str:
        return (f"PUBLISH from the publisher to the broker: topic {topic}, message \"{text}\" "
                f"(QoS {m.fields.get('qos', 0)}); the publisher does not know who receives it")

    if mine:
        m = mine[0]
        pub.prove(f"PUBLISH {topic}: {m.fields.get('payload')}", {m.frame: publish_note(m)})
    elif to_topic:
        carried = to_topic[0].fields.get("payload")
        pub.hint = (f"the PUBLISH to {topic} in frame {to_topic[0].frame} carries \"{carried}\","
                    f" not your message: set MESSAGE in pub.py or pass --message \"{text}\"")
    else:
        others = sorted({m.fields["topic"] for m in published})
        has = f"; this capture has {', '.join(others[:4])}" if others else "; this capture has no PUBLISH at all"
        pub.hint = f"no PUBLISH to {topic}{has}: did you change TOPICS in pub.py (or pass --topic {topic})?"
    tasks.append(pub)

    fwd = Task("forward", "the broker forwards it to the subscriber", "broker meneruskannya ke subscriber")
    numbers = {m.number: m for m in mine}
    for m in forwards:
        src = numbers.get(m.forwarded_from)
        if src is not None:
            fwd.prove(f"the PUBLISH of frame {src.frame} forwarded in frame {m.frame}", {
                src.frame: publish_note(src),
                m.frame: f"PUBLISH from the broker to the subscriber: the broker forwards the message of frame "
                         f"{src.frame}; publisher and subscriber never talk to each other"})
            break
    if not fwd.done:
        if not mine:
            fwd.hint = "nothing to forward yet: publish your message first"
        elif filters:
            fwd.hint = (f"no subscriber received it: the subscriber(s) listen on {', '.join(sorted(set(filters)))}; a "
                        f"subscriber on another topic receives nothing: run `sub.py --topic {topic}`")
        else:
            fwd.hint = f"no subscriber received it: start `sub.py --topic {topic}` before publishing"
    tasks.append(fwd)

    qos = Task("qos1", "once at QoS 1: PUBLISH answered by PUBACK", "sekali dengan QoS 1: PUBLISH dijawab PUBACK")
    for m in (m for m in mine if m.fields.get("qos") == 1):
        ack = answers.get(m.number)
        if ack is not None and ack.kind == "PUBACK":
            qos.prove(f"PUBLISH frame {m.frame}, PUBACK frame {ack.frame}", {
                m.frame: f"PUBLISH at QoS 1 (packet id {m.fields.get('packet_id')}): the broker must confirm it",
                ack.frame: f"PUBACK (packet id {ack.fields.get('packet_id')}): the broker confirms the PUBLISH of "
                           f"frame {m.frame}; QoS 1 means at least once"})
            break
    if not qos.done:
        qos.hint = (f"no PUBLISH of your message at QoS 1 with its PUBACK: publish once with `pub.py --topic {topic} "
                    f"--message \"{text}\" --qos 1 --count 1`" if mine or to_topic else
                    "publish your message once with --qos 1")
    tasks.append(qos)
    tasks.append(close_task(main_conversations(convs, mine), "mqtt"))
    return tasks


# ------------------------------------------------------------------ the two line protocols


def _line_tasks(convs, proto: str, wanted: tuple[str, ...]) -> tuple[list[Task], list]:
    msgs = [m for c in convs for m in c.messages]
    answers = _responses(msgs)
    lines = [m for m in msgs if m.from_client]
    sent = {}
    for m in lines:
        sent.setdefault(m.fields.get("text", ""), m)
    tasks = []
    demo = set(DEMO[proto]["messages"])
    others = [t for t in sent if t.lower() != "bye"]
    for i, text in enumerate(wanted, 1):
        task = Task(f"msg{i}", f"message \"{text}\" sent and answered", f"pesan \"{text}\" dikirim dan dijawab")
        m = sent.get(text)
        reply = answers.get(m.number) if m else None
        if m and reply:
            expect = "Echo: " if proto == "reqresp" else "Upcall event: Processing "
            why = ("the server's reply: request/response, one reply per request" if proto == "reqresp"
                   else "the server's immediate answer (the reply to the request)")
            task.prove(f"\"{text}\" -> \"{reply.fields.get('text')}\"", {
                m.frame: f"request line from the client: \"{text}\" (one line, ended by a newline)",
                reply.frame: f"\"{reply.fields.get('text')}\": {why}, answer to frame {m.frame}"})
            if not reply.fields.get("text", "").startswith(expect):
                task.done, task.hint = False, f"the reply in frame {reply.frame} is \"{reply.fields.get('text')}\""
        elif m:
            task.hint = f"the line in frame {m.frame} has no reply in the capture: stop the recording later"
        elif demo & set(others):
            task.hint = (f"this capture sends the demo's messages ({', '.join(t for t in others if t in demo)}), "
                         f"not yours: send \"{text}\"")
        elif others:
            task.hint = (f"\"{text}\" is not among the lines sent ({', '.join(others[:4])}): send it exactly "
                         "as on the worksheet")
        else:
            task.hint = f"no line \"{text}\" in this capture: send it with the client while recording"
        tasks.append(task)
    mine = [sent[t] for t in wanted if t in sent]
    return tasks, mine


def _bye_task(convs, mine) -> Task:
    task = Task("bye", "bye ends the conversation", "bye mengakhiri percakapan")
    ordered = main_conversations(convs, mine)
    for conv in ordered:
        bye = next((m for m in conv.messages if m.from_client and m.fields.get("text", "").strip().lower() == "bye"),
                   None)
        if bye is not None:
            notes = {bye.frame: "\"bye\" from the client: it asks to end the conversation"}
            reply = next((m for m in conv.messages if m.reply_to == bye.number), None)
            if reply is not None:
                notes[reply.frame] = f"\"{reply.fields.get('text')}\": the server answers bye, then closes"
            return task.prove(f"bye in frame {bye.frame}", notes)
    task.hint = "no \"bye\" in this capture: end with bye (the client sends it at the end of its input too)"
    return task


def check_reqresp(convs, v: Values) -> list[Task]:
    tasks, mine = _line_tasks(convs, "reqresp", v.reqresp_messages)
    return [handshake_task(main_conversations(convs, mine), "reqresp"), *tasks, _bye_task(convs, mine),
            close_task(main_conversations(convs, mine), "reqresp")]


def check_upcall(convs, v: Values) -> list[Task]:
    tasks, mine = _line_tasks(convs, "upcall", v.upcall_messages)
    msgs = [m for c in convs for m in c.messages]
    events = [m for m in msgs if m.server_initiated]
    up = Task("upcalls", "the server's own upcalls (Progress, Done) for each of your messages",
              "upcall dari server sendiri (Progress, Done) untuk setiap pesan Anda")
    notes, missing = {}, []
    for text in v.upcall_messages:
        found = [m for m in events if m.fields.get("text", "").endswith((f" {text}", f" {text} 50%"))
                 or f" {text} " in m.fields.get("text", "")]
        if not found:
            missing.append(text)
        for m in found:
            notes[m.frame] = (f"\"{m.fields.get('text')}\": the server calls the client on its own initiative "
                              "(an upcall): no request asked for this line")
    if notes and not missing:
        up.prove(f"{len(notes)} server-initiated lines", notes)
    elif mine:
        up.hint = (f"no server-initiated line for {', '.join(repr(t) for t in missing)}: stop the recording a few "
                   "seconds after bye, once the client has printed the Done events")
    else:
        up.hint = "send your messages first: the server calls back for each of them"
    return [handshake_task(main_conversations(convs, mine), "upcall"), *tasks, up, _bye_task(convs, mine),
            close_task(main_conversations(convs, mine), "upcall")]


CHECKS = {"rest": check_rest, "soap": check_soap, "mqtt": check_mqtt, "reqresp": check_reqresp,
          "upcall": check_upcall}
#: The task keys of each protocol, in order: the columns of the grading table.
TASK_KEYS = {
    "rest": ("handshake", "add", "sub", "mul", "div", "div0", "close"),
    "soap": ("handshake", "wsdl", "add", "subtract", "multiply", "divide", "newop", "close"),
    "mqtt": ("handshake", "subscribe", "publish", "forward", "qos1", "close"),
    "reqresp": ("handshake", "msg1", "msg2", "msg3", "bye", "close"),
    "upcall": ("handshake", "msg1", "msg2", "msg3", "upcalls", "bye", "close"),
}


def run_checks(analysis, proto: str, v: Values) -> list[Task]:
    convs = [c for c in analysis.conversations if lab_protocol(c) == proto]
    return CHECKS[proto](convs, v)


# ------------------------------------------------------------------ whose values a capture holds


def signature(v: Values, proto: str) -> set[str]:
    """The values of a worksheet that show on the wire, as tokens (see observed())."""
    if proto == "rest":
        return {f"rest:{_g(v.rest_a)},{_g(v.rest_b)}"}
    if proto == "soap":
        return {f"soap:{v.soap_a},{v.soap_b}", f"soapop:{v.soap_op}"}
    if proto == "mqtt":
        return {f"topic:{v.mqtt_topic}", f"msg:{v.mqtt_message}"}
    return {f"line:{t}" for t in (v.reqresp_messages if proto == "reqresp" else v.upcall_messages)}


def observed(analysis, proto: str) -> set[str]:
    """The tokens of signature() that this capture carries (for any student's worksheet)."""
    out: set[str] = set()
    for conv in analysis.conversations:
        if lab_protocol(conv) != proto:
            continue
        for m in conv.messages:
            if not m.from_client:
                continue
            if proto == "rest" and m.kind == "request":
                _p, a, b = rest_query(m)
                if a is not None and b is not None:
                    out.add(f"rest:{_g(a)},{_g(b)}")
            elif proto == "soap" and "soap" in m.fields:
                a, b = _soap_args(m)
                out.add(f"soap:{a},{b}")
                out.add(f"soapop:{m.fields['soap'].get('operation')}")
            elif proto == "mqtt" and m.kind == "PUBLISH":
                out.add(f"topic:{m.fields.get('topic')}")
                out.add(f"msg:{m.fields.get('payload')}")
            elif proto in ("reqresp", "upcall"):
                out.add(f"line:{m.fields.get('text')}")
    return out


def uses_demo_values(analysis, proto: str) -> bool:
    """Does the capture carry the scripted demo's (the folder's default) values?"""
    seen = observed(analysis, proto)
    d = DEMO[proto]
    if proto == "rest":
        return f"rest:{_g(d['operands'][0])},{_g(d['operands'][1])}" in seen
    if proto == "soap":
        return f"soap:{d['operands'][0]},{d['operands'][1]}" in seen
    if proto == "mqtt":
        return any(f"topic:{t}" in seen for t in d["topics"])
    return any(f"line:{t}" in seen for t in d["messages"])
