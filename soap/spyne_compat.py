"""Lets spyne 2.14.0 import on Python 3.12 and 3.13; delete this file once spyne makes a new release.

spyne's own copy of `six` (1.14.0) has an import hook with only find_module(), which Python 3.12 no longer
calls (arskom/spyne#700, fixed upstream, unreleased). This gives it six 1.16's find_spec(): README.md says more.
"""

import importlib.util
import sys

SPYNE_SIX_VERSION = "1.14.0"  # the six of spyne 2.14.0, which this was written for: any other fails

# spyne's six, run from its file without importing spyne (which is what fails on Python 3.12)
folder = importlib.util.find_spec("spyne").submodule_search_locations[0]
spec = importlib.util.spec_from_file_location("spyne.util.six", f"{folder}/util/six.py")
six = importlib.util.module_from_spec(spec)
spec.loader.exec_module(six)
hook = type(six._importer)
if six.__version__ != SPYNE_SIX_VERSION or hasattr(hook, "find_spec"):
    raise ImportError(f"spyne_compat.py was written for spyne's six {SPYNE_SIX_VERSION} (no find_spec), found "
                      f"six {six.__version__}: see whether spyne imports on Python 3.12 without it, and delete it")
# The three methods six 1.16 added to this class (PEP 451: find a module's spec, create, execute it).
hook.find_spec = lambda self, name, path=None, target=None: (  # noqa: ARG005 - the finder signature
    importlib.util.spec_from_loader(name, self) if name in self.known_modules else None)
hook.create_module = lambda self, spec: self.load_module(spec.name)
hook.exec_module = lambda self, module: None  # noqa: ARG005 - load_module() did it all
sys.modules["spyne.util.six"] = six  # spyne's `import spyne.util.six` finds it here, patched
