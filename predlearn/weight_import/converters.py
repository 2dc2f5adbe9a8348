"""Which models each source's files convert to, and the converter of each: a function
``(SourceWeights, options) -> Converted`` named by "module:function", imported when used.

OpenSTL's method names (``--method`` / its config's ``method``) are accepted beside predlearn's.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from predlearn.errors import OptionValueError
from predlearn.weight_import.renaming import Converted
from predlearn.weight_import.sources import SOURCES, SourceWeights

_FAMILY = "predlearn.weight_import.predrnn_family"
_RECURRENT = "predlearn.weight_import.openstl_recurrent"
_DIRECT = "predlearn.weight_import.openstl_direct"

CONVERTERS: dict[str, dict[str, str]] = {
    "predrnn-pytorch": {
        "predrnn": f"{_FAMILY}:convert_predrnn",
        "predrnn_v2": f"{_FAMILY}:convert_predrnn_v2",
    },
    "openstl": {
        "convlstm": f"{_FAMILY}:convert_convlstm",
        "predrnn": f"{_FAMILY}:convert_predrnn",
        "predrnn_v2": f"{_FAMILY}:convert_predrnn_v2",
        "predrnn_pp": f"{_RECURRENT}:convert_predrnn_pp",
        "mim": f"{_RECURRENT}:convert_mim",
        "e3d_lstm": f"{_RECURRENT}:convert_e3d_lstm",
        "mau": f"{_RECURRENT}:convert_mau",
        "phydnet": f"{_DIRECT}:convert_phydnet",
        "simvp": f"{_DIRECT}:convert_simvp",
        "tau": f"{_DIRECT}:convert_tau",
    },
}

#: OpenSTL's method names (lower case) for predlearn's
OPENSTL_METHODS = {"predrnnpp": "predrnn_pp", "predrnnv2": "predrnn_v2", "e3dlstm": "e3d_lstm"}

Converter = Callable[[SourceWeights, dict], Converted]


def model_name(source: str, model: str) -> str:
    """predlearn's registry name for ``model`` (OpenSTL's method names too), checked to convert
    from ``source``."""
    if source not in CONVERTERS:
        raise OptionValueError("from", f"unknown source; sources: {', '.join(SOURCES)}", source)
    name = model.lower()
    name = OPENSTL_METHODS.get(name, name) if source == "openstl" else name
    if name not in CONVERTERS[source]:
        raise OptionValueError(
            "model", f"{source} weights convert to {', '.join(CONVERTERS[source])}", model)
    return name


def converter(source: str, model: str) -> Converter:
    """The converter of ``model``'s weights from ``source``."""
    module, function = CONVERTERS[source][model_name(source, model)].split(":")
    converter_function: Converter = getattr(importlib.import_module(module), function)
    return converter_function
