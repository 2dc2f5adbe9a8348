"""The names of the files a predlearn run leaves in its folder (shared by writers and readers,
with no heavy imports: ``predlearn compare`` reads runs without loading Lightning)."""

from __future__ import annotations

#: which model and data made a run's files (written by the figures callback, read by compare)
RUN_INFO = "predlearn_run.json"
