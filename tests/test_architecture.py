"""The modules' imports are one-way: no import cycle between any two modules of predlearn/,
zoo/ and datamodules/, and the framework never imports the zoo or the data
(scripts/architecture.py reads the imports from the code and draws them in docs/contributing.md)."""

from __future__ import annotations

from pathlib import Path

from support import load_module_from

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "architecture.py"


def load_script():
    return load_module_from(SCRIPT, "predlearn_architecture")


def test_the_imports_are_one_way():
    architecture = load_script()
    graph = architecture.import_graph()
    assert "predlearn.module" in graph and "predlearn.zoo.predrnn" in graph
    assert "predlearn.predictor" in graph["predlearn.module"]  # imports inside functions count
    assert architecture.problems(graph) == []


def test_the_check_finds_a_cycle_and_the_framework_importing_the_data():
    architecture = load_script()
    graph = {"predlearn.a": {"predlearn.b"}, "predlearn.b": {"predlearn.a"},
             "predlearn.c": {"predlearn.datamodules.radar"}, "predlearn.datamodules.radar": set()}
    found = architecture.problems(graph)
    assert "import cycle: predlearn.a -> predlearn.b" in found
    assert any(p.startswith("predlearn.c imports predlearn.datamodules.radar") for p in found)
    # a layer above everything it imports, arrows implied by a longer path left out
    assert architecture.reduced({("a", "b"), ("b", "c"), ("a", "c")}) == {("a", "b"), ("b", "c")}
