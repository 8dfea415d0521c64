"""Config: presets, typed CLI overrides, JSON round trip, clear errors."""

import json

import pytest

from mgsd_mini import config
from mgsd_mini.config import ConfigError


@pytest.mark.parametrize("stage", ["grounding", "distill", "eval"])
@pytest.mark.parametrize("preset", ["mini", "qwen3-vl-4b", "qwen3-vl-8b"])
def test_every_stage_and_preset_resolves_and_round_trips(tmp_path, stage, preset):
    cfg = config.resolve(stage, preset)
    assert cfg.preset == preset
    assert (cfg.model == "mini") == (preset == "mini")
    config.save(cfg, tmp_path)
    assert config.from_json(json.loads((tmp_path / "config.json").read_text())) == cfg


def test_paper_hyper_parameters_for_the_4b():
    g = config.resolve("grounding", "qwen3-vl-4b")
    assert (g.lora_r, g.lora_alpha, g.lora_dropout, g.lr, g.schedule, g.warmup_frac, g.epochs) == (8, 16.0, 0.0, 1e-4, "cosine", 0.1, 3.0)
    assert g.batch_size * g.grad_accum == 64
    d = config.resolve("distill", "qwen3-vl-4b")
    assert (d.lr, d.schedule, d.weight_decay, d.max_grad_norm, d.batch_size, d.epochs) == (1e-6, "constant", 0.01, 1.0, 32, 5.0)
    assert config.resolve("eval", "qwen3-vl-8b").model == "Qwen/Qwen3-VL-8B-Instruct"


def test_cli_strings_are_converted_by_field_type():
    cfg = config.resolve("distill", "mini", {"lr": "3e-4", "batch-size": "4", "reference_plan": "false", "tasks": "maze,frozenlake", "levels": "3,4", "grounding": "none"})
    assert cfg.lr == 3e-4 and cfg.batch_size == 4 and cfg.reference_plan is False
    assert cfg.tasks == ("maze", "frozenlake") and cfg.levels == (3, 4) and cfg.grounding is None
    assert config.resolve("eval", "mini", {"adapters": ["a", "b"]}).adapters == ("a", "b")


def test_bad_input_names_the_problem():
    with pytest.raises(ConfigError, match="unknown stage 'rl'"):
        config.resolve("rl")
    with pytest.raises(ConfigError, match="unknown preset 'qwen3-vl-2b'.*mini"):
        config.resolve("grounding", "qwen3-vl-2b")
    with pytest.raises(ConfigError, match="unknown option --lerning-rate"):
        config.resolve("grounding", "mini", {"lerning_rate": "1"})
    with pytest.raises(ConfigError, match="--steps expects int, got 'many'"):
        config.resolve("base", "mini", {"steps": "many"})
    with pytest.raises(ConfigError, match="--grad-ckpt expects bool"):
        config.resolve("base", "mini", {"grad_ckpt": "maybe"})
    with pytest.raises(ConfigError, match="--layers must be at least 1, got 0"):
        config.resolve("base", "mini", {"layers": "0"})
    with pytest.raises(ConfigError, match="--replay-examples must be at least 0, got -1"):
        config.check_minimum(config.GroundingConfig(replay_examples=-1))  # built in code, not from the CLI
    config.check_minimum(config.DistillConfig())  # every default is within bounds
    with pytest.raises(ConfigError, match="only for the mini preset"):
        config.resolve("base", "qwen3-vl-4b")
