"""Each student's own values, derived from their id: the same id and course secret always give the same values.

HMAC-SHA256(course secret, "<field>:<id>") picks every operand, word and name, so two students' values differ
and, with a secret the lecturer keeps, cannot be worked out from an id alone. The secret comes from
COURSE_SECRET, or from the file COURSE_SECRET_FILE names; without either, a public default is used (and said).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

from labkit import cli

#: A student id (a NIM such as 2546000082): the classroom roster's rule (labkit/classroom.py), letters and digits,
#: then also - and _, at most 32. It becomes part of MQTT topics (kelas/<id>/..., the classroom ACL's subtree)
#: and of file names, so nothing else is accepted.
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
#: Used when no course secret is set: documented, so anyone can compute these values.
DEFAULT_SECRET = "messaging-lab-public-default"
#: Most bytes read from COURSE_SECRET_FILE.
SECRET_FILE_MAX_BYTES = 4096

#: Words for topics and messages (Bahasa Indonesia, as in the seed reports' own examples).
WORDS = ("kopi", "hujan", "sawah", "kebun", "pasar", "sungai", "gunung", "pantai", "lampu", "angin", "bulan",
         "bintang", "kereta", "sepeda", "jendela", "buku", "pelangi", "awan", "padi", "kelapa", "mangga",
         "durian", "rumah", "jalan")
#: The new SOAP operation's name: a verb and a noun, e.g. foldPair.
OP_VERBS = ("fold", "blend", "mix", "scale", "shift", "weigh", "merge", "twist", "stack", "pair", "swap",
            "tally", "bend", "spin", "hop", "join")
OP_NOUNS = ("Pair", "Numbers", "Values", "Digits", "Terms", "Operands", "Sums", "Bits")
#: What the new operation computes: (Python expression over a and b, in English, in Bahasa Indonesia).
FORMULAS = (
    ("a % b", "the remainder of a divided by b", "sisa bagi a oleh b"),
    ("a * a + b", "a squared plus b", "a kuadrat ditambah b"),
    ("(a + b) * 2", "twice the sum of a and b", "dua kali jumlah a dan b"),
    ("a // b", "a divided by b, rounded down", "a dibagi b, dibulatkan ke bawah"),
    ("a * b - a", "a times b, minus a", "a kali b, dikurangi a"),
    ("max(a, b) - min(a, b)", "the distance between a and b", "selisih a dan b"),
)

#: The values the scripted demos and the folders' defaults use: a capture with these is not the student's work.
DEMO = {
    "rest": {"operands": (2.0, 3.0)},
    "soap": {"operands": (10, 5)},
    "mqtt": {"topics": ("sister/temp", "sister/humidity")},
    "reqresp": {"messages": ("one", "two", "three")},
    "upcall": {"messages": ("wanda", "riri")},
}


@dataclass(frozen=True)
class Secret:
    key: bytes
    source: str  # "COURSE_SECRET", "COURSE_SECRET_FILE <path>" or "the public default"

    @property
    def fingerprint(self) -> str:
        """8 hex digits that name the secret without revealing it: a student and the lecturer compare them."""
        return hashlib.sha256(b"fingerprint:" + self.key).hexdigest()[:8]

    @property
    def is_default(self) -> bool:
        return self.key == DEFAULT_SECRET.encode()


def course_secret(environ=os.environ) -> Secret:
    """The course secret from COURSE_SECRET or COURSE_SECRET_FILE, else the public default."""
    if environ.get("COURSE_SECRET"):
        return Secret(environ["COURSE_SECRET"].encode(), "COURSE_SECRET")
    path = environ.get("COURSE_SECRET_FILE")
    if path:
        try:
            with open(path, "rb") as f:
                key = f.read(SECRET_FILE_MAX_BYTES + 1).strip()
        except OSError as e:
            raise cli.LabError(f"COURSE_SECRET_FILE={path}: cannot read it: {e.strerror}", code=2) from None
        if not key or len(key) > SECRET_FILE_MAX_BYTES:
            raise cli.LabError(f"COURSE_SECRET_FILE={path}: the file must hold the secret (1 to "
                               f"{SECRET_FILE_MAX_BYTES} bytes)", code=2)
        return Secret(key, f"COURSE_SECRET_FILE {path}")
    return Secret(DEFAULT_SECRET.encode(), "the public default")


def check_id(text: str) -> str:
    """The student id, or one clear LabError (STUDENT_ID says what an id is)."""
    if not isinstance(text, str) or not STUDENT_ID.fullmatch(text):
        shown = repr(text) if text else "(empty)"
        raise cli.LabError(f"student id {shown[:40]} is not valid: use your student number (NIM): letters and "
                           "digits (then also - or _), at most 32, e.g. STUDENT=2546000082", code=2)
    return text


@dataclass(frozen=True)
class Values:
    """Everything a worksheet asks for that differs between students."""

    student: str
    rest_a: int
    rest_b: int
    soap_a: int
    soap_b: int
    soap_op: str  # a valid Python and XML name, e.g. foldPair
    soap_formula: tuple[str, str, str]  # (expression, English, Bahasa Indonesia)
    mqtt_topic: str  # kelas/<id>/<word>
    mqtt_message: str
    reqresp_messages: tuple[str, ...]
    upcall_messages: tuple[str, ...]

    def soap_expected(self) -> int:
        return evaluate(self.soap_formula[0], self.soap_a, self.soap_b)


def evaluate(expression: str, a: int, b: int) -> int:
    """One of FORMULAS for integers a and b (the expressions are ours, never a student's)."""
    results = {"a % b": lambda: a % b, "a * a + b": lambda: a * a + b, "(a + b) * 2": lambda: (a + b) * 2,
               "a // b": lambda: a // b, "a * b - a": lambda: a * b - a,
               "max(a, b) - min(a, b)": lambda: max(a, b) - min(a, b)}
    return results[expression]()


class _Draw:
    """Numbers drawn from HMAC-SHA256(secret, "<field>:<id>"), one field at a time."""

    def __init__(self, secret: Secret, student: str):
        self.secret, self.student = secret.key, student

    def number(self, field: str, low: int, high: int) -> int:
        digest = hmac.new(self.secret, f"{field}:{self.student}".encode(), hashlib.sha256).digest()
        return low + int.from_bytes(digest[:8], "big") % (high - low + 1)

    def words(self, field: str, count: int) -> list[str]:
        """`count` different words."""
        pool, out = list(WORDS), []
        for i in range(count):
            out.append(pool.pop(self.number(f"{field}.{i}", 0, len(pool) - 1)))
        return out


def values_for(student: str, secret: Secret | None = None) -> Values:
    student = check_id(student)
    d = _Draw(secret or course_secret(), student)
    rest_a = d.number("rest.a", 11, 999)
    rest_b = d.number("rest.b", 3, 97)
    soap_a = d.number("soap.a", 120, 980)
    soap_b = d.number("soap.b", 3, 49)
    verb = OP_VERBS[d.number("soap.op.verb", 0, len(OP_VERBS) - 1)]
    noun = OP_NOUNS[d.number("soap.op.noun", 0, len(OP_NOUNS) - 1)]
    topic_word, w1, w2 = d.words("mqtt.words", 3)
    req = d.words("reqresp.words", 3)
    up = d.words("upcall.words", 3)
    return Values(
        student=student,
        rest_a=rest_a, rest_b=rest_b,
        soap_a=soap_a, soap_b=soap_b, soap_op=f"{verb}{noun}",
        soap_formula=FORMULAS[d.number("soap.formula", 0, len(FORMULAS) - 1)],
        mqtt_topic=f"kelas/{student}/{topic_word}",
        mqtt_message=f"{w1} {w2} {d.number('mqtt.n', 100, 999)}",
        reqresp_messages=tuple(f"{w} {d.number(f'reqresp.n{i}', 10, 999)}" for i, w in enumerate(req)),
        upcall_messages=tuple(f"{w} {d.number(f'upcall.n{i}', 10, 999)}" for i, w in enumerate(up)),
    )


def safe_name(student: str) -> str:
    """The id as part of a file name: only after check_id, so it never holds a path separator."""
    return Path(check_id(student)).name
