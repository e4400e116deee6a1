"""labkit: the shared helpers of the messaging-protocols lab.

Runtime helpers (stdlib only, imported by every demo script inside and outside
Docker): `protocols` (ports, service names, scripted demos), `cli` (flags,
signals, one-line errors). `wsgi` serves the REST and SOAP apps under gunicorn
(not stdlib: only those two images, which install gunicorn, import it). Tooling
(demo runner, capture, analysis) lives beside them and is used from the Makefile.
"""
