"""The servers the benchmark measures ours against, served the way the original course repo did.

(REST's baseline needs no module here: Flask's own `flask run` serves rest/server.py's app.) `wsgiref_soap`
serves soap/server.py's create_app() with the standard library's wsgiref, and `asyncio_lines` is a
minimal asyncio echo (or upcall) server for the two TCP line protocols. Each prints one ready line.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from labkit.procs import REPO


def load_script(folder: str, name: str) -> ModuleType:
    """Import `<repo>/<folder>/<name>` as a module (the protocol folders are not packages)."""
    path = REPO / folder / name
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # imports of files beside it must resolve
    module_name = f"lab_{folder}_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
