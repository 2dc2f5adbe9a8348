"""Make the example importable from a source checkout when it is not installed."""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("predlearn_plugin_example") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
