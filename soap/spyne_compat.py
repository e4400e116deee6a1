"""Lets spyne 2.14.0 import on Python 3.12 and 3.13; delete this file once spyne makes a new release.

spyne carries its own copy of `six` (1.14.0), whose import hook Python 3.12 no longer calls (arskom/spyne#700,
fixed upstream, unreleased). This puts PyPI's six (pinned in requirements.txt) in its place, as Debian's
python3-spyne does: README.md says more.
"""

import importlib.util
import operator
import sys

# PyPI's six, run from its file under the name of spyne's copy: its import hook then serves spyne.util.six.moves
spec = importlib.util.spec_from_file_location("spyne.util.six", importlib.util.find_spec("six").origin)
six = sys.modules["spyne.util.six"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(six)
six.get_function_name = operator.attrgetter("__name__")  # the one helper spyne added to its copy
