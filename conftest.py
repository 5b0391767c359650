"""What is specific to this repository; the suite's options, fixtures and markers are the plugin's.

``harness.plugin`` is registered by the installed package's ``pytest11`` entry point. Where
entry points are not loaded (``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``, or the package only on
``PYTHONPATH``), this file registers it instead; never both, since the plugin's options can be
added only once. This repository's own settings (claims runs are those naming ``claims``, the
reports folder ``reports/`` at its root) are ini values in ``pyproject.toml``.
"""

import sys

pytest_plugins = [] if "harness.plugin" in sys.modules else ["harness.plugin"]
