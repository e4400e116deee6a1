"""Baseline for REST: the lab's own Flask app served as the original course repo served it.

The original ran `app.run(...)`, Flask's development server (Werkzeug, one thread per connection,
one process). The benchmark serves rest/server.py's create_app() that way, debug off (its debugger
would let anyone run code), to measure what gunicorn in rest/server.py adds.
"""

from __future__ import annotations

from labkit import cli
from labkit.bench.baselines import load_script
from labkit.protocols import REST_PORT


def main() -> int:
    args = cli.parser(__doc__.splitlines()[0], host="127.0.0.1", port=REST_PORT, server=True).parse_args()
    cli.ensure_port_free(args.host, args.port, "Flask development server")
    app = load_script("rest", "server.py").create_app()
    print(f"Flask development server listening on {args.host}:{args.port}", flush=True)
    app.run(host=args.host, port=args.port, threaded=True, debug=False, use_reloader=False)
    return 0


if __name__ == "__main__":
    cli.run(main)
