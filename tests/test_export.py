"""``predlearn export`` (docs/deploy.md): every registered model that can be exported, as ONNX and
as torch.export, its forecast and (recurrent models) its step, each written file loaded here
independently of the export's own check and compared with PyTorch on a fresh sample; the models
refused, each in one line; the command line on a pretrained folder; a streaming service's use of
the step graph; the missing extra; and the snippets of docs/deploy.md, run as written.

The list of models comes from the registry (a new model is tested without editing this file);
the run over all of them is ``slow``, a fast test covers a recurrent and a one-call model."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from support import tiny_options

import predlearn
from predlearn import export
from predlearn.cli import main as predlearn_main
from predlearn.errors import OutputError, UsageError
from predlearn.export_command import load_source
from predlearn.export_formats import ONNX_REQUIREMENTS, PT2_DESCRIPTION
from predlearn.registry import MODELS

CONTEXT, HORIZON, FRAME = 3, 2, (1, 16, 16)
FORMATS = {"onnx": ".onnx", "torch-export": ".pt2"}
#: the built-in recurrent models whose step does not export, and a word of the reason
STEP_REFUSED = {"e3d_lstm": "grows at every step (history)",
                "fc_lstm": "Python number state.to_read", "mim": "Python number state.step"}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "deploy.md"
#: the ONNX tests need the `export` extra (onnx, onnxruntime, onnxscript); torch-export does not
needs_onnx = pytest.mark.skipif(not all(ONNX_REQUIREMENTS.values()),
                                reason="ONNX export needs the export extra: pip install "
                                       "'predlearn[export]'")
FORMAT_PARAMS = [pytest.param("onnx", marks=needs_onnx), "torch-export"]


def tiny(name: str) -> predlearn.Predictor:
    """The tiny ``name`` (its tiny_config) at 16 x 16 frames where it takes a frame size."""
    torch.manual_seed(0)
    options = tiny_options(name, CONTEXT)
    try:
        model = predlearn.create_model(name, frame_size=FRAME[1:], **options)
    except TypeError:  # a baseline, built for any frame size
        model = predlearn.create_model(name, **options)
    return model.eval()


def exportable() -> list[str]:
    """Registered models with a forecast to export (``export.refusal`` says none for them)."""
    return sorted(name for name in MODELS.names() if export.refusal(tiny(name)) is None)


def recurrent() -> list[str]:
    """Registered models that run the shared rollout: those that may have a step graph."""
    return sorted(name for name in exportable() if tiny(name).uses_shared_rollout())


def fresh(batch: int, seed: int = 1234) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, CONTEXT, *FRAME, generator=generator)


def expected(model: predlearn.Predictor, frames: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(frames, HORIZON)


def loaded(path: Path, format: str):
    """The written file, loaded as a deployment would: (run(inputs) -> outputs, description)."""
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [item.name for item in session.get_inputs()]
        description = json.loads(session.get_modelmeta().custom_metadata_map["predlearn"])

        def run(inputs):
            outputs = session.run(None, {n: x.numpy() for n, x in zip(names, inputs, strict=True)})
            return [torch.from_numpy(output) for output in outputs]

        assert names == [item["name"] for item in description["inputs"]]
        assert [o.name for o in session.get_outputs()] == [
            item["name"] for item in description["outputs"]]
        return run, description
    extra = {PT2_DESCRIPTION: ""}
    module = torch.export.load(str(path), extra_files=extra).module()

    def run_pt2(inputs):
        with torch.no_grad():
            outputs = module(*inputs)
        return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]

    return run_pt2, json.loads(extra[PT2_DESCRIPTION])


def batches(description: dict) -> list[int]:
    """The batches to try a file on: 1 and 3 where its batch is dynamic, else its own."""
    return [1, 3] if description["batch"] == "dynamic" else [description["batch"]]


def streamed(run, description: dict, frames: torch.Tensor) -> torch.Tensor:
    """A streaming service: the state allocated from the file's description, the step on each
    observed frame, then fed its own predictions; the HORIZON predictions from the last
    observed frame on."""
    state = [frames[:, 0].clone() if item["initial"] == "first_frame"
             else torch.zeros(frames.shape[0], *item["shape"][1:]) for item in description["state"]]
    predictions = []
    for t in range(CONTEXT + HORIZON - 1):
        frame = frames[:, t] if t < CONTEXT else predictions[-1]
        prediction, *state = run([frame, *state])
        if t >= CONTEXT - 1:
            predictions.append(prediction)
    return torch.stack(predictions, dim=1)


def check_forecast(name: str, format: str, tmp_path: Path) -> dict:
    model = tiny(name)
    path = tmp_path / f"{name}{FORMATS[format]}"
    frame = None if hasattr(model, "frame_size") else FRAME
    difference = export.export_forecast(model, path, format, HORIZON, CONTEXT, frame=frame)
    assert 0 <= difference <= 1e-4
    run, description = loaded(path, format)
    assert description["model"] == name and description["graph"] == "forecast"
    assert description["inputs"][0]["name"] == "frames"
    assert description["outputs"][0]["shape"][1:] == [HORIZON, *FRAME]
    for batch in batches(description):
        frames = fresh(batch)
        (got,) = run([frames])
        assert got.shape == (batch, HORIZON, *FRAME)
        torch.testing.assert_close(got, expected(model, frames), rtol=0, atol=1e-4)
    return description


def check_step(name: str, format: str, tmp_path: Path) -> dict:
    model = tiny(name)
    path = tmp_path / f"{name}-step{FORMATS[format]}"
    assert export.export_step(model, path, format, HORIZON, CONTEXT) <= 1e-4
    run, description = loaded(path, format)
    names = [item["name"] for item in description["state"]]
    assert [item["name"] for item in description["inputs"]] == ["frame", *names]
    assert [item["name"] for item in description["outputs"]] == [
        "prediction", *(f"new_{n}" for n in names)]
    assert all(n == "state" or n.startswith("state.") for n in names)  # DFN: one tensor
    # the state the model itself starts from is what the description says
    own, _ = torch.utils._pytree.tree_flatten(model.initial_state(fresh(2)))
    assert len([leaf for leaf in own if isinstance(leaf, torch.Tensor)]) == len(names)
    for batch in batches(description):
        frames = fresh(batch)
        torch.testing.assert_close(streamed(run, description, frames), expected(model, frames),
                                   rtol=0, atol=1e-4)
    return description


# -- the fast loop: a recurrent model and a one-call model ---------------------------------------


@pytest.mark.parametrize("format", FORMAT_PARAMS)
def test_predrnn_exports_its_forecast_and_a_step_that_streams_the_same_forecast(format, tmp_path):
    forecast = check_forecast("predrnn", format, tmp_path)
    step = check_step("predrnn", format, tmp_path)
    assert forecast["batch"] == step["batch"] == "dynamic"
    assert {item["initial"] for item in step["state"]} == {"zeros"}
    assert [item["name"] for item in step["state"]] == [
        "state.h.0", "state.h.1", "state.c.0", "state.c.1", "state.m"]


@needs_onnx
def test_a_one_call_model_exports_its_forecast_and_has_no_step(tmp_path):
    assert check_forecast("simvp", "onnx", tmp_path)["batch"] == "dynamic"
    with pytest.raises(UsageError, match=r"^simvp: cannot export its step: it predicts its "
                                         r"frames in one call"):
        export.export_step(tiny("simvp"), tmp_path / "s.onnx", "onnx", HORIZON, CONTEXT)
    assert not (tmp_path / "s.onnx").exists()


def test_the_models_that_cannot_be_exported_say_why_in_one_line(tmp_path, capsys):
    refused = {name: export.refusal(tiny(name)) for name in MODELS.names()}
    assert {name for name, reason in refused.items() if reason} == {"extrapolation", "steps"}
    with pytest.raises(UsageError) as error:
        export.export_forecast(tiny("extrapolation"), tmp_path / "e.onnx", "onnx", 2, 3)
    assert str(error.value) == ("extrapolation: cannot export its forecast: it estimates the "
                                "motion with pysteps (OpenCV) in NumPy, outside PyTorch, so no "
                                "graph holds it")
    for name, words in STEP_REFUSED.items():
        with pytest.raises(UsageError) as error:
            export.export_step(tiny(name), tmp_path / f"{name}.pt2", "torch-export", 2, 3)
        line = str(error.value)
        assert line.startswith(f"{name}: cannot export its step: ") and words in line, line
        assert "\n" not in line and line.endswith("export the forecast (--what=forecast)")
    assert not list(tmp_path.iterdir())  # refused before anything was written
    folder = predlearn.save_pretrained(tiny("extrapolation"), tmp_path / "m", context_frames=3,
                                       horizon=2)
    with pytest.raises(SystemExit) as stop:
        predlearn_main(["export", str(folder), "--format=onnx", f"--output={tmp_path}/e.onnx"])
    printed = capsys.readouterr()
    assert stop.value.code == 2 and not printed.out
    assert printed.err.startswith("predlearn: error: extrapolation: cannot export its forecast")
    assert printed.err.count("\n") == 1 and not (tmp_path / "e.onnx").exists()


@needs_onnx
def test_a_difference_beyond_the_tolerance_writes_nothing(tmp_path):
    path = tmp_path / "simvp.onnx"
    path.write_bytes(b"before")
    with pytest.raises(OutputError, match=r"the exported forecast differs from PyTorch by .* "
                                          r"nothing written"):
        export.export_forecast(tiny("simvp"), path, "onnx", HORIZON, CONTEXT, tolerance=1e-12)
    assert path.read_bytes() == b"before"


def test_onnx_without_the_export_extra_is_one_line_naming_it(monkeypatch, tmp_path):
    monkeypatch.setitem(ONNX_REQUIREMENTS, "onnxruntime", False)
    with pytest.raises(UsageError) as error:
        export.export_forecast(tiny("predrnn"), tmp_path / "p.onnx", "onnx", 2, 3)
    assert str(error.value) == ("ONNX export needs the `export` extra (onnxruntime missing or "
                                "too old): pip install 'predlearn[export]'")


@needs_onnx
def test_the_command_exports_a_pretrained_folder_and_prints_the_difference(tmp_path, capsys):
    folder = predlearn.save_pretrained(tiny("predrnn"), tmp_path / "m", context_frames=3,
                                       horizon=2)
    out = tmp_path / "out" / "model.onnx"
    predlearn_main(["export", str(folder), "--format=onnx", f"--output={out}"])
    printed = capsys.readouterr().out
    assert printed.startswith("predlearn export: predrnn, 3 observed frames -> 2 predicted")
    assert f"wrote {out} (onnx, forecast" in printed
    assert f"wrote {out.with_name('model-step.onnx')} (onnx, step" in printed
    assert "input  frames                   [batch, 3, 1, 16, 16] float32" in printed
    assert "input  state.h.0                [batch, 4, 16, 16] float32 (starts as zeros)" in printed
    differences = [float(x) for x in re.findall(r"largest difference from PyTorch: (\S+) ",
                                                printed)]
    assert len(differences) == 2 and max(differences) <= 1e-4
    run, description = loaded(out.with_name("model-step.onnx"), "onnx")
    frames = fresh(2)
    torch.testing.assert_close(streamed(run, description, frames),
                               expected(predlearn.from_pretrained(folder), frames),
                               rtol=0, atol=1e-4)
    # the refusals of the command line are one line each, exit 2
    for argv, words in [
        (["--format=onnx", f"--output={tmp_path}/x.onnx", "--what=step", "--horizon=0"],
         "--horizon: must be at least 1"),
        (["--format=tflite", f"--output={tmp_path}/x"], "invalid choice: 'tflite'"),
        (["--format=onnx", f"--output={tmp_path}/x", "--frame=1,8,8"],
         "--frame: predrnn was built for frames 1,16,16"),
    ]:
        with pytest.raises(SystemExit) as stop:
            predlearn_main(["export", str(folder), *argv])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "x").exists()


def test_a_recurrent_model_whose_step_does_not_export_gets_its_forecast_alone(tmp_path, capsys):
    folder = predlearn.save_pretrained(tiny("fc_lstm"), tmp_path / "m", context_frames=3,
                                       horizon=2)
    predlearn_main(["export", str(folder), "--format=torch-export", f"--output={tmp_path}/f.pt2"])
    printed = capsys.readouterr().out
    assert "fc_lstm has no step graph (its step reads the Python number state.to_read" in printed
    assert (tmp_path / "f.pt2").is_file() and not (tmp_path / "f-step.pt2").exists()
    with pytest.raises(SystemExit):  # asked for by name: refused
        predlearn_main(["export", str(folder), "--format=torch-export", "--what=both",
                        f"--output={tmp_path}/g.pt2"])
    assert "fc_lstm: cannot export its step" in capsys.readouterr().err
    assert not (tmp_path / "g.pt2").exists()


def test_a_checkpoint_is_read_with_its_frame_counts(tmp_path):
    from predlearn.pretrained_folder import checkpoint_contents

    model = tiny("predrnn")
    folder = predlearn.save_pretrained(model, tmp_path / "m", context_frames=3, horizon=2)
    torch.save(checkpoint_contents(folder), tmp_path / "m.ckpt")
    source = load_source(tmp_path / "m.ckpt")
    assert (source.context_frames, source.horizon, source.value_range) == (3, 2, (0.0, 1.0))
    frames = fresh(2)
    assert torch.equal(expected(source.predictor, frames), expected(model, frames))


@needs_onnx
def test_the_snippets_of_docs_deploy_run_as_written(tmp_path, monkeypatch):
    text = DOCS.read_text(encoding="utf-8")
    assert text.startswith("# Deploy")
    assert "## Import weights from the authors' code or OpenSTL\n\n`predlearn import-weights`" \
           in text
    run_section = text.split("## Run it with onnxruntime")[1].split("\n## ")[0]
    snippets = re.findall(r"```python\n(.*?)```", run_section, flags=re.DOTALL)
    assert len(snippets) == 2 and len(snippets[0].strip().splitlines()) <= 10
    monkeypatch.chdir(tmp_path)
    model = tiny("predrnn")
    export.export_forecast(model, "predrnn.onnx", "onnx", HORIZON, CONTEXT)
    export.export_step(model, "predrnn-step.onnx", "onnx", HORIZON, CONTEXT)
    for index, snippet in enumerate(snippets):
        (tmp_path / f"snippet{index}.py").write_text(snippet, encoding="utf-8")
    forecast = runpy.run_path(str(tmp_path / "snippet0.py"))
    frames = torch.from_numpy(forecast["frames"])
    torch.testing.assert_close(torch.from_numpy(forecast["forecast"]), expected(model, frames),
                               rtol=0, atol=1e-4)
    stream = runpy.run_path(str(tmp_path / "snippet1.py"),
                            init_globals={"observed": forecast["frames"][0]})
    torch.testing.assert_close(torch.from_numpy(np.stack(stream["forecast"], axis=1)),
                               expected(model, frames), rtol=0, atol=1e-4)


# -- every registered model ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("format", FORMAT_PARAMS)
@pytest.mark.parametrize("name", exportable())
def test_every_exportable_model_exports_its_forecast(name, format, tmp_path):
    description = check_forecast(name, format, tmp_path)
    if description["batch"] != "dynamic":
        assert description["batch_note"].startswith("the batch is fixed at 2")


@pytest.mark.slow
@pytest.mark.parametrize("format", FORMAT_PARAMS)
@pytest.mark.parametrize("name", recurrent())
def test_every_recurrent_model_exports_a_step_that_streams_its_forecast(name, format, tmp_path):
    if name in STEP_REFUSED:
        with pytest.raises(UsageError, match=re.escape(STEP_REFUSED[name])):
            export.export_step(tiny(name), tmp_path / "s", format, HORIZON, CONTEXT)
        return
    description = check_step(name, format, tmp_path)
    firsts = [item["name"] for item in description["state"] if item["initial"] == "first_frame"]
    assert firsts == (["state.1"] if name == "cdna" else [])  # CDNA's static background
