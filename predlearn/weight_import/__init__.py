"""Weights trained elsewhere as predlearn models: the authors' predrnn-pytorch checkpoints and
OpenSTL's, renamed into predlearn's modules, checked to fit, and written as a predlearn
checkpoint and a pretrained folder (``predlearn import-weights``; docs/deploy.md).

- ``sources``: reading a source's file without running pickled code (``SourceWeights``).
- ``renaming``: the pieces every converter uses (names, gate order, patch channel order).
- ``openstl_options``: the predictor options a file's hyper-parameters (or weights) imply.
- ``converters``: which (source, model) pairs convert, and where their converter lives.
- ``importer``: one import, end to end (``import_weights``); ``command``: the subcommand.
"""

from predlearn.weight_import.importer import import_weights

__all__ = ["import_weights"]
