"""The model card (``README.md``) ``save_pretrained`` writes from a pretrained folder's config
when none is given: what the model is, the data it expects, its recipe, its training and test
scores with the command that measured them (where known)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def write_card(name: str, config: Mapping[str, Any]) -> str:
    """Markdown for the folder ``name`` described by ``config`` (config.json's contents)."""
    predictor = config["predictor"]
    frames = config.get("frames") or {}
    data = config.get("data") or {}
    training = config.get("training") or {}
    model = config.get("model") or predictor["class_path"]
    lines = [f"# {name}", "",
             (f"A {model} predictor saved by predlearn {config.get('predlearn')}. "
              f"`predlearn.from_pretrained(\"{name}\")` returns it as a Predictor "
              "(`predictor(frames, horizon)`); `--ckpt_path=<this folder>` works wherever a "
              "checkpoint path does."), "",
             f"- **Model**: `{predictor['class_path']}` with {predictor.get('init_args') or {}}."]
    if frames.get("context_frames") is not None:
        lines.append(f"- **Frames**: {frames['context_frames']} observed -> "
                     f"{frames.get('test_horizon') or frames.get('horizon')} predicted.")
    if data.get("value_scale"):
        scale = data["value_scale"]
        lines.append(f"- **Data**: own data ({data.get('datamodule')}), scaled for the model as "
                     f"(x - {scale['offset']}) / {scale['scale']} per channel"
                     + (f" ({', '.join(data['channel_names'])})" if data.get("channel_names")
                        else "") + ".")
    elif data.get("value_bounds") is not None:
        lines.append(f"- **Data**: values in {data['value_bounds']}.")
    if training.get("data"):
        lines.append(f"- **Data set**: {training['data']}.")
    recipe = config.get("module") or {}
    if recipe:
        lines.append(f"- **Recipe**: {recipe}.")
    facts = [f"{label} {training[key]}" for key, label in (
        ("step", "step"), ("seed", "seed"), ("wall_time", "wall time"), ("machine", "on"))
        if training.get(key) is not None]
    if facts:
        lines.append(f"- **Training**: {', '.join(facts)}.")
    imported = training.get("imported")
    if imported:
        lines.append(f"- **Weights**: imported from {imported['from']}'s `{imported['file']}` "
                     f"(SHA-256 {imported['sha256'][:16]}...) by `predlearn import-weights`.")
    if training.get("command") or training.get("config"):
        command = training.get("command") or f"predlearn fit --config {training['config']}"
        lines.append(f"- **Command**: `{command}`.")
    scores = training.get("test_scores")
    if scores:
        measured = training.get("test_command")
        lines += ["", "## Test scores", "",
                  ", ".join(f"{key} {value:.4g}" if isinstance(value, float) else
                            f"{key} {value}" for key, value in scores.items())
                  + (f", measured by `{measured}`." if measured else ".")]
    else:
        lines += ["", "No test scores recorded."]
    return "\n".join(lines) + "\n"
