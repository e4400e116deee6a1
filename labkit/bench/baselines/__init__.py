"""The servers the benchmark measures ours against, served the way the original course repo did.

REST's baseline needs no module here: Flask's own `flask run` serves rest/server.py's app. `wsgiref_soap`
is a spyne calculator of its own on the standard library's wsgiref, and `asyncio_lines` is a minimal
asyncio echo (or upcall) server for the two TCP line protocols. Each is a program printing one ready line;
none imports a demo script.
"""
