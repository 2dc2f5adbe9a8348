"""Every refusal of the ``predlearn`` command is one line that names the option or file.

One test per class of bad input (not per message) for each command: a missing file, a nonsense
value, a wrong checkpoint where one is read; each asserts the exit code (2: the command line,
1: data, files, checkpoints), that stderr ends with the one ``predlearn: error:`` line and holds
no traceback, and that the line names the option or file. ``--debug`` shows the traceback.
The data modules' own files (corrupt IDX, AVI, PGM, HDF5) are in ``test_data_errors.py``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from mnist_fixtures import write_fake_mnist

from predlearn.cli import main, run_cli
from predlearn.errors import OptionValueError


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("mnist"), n_train=20, n_test=10)


def tiny(mnist_root: Path, folder: Path, *extra: str) -> list[str]:
    """A tiny PredRNN on fake MNIST, quiet, writing into ``folder``."""
    return ["--model=predrnn", "--model.predictor.hidden_channels=[2]",
            "--model.predictor.kernel_size=3", "--model.predictor.patch_size=4",
            "--data=mmnist", f"--data.root={mnist_root}", "--data.download=false",
            "--data.num_val=2", "--data.num_test=2", "--data.batch_size=2",
            "--trainer.logger=false", f"--trainer.default_root_dir={folder}",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--figures.enabled=false", *extra]


@pytest.fixture(scope="module")
def checkpoint(mnist_root, tmp_path_factory) -> Path:
    """The last checkpoint of one training step of the tiny PredRNN."""
    folder = tmp_path_factory.mktemp("run")
    cli = run_cli(["fit", *tiny(mnist_root, folder, "--trainer.max_steps=1",
                                "--trainer.limit_val_batches=0")])
    return Path(cli.trainer.checkpoint_callback.last_model_path)


def refused(capsys: pytest.CaptureFixture, argv: list[str], code: int, *named: str) -> str:
    """Run the console script in-process: it must exit with ``code``, its stderr must end with
    the one ``predlearn: error:`` line and hold no traceback, and that line must contain every
    string of ``named``. Returns the line."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    lines = err.rstrip().splitlines()
    errors = [line for line in lines if line.startswith("predlearn: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert "Traceback" not in err
    assert stop.value.code == code, err
    for name in named:
        assert name in errors[0], (name, errors[0])
    return errors[0]


def whole_stderr_is_the_line(capsys: pytest.CaptureFixture, argv: list[str], code: int,
                             *named: str) -> str:
    """``refused``, for refusals made before anything runs: stderr is that one line alone."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("predlearn: error:"), err
    assert stop.value.code == code
    for name in named:
        assert name in err, (name, err)
    return err.strip()


# --- fit ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("argument", "option"), [
    ("--model.predictor.kernel_size=4", "--model.predictor.kernel_size"),  # model refuses it
    ("--model.predictor.patch_size=3", "--model.predictor.patch_size"),
    ("--model.predictor.hidden_channels=[0]", "--model.predictor.hidden_channels"),
    ("--model.learning_rate=-1", "--model.learning_rate"),  # the module refuses it
    ("--data.batch_size=0", "--data.batch_size"),  # the data module refuses it
    ("--predictions.image_sequences=-1", "--predictions.image_sequences"),  # a callback
    ("--figures.pretrained=no_such_model", "--figures.pretrained"),
    ("--model.predictor.kernel_size=five", "--model.predictor.kernel_size"),  # wrong type
    ("--model.loss=huber", "--model.loss"),  # not one of the choices
    ("--model.predictor.kernel_sise=3", "--model.predictor.kernel_sise"),  # no such option
    ("--trainer.max_steps=many", "--trainer.max_steps"),
    ("--model.sampling=ScheduledSampling --model.sampling.decay=-1",
     "--model.sampling.decay"),  # a schedule refuses it
    ("--model.metrics=[categorical]", "--model.metrics"),  # refused when the data is known
    ("--data.num_digits=0", "--data.num_digits"),
])
def test_fit_nonsense_values_name_the_option(mnist_root, tmp_path, capsys, argument, option):
    refused(capsys, ["fit", *tiny(mnist_root, tmp_path), *argument.split()], 2, f"{option}: ")


def test_fit_unknown_names_and_options(mnist_root, tmp_path, capsys):
    whole_stderr_is_the_line(capsys, ["fit", "--model=no_such_model", "--data=mmnist"], 2,
                             "no_such_model", "predrnn")  # the known ones are listed
    whole_stderr_is_the_line(capsys, ["fit", *tiny(mnist_root, tmp_path), "--no_such=1"], 2,
                             "--no_such=1")
    whole_stderr_is_the_line(capsys, ["fitt"], 2, "'fitt'")


@pytest.mark.parametrize(("argument", "meant"), [
    ("--model=Tau", "unknown model 'Tau'; did you mean 'tau'?"),  # a name in another case
    ("--model=predrn", "unknown model 'predrn'; did you mean 'predrnn'"),  # abbreviated
    ("--model=convlsmt", "unknown model 'convlsmt'; did you mean 'convlstm'?"),  # misspelt
    ("--data=MMNIST", "unknown datamodule 'MMNIST'; did you mean 'mmnist'?"),
    ("--data=MovingMnist", "unknown datamodule 'MovingMnist'; did you mean 'mmnist'?"),  # class
])
def test_an_unknown_model_or_data_name_says_what_it_likely_meant(capsys, argument, meant):
    line = whole_stderr_is_the_line(capsys, ["fit", argument], 2, meant)
    assert "known" in line  # and every known name after it


def test_a_registered_class_name_is_its_class():
    from predlearn.cli_arguments import resolve_registry_names

    assert resolve_registry_names(["fit", "--model=PredRNN", "--data=MovingMNISTDataModule"]) \
        == ["fit", "--model.predictor=predlearn.zoo.predrnn.PredRNN",
            "--data=predlearn.datamodules.moving_mnist.MovingMNISTDataModule"]


@pytest.mark.parametrize(("argument", "option", "meant"), [
    ("--model.predictor=Tau", "--model.predictor", "did you mean 'tau'?"),
    ("--model=stack --model.predictor.cell=st_lstmm", "--model.predictor.cell",
     "unknown cell 'st_lstmm'; did you mean 'st_lstm'? (known cells: "),
    ("--model.metrics=[mse,ssin]", "--model.metrics",
     "unknown 'ssin'; did you mean 'ssim'? (known: "),
])
def test_an_unknown_cell_metric_or_class_says_what_it_likely_meant(mnist_root, tmp_path, capsys,
                                                                   argument, option, meant):
    refused(capsys, ["fit", *tiny(mnist_root, tmp_path), *argument.split()], 2,
            f"{option}: ", meant)


@pytest.mark.parametrize(("argument", "meant"), [
    ("--trainer.max_stepz=3", "--trainer.max_steps"),  # misspelt
    ("--model.lerning_rate=0.1", "--model.learning_rate"),
    ("--data.batch_sise=4", "--data.batch_size"),  # an option of the chosen data module
    ("--model.predictor.kernel_sise=3", "--model.predictor.kernel_size"),
    ("--checkpoint.dirpat=runs", "--checkpoint.dirpath"),
    ("--seed_everythin=1", "--seed_everything"),
])
def test_a_misspelt_option_says_which_it_likely_meant(mnist_root, tmp_path, capsys, argument,
                                                      meant):
    line = whole_stderr_is_the_line(capsys, ["fit", *tiny(mnist_root, tmp_path), argument], 2,
                                    argument.split("=")[0], f"did you mean {meant}?")
    assert "--help lists the options" in line


@pytest.mark.parametrize(("argument", "meant"), [
    ("--trainer.max_step=3", "--trainer.max_steps"),
    ("--model.learning_rat=0.1", "--model.learning_rate"),
    ("--data.batch_siz=3", "--data.batch_size"),
    ("--model.predictor.kernel_siz=5", "--model.predictor.kernel_size"),
    ("--trainer.limit_val=0", "--trainer.limit_val_batches"),
])
def test_an_abbreviated_option_is_refused_not_taken_for_a_longer_one(mnist_root, tmp_path,
                                                                     capsys, argument, meant):
    whole_stderr_is_the_line(capsys, ["fit", *tiny(mnist_root, tmp_path), argument], 2,
                             argument.split("=")[0], f"did you mean {meant}?")


def test_several_unknown_options_each_get_their_likely_one(mnist_root, tmp_path, capsys):
    whole_stderr_is_the_line(
        capsys, ["fit", *tiny(mnist_root, tmp_path), "--trainer.max_stepz=3", "--nothing=1",
                 "--model.lerning_rate=0.1"], 2,
        "--trainer.max_stepz=3 --nothing=1 --model.lerning_rate=0.1",
        "did you mean --trainer.max_steps for --trainer.max_stepz, --model.learning_rate for "
        "--model.lerning_rate?")


def test_an_option_of_fixed_values_lists_them_all(mnist_root, tmp_path, capsys):
    """``--trainer.precision`` is a union of three ``Literal``s: every value is listed."""
    whole_stderr_is_the_line(capsys, ["fit", *tiny(mnist_root, tmp_path),
                                      "--trainer.precision=17"], 2,
                             "--trainer.precision: expected one of 64, 32, 16", "'16-mixed'",
                             "'bf16-mixed'", "'64-true'", "got '17'")


def test_a_number_out_of_its_range_says_the_bound(mnist_root, tmp_path, capsys):
    """jsonargparse's restricted numbers (``NonNegativeFloat``) in our words, with the bound."""
    whole_stderr_is_the_line(capsys, ["fit", *tiny(mnist_root, tmp_path),
                                      "--checkpoint_every_minutes=-1"], 2,
                             "--checkpoint_every_minutes: must be a number >= 0; got -1")


def test_did_you_mean():
    from predlearn.cli_errors import did_you_mean

    known = ["max_steps", "max_epochs", "min_steps", "max_time", "limit_val_batches",
             "limit_test_batches"]
    assert did_you_mean("MAX_STEPS", known) == ["max_steps"]
    assert did_you_mean("max_stepz", known) == ["max_steps"]  # the closest only
    assert did_you_mean("limit", known) == ["limit_val_batches", "limit_test_batches"]
    assert did_you_mean("nothing_alike", known) == []
    assert did_you_mean("MovingMNIST", ["mmnist"], {"movingmnistdatamodule": "mmnist"}) == [
        "mmnist"]


def test_fit_missing_files_are_named(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(capsys, ["fit", *tiny(empty, tmp_path)], 1, str(empty),
            "t10k-images-idx3-ubyte.gz")
    missing = tmp_path / "missing.yaml"
    whole_stderr_is_the_line(capsys, ["fit", f"--config={missing}"], 2, "--config",
                             str(missing))


@pytest.mark.slow
def test_fit_resumed_from_a_damaged_checkpoint_names_it(mnist_root, checkpoint, tmp_path,
                                                        capsys):
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(checkpoint.read_bytes()[:2000])
    refused(capsys, ["fit", *tiny(mnist_root, tmp_path), f"--ckpt_path={damaged}"], 1,
            str(damaged), "damaged or truncated")


# --- validate, test, predict: the checkpoint ---------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "test", "predict"])
def test_scoring_needs_a_checkpoint_or_untrained_on_purpose(mnist_root, tmp_path, capsys,
                                                            command):
    line = whole_stderr_is_the_line(capsys, [command, *tiny(mnist_root, tmp_path)], 2,
                                    "--ckpt_path", "--ckpt_path=untrained")
    assert f"predlearn {command}" in line
    missing = tmp_path / "missing.ckpt"
    whole_stderr_is_the_line(capsys, [command, *tiny(mnist_root, tmp_path),
                                      f"--ckpt_path={missing}"], 1, str(missing))
    whole_stderr_is_the_line(capsys, [command, *tiny(mnist_root, tmp_path),
                                      "--ckpt_path=best"], 2, "--ckpt_path", "'best'")


def test_untrained_on_purpose_runs_and_says_so(mnist_root, tmp_path, capsys):
    cli = run_cli(["test", *tiny(mnist_root, tmp_path), "--ckpt_path=untrained"])
    assert "test/mse_per_frame" in cli.trainer.callback_metrics
    err = capsys.readouterr().err
    assert ("predlearn: note: --ckpt_path=untrained: test runs predrnn with untrained, random "
            "weights") in err


def _other_model(checkpoint: Path, tmp_path: Path) -> tuple[Path, list[str], tuple[str, ...]]:
    return checkpoint, ["--model=convlstm"], (str(checkpoint), "predrnn", "convlstm")


def _other_size(checkpoint: Path, tmp_path: Path) -> tuple[Path, list[str], tuple[str, ...]]:
    return checkpoint, ["--model.predictor.hidden_channels=[4]"], (
        str(checkpoint), "hidden_channels=[2]", "[4]")


def _damaged(checkpoint: Path, tmp_path: Path) -> tuple[Path, list[str], tuple[str, ...]]:
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    return path, [], (str(path), "damaged or truncated")


def _not_a_checkpoint(checkpoint: Path, tmp_path: Path) -> tuple[Path, list[str], tuple[str, ...]]:
    path = tmp_path / "notes.ckpt"
    path.write_text("these are my notes, not a checkpoint\n")
    return path, [], (str(path), "not a readable checkpoint")


def _not_predlearns(checkpoint: Path, tmp_path: Path) -> tuple[Path, list[str], tuple[str, ...]]:
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": "their.Module"}}, path)
    return path, [], (str(path), "not a checkpoint of a predlearn model", "their.Module")


class Payload:
    """Stands for any pickled object a checkpoint must not make predlearn import and run."""


def _pickled_code(checkpoint: Path, tmp_path: Path) -> tuple[Path, list[str], tuple[str, ...]]:
    path = tmp_path / "pickled.ckpt"
    contents = torch.load(checkpoint, weights_only=True)
    contents["hyper_parameters"]["extra"] = Payload()
    torch.save(contents, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    return path, [], (str(path), "pickled Python objects")


WRONG_CHECKPOINTS = {"other_model": _other_model, "other_size": _other_size,
                     "damaged": _damaged, "not_a_checkpoint": _not_a_checkpoint,
                     "not_predlearns": _not_predlearns, "pickled_code": _pickled_code}


@pytest.mark.slow
@pytest.mark.parametrize("kind", WRONG_CHECKPOINTS)
def test_a_wrong_checkpoint_is_refused_naming_it(mnist_root, checkpoint, tmp_path, capsys,
                                                 kind):
    path, extra, named = WRONG_CHECKPOINTS[kind](checkpoint, tmp_path)
    before = path.read_bytes()
    refused(capsys, ["test", *tiny(mnist_root, tmp_path), f"--ckpt_path={path}", *extra], 1,
            *named)
    assert path.read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("command", ["validate", "predict"])
def test_validate_and_predict_refuse_another_models_checkpoint(mnist_root, checkpoint, tmp_path,
                                                               capsys, command):
    refused(capsys, [command, *tiny(mnist_root, tmp_path), f"--ckpt_path={checkpoint}",
                     "--model=convlstm"], 1, str(checkpoint), "convlstm")


@pytest.mark.slow
def test_a_model_named_without_sizes_takes_the_checkpoints(mnist_root, checkpoint, tmp_path):
    args = [a for a in tiny(mnist_root, tmp_path) if not a.startswith("--model.predictor")]
    cli = run_cli(["validate", *args, f"--ckpt_path={checkpoint}"])  # --model=predrnn only
    assert cli.model.predictor.hidden_channels == [2]
    assert "val/loss" in cli.trainer.callback_metrics


@pytest.mark.slow
def test_a_class_path_spelled_another_way_is_the_same_model(mnist_root, checkpoint, tmp_path):
    """A config naming ``predlearn.zoo.PredRNN`` resumes a checkpoint that saved the class as
    ``predlearn.zoo.predrnn.PredRNN`` (the shipped model's config does)."""
    args = [a for a in tiny(mnist_root, tmp_path) if a != "--model=predrnn"]
    saved = torch.load(checkpoint, weights_only=True)["hyper_parameters"]["predictor"]
    assert saved["class_path"] == "predlearn.zoo.predrnn.PredRNN"
    cli = run_cli(["validate", "--model.predictor=predlearn.zoo.PredRNN", *args,
                   f"--ckpt_path={checkpoint}"])
    assert cli.model.predictor.hidden_channels == [2]


@pytest.mark.slow
def test_a_nonsense_value_with_a_checkpoint_names_the_option(mnist_root, checkpoint, tmp_path,
                                                             capsys):
    refused(capsys, ["test", *tiny(mnist_root, tmp_path), f"--ckpt_path={checkpoint}",
                     "--model.metrics=[mse,nope]"], 2, "--model.metrics", "'nope'")


# --- predict: outputs never overwrite inputs --------------------------------------------------


@pytest.mark.slow
def test_predictions_are_never_written_over_an_input(checkpoint, tmp_path, capsys):
    clip = tmp_path / "clip.npy"
    np.save(clip, np.random.default_rng(0).integers(0, 256, (10, 64, 64), dtype=np.uint8))
    common = ["predict", "--data=frames", f"--data.path={clip}", f"--ckpt_path={checkpoint}",
              "--trainer.logger=false", "--trainer.enable_progress_bar=false"]
    inputs = {path: path.read_bytes() for path in (clip, checkpoint)}
    for target in (clip, tmp_path / "." / "clip.npy", checkpoint):
        refused(capsys, [*common, f"--predictions.output_path={target}"], 1,
                "--predictions.output_path", "also an input")
    # the pictures go to predictions/ beside the output: not where the input frames are
    frames = tmp_path / "predictions" / "seq_0000"
    frames.mkdir(parents=True)
    np.save(frames / "clip.npy", np.load(clip))
    refused(capsys, [*common[:2], f"--data.path={frames / 'clip.npy'}", *common[3:],
                     f"--predictions.output_path={tmp_path / 'p.h5'}"], 1,
            str(tmp_path / "predictions"), "--predictions.image_sequences=0")
    assert {path: path.read_bytes() for path in inputs} == inputs
    assert not (tmp_path / "p.h5").exists()


@pytest.mark.slow
def test_predict_builds_the_model_for_the_datas_frames(checkpoint, tmp_path, capsys):
    """The data decide the model's shape: a checkpoint of 64 x 64 frames predicts 32 x 32 ones
    (the convolutions fit any size); naming a size on the command line is refused."""
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((10, 32, 32), dtype=np.uint8))
    output = tmp_path / "p.h5"
    args = ["predict", "--data=frames", f"--data.path={small}", f"--ckpt_path={checkpoint}",
            "--trainer.logger=false", f"--predictions.output_path={output}"]
    run_cli(args)
    with h5py.File(output) as handle:
        assert handle["predictions"].shape[-3:] == (1, 32, 32)
    whole_stderr_is_the_line(capsys, [*args, "--model.predictor.frame_size=[32,32]"], 2,
                             "--model.predictor.frame_size: ", "the data set it")


@pytest.mark.slow
@pytest.mark.slow
def test_a_configs_frame_size_gives_way_to_the_datas_with_a_note(mnist_root, tmp_path, capsys):
    config = tmp_path / "sized.yaml"
    config.write_text("model:\n  predictor:\n    class_path: predlearn.zoo.PredRNN\n"
                      "    init_args:\n      frame_size: [32, 32]\n")
    cli = run_cli(["fit", f"--config={config}", *tiny(mnist_root, tmp_path)[1:],
                   "--trainer.max_steps=1", "--trainer.limit_val_batches=0"])
    assert tuple(cli.model.predictor.frame_size) == (64, 64)
    assert ("predlearn: note: the model is built for the data's frames, (channels, size) 1, "
            "[64, 64], not the 1, [32, 32] of the config or checkpoint") in capsys.readouterr().err


def test_predict_missing_frames_are_named(checkpoint, tmp_path, capsys):
    missing = tmp_path / "missing.npy"
    refused(capsys, ["predict", "--data=frames", f"--data.path={missing}",
                     f"--ckpt_path={checkpoint}", "--trainer.logger=false"], 1, str(missing))


# --- compare, sweep, list, prepare -------------------------------------------------------------


def test_compare_refusals(tmp_path, capsys):
    missing = tmp_path / "no_run"
    whole_stderr_is_the_line(capsys, ["compare", str(missing), f"--out={tmp_path / 'out'}"], 1,
                             str(missing))
    whole_stderr_is_the_line(capsys, ["compare", str(tmp_path), "--stage=train"], 2,
                             "--stage", "'train'")
    whole_stderr_is_the_line(capsys, ["compare"], 2, "RUN_DIR")


def test_sweep_refusals(mnist_root, tmp_path, capsys):
    missing = tmp_path / "no_configs"
    whole_stderr_is_the_line(capsys, ["sweep", str(missing)], 1, str(missing))
    whole_stderr_is_the_line(capsys, ["sweep", str(tmp_path), "--transfer-digits=three"], 2,
                             "--transfer-digits", "'three'")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    whole_stderr_is_the_line(capsys, ["sweep", str(broken)], 1, str(broken))
    nonsense = tmp_path / "configs" / "predrnn.yaml"
    nonsense.parent.mkdir()
    nonsense.write_text("model:\n  predictor:\n    class_path: predlearn.zoo.predrnn.PredRNN\n"
                        "    init_args:\n      kernel_size: 4\n")
    refused(capsys, ["sweep", str(nonsense.parent), f"--out={tmp_path / 'out'}",
                     *tiny(mnist_root, tmp_path)[4:]], 2, "--model.predictor.kernel_size")


def test_list_and_prepare_refusals(tmp_path, capsys):
    whole_stderr_is_the_line(capsys, ["list", "--models"], 2, "list", "--models")
    whole_stderr_is_the_line(capsys, ["prepare", "kittens"], 2, "'kittens'", "radar")
    missing = tmp_path / "no_radar"
    whole_stderr_is_the_line(capsys, ["prepare", "radar", str(missing), "--out",
                                      str(tmp_path / "r.h5"), "--no-progress"], 1, str(missing))


# --- --debug -----------------------------------------------------------------------------------


def test_debug_shows_the_traceback(mnist_root, tmp_path, monkeypatch):
    argv = ["fit", *tiny(mnist_root, tmp_path), "--model.predictor.kernel_size=4"]
    with pytest.raises(OptionValueError) as raised:
        main([*argv, "--debug"])  # re-raised: Python prints the traceback
    assert raised.value.option == "--model.predictor.kernel_size"
    # the traceback Python prints goes down the chain of causes to the check that refused it
    files, error = [], raised.value
    while error is not None:
        trace = error.__traceback__
        while trace is not None:
            files.append(Path(trace.tb_frame.f_code.co_filename).name)
            trace = trace.tb_next
        error = error.__cause__ or error.__context__
    assert "recurrent_stack.py" in files and "predictor.py" in files
    monkeypatch.setenv("PREDLEARN_DEBUG", "1")
    with pytest.raises(OptionValueError):
        main(argv)


def test_an_error_raised_in_a_loader_worker_is_printed_as_its_own_line(capsys, monkeypatch):
    """PyTorch re-raises a worker's error with the worker's traceback inside the message; the
    boundary prints only the error's own message."""
    from torch.utils.data._utils import ExceptionWrapper

    from predlearn import cli
    from predlearn.errors import BadFileError

    def fails_in_a_worker(argv):
        try:
            raise BadFileError("data/cache/x.h5: a damaged chunk; delete it and run again")
        except BadFileError:
            ExceptionWrapper(where="in DataLoader worker process 1").reraise()

    monkeypatch.setattr(cli, "run_cli", fails_in_a_worker)
    with pytest.raises(SystemExit) as caught:
        cli.main(["fit"])
    assert caught.value.code == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [(
        "predlearn: error: data/cache/x.h5: a damaged chunk; delete it and run again "
        "(--debug shows where)")]
