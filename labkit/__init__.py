"""labkit: the shared helpers of the messaging-protocols lab.

Runtime helpers (stdlib only, imported by every demo script inside and outside
Docker): `protocols` (ports, service names, scripted demos), `cli` (flags,
signals, one-line errors). Tooling (demo runner, capture, analysis) lives beside
them and is used from the Makefile.
"""
