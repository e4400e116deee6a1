"""HTTP basic auth in front of the REST calculator, for the classroom (rest/ itself stays login-free).

gunicorn serves `rest_login:app` from rest/ (gunicorn --chdir rest/ --pythonpath classroom/): each
request must carry a student's username and password (`Authorization: Basic ...`, sent by
`rest/client.py --username --password` or `curl -u`), checked against the broker's password file,
so one account opens both. The file holds Mosquitto's PBKDF2-SHA512 hashes ($7$), never a password.
Only over HTTPS: in plain HTTP the header is the password, base64-encoded, for anyone with a capture.
"""

import base64
import binascii
import hashlib
import hmac
import json
import os
import ssl

import gevent
from server import app as calculator  # rest/server.py's Flask app, unchanged

# A refused TLS handshake (a client with another CA, plain HTTP sent to the HTTPS port) is the client's mistake, and
# the client says so: gevent's documented Hub.NOT_ERROR keeps the worker from printing a traceback for each one.
gevent.get_hub().NOT_ERROR = (*gevent.get_hub().NOT_ERROR, ssl.SSLError, ConnectionError)

#: Mosquitto's password file (mosquitto_passwd -U); relative to gunicorn's working folder unless absolute.
PASSWORD_FILE = os.environ.get("CLASSROOM_PASSWORD_FILE", "passwd")


def read_password_file(path: str) -> dict[str, tuple[int, bytes, bytes]]:
    """username -> (iterations, salt, hash) for each `user:$7$iterations$salt$hash` line."""
    accounts = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            user, _, hashed = line.strip().partition(":")
            parts = hashed.split("$")
            if len(parts) == 5 and parts[1] == "7":  # ['', '7', iterations, salt, hash]
                accounts[user] = (int(parts[2]), base64.b64decode(parts[3]), base64.b64decode(parts[4]))
    return accounts


ACCOUNTS = read_password_file(PASSWORD_FILE)  # read once per worker: `kill -HUP` the master to re-read


def login(header: str) -> str | None:
    """The username of a valid `Basic` Authorization header, else None."""
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    iterations, salt, expected = ACCOUNTS.get(user, (1, b"", b""))
    given = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return user if user in ACCOUNTS and hmac.compare_digest(given, expected) else None


def app(environ, start_response):
    """WSGI: the calculator for a logged-in student; 401 JSON (and a login prompt) for anyone else."""
    user = login(environ.get("HTTP_AUTHORIZATION", ""))
    if user is None:
        body = json.dumps({"error": "Login required: a classroom username and password"}).encode()
        start_response("401 Unauthorized", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                            ("WWW-Authenticate", 'Basic realm="classroom", charset="UTF-8"')])
        return [body]
    environ["REMOTE_USER"] = user  # the logged-in student, for the app
    return calculator(environ, start_response)
