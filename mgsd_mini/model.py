"""Build the mini Qwen3-VL, or load any Qwen3-VL / Qwen2.5-VL checkpoint, with its processor.

One code path for every preset: the mini model is a genuine `Qwen3VLForConditionalGeneration`
(just small), saved and reloaded with `save_pretrained` / `from_pretrained` exactly like the 4B.

    model, processor = load("mini")                      # shipped base, or a fresh random one
    model, processor = load("runs/base-.../model")        # a saved mini (or any local checkpoint)
    model, processor = load("Qwen/Qwen3-VL-4B-Instruct")  # the hub id (needs the files cached)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from PIL import Image
from transformers import (
    PreTrainedModel,
    Qwen2_5_VLForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)

from transformers.utils import logging as hf_logging

import puzzles
from mgsd_mini.processor import VLProcessor, mini_image_processor
from mgsd_mini.tokenizer import load_tokenizer

hf_logging.disable_progress_bar()  # per-shard bars would clutter our own progress output

MINI_BASE = Path(__file__).parent / "assets" / "mini-base"  # the stage-0 base shipped with the code
# Short names for the paper's backbones; anything else is a local directory or a hub id.
MODEL_IDS = {
    "qwen3-vl-4b": "Qwen/Qwen3-VL-4B-Instruct",
    "qwen3-vl-8b": "Qwen/Qwen3-VL-8B-Instruct",
}
MODEL_CLASSES = {"qwen3_vl": Qwen3VLForConditionalGeneration, "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration}
PAPER_IMAGE_SIZE = 256  # the paper renders every puzzle at 256x256


class ModelLoadError(ValueError):
    """A model name or directory that cannot be loaded; the message says what to do."""


def mini_config(vocab_size: int, special_ids: dict[str, int], layers: int = 6, mlp: int = 512) -> Qwen3VLConfig:
    """A ~2 M-parameter Qwen3-VL (DESIGN §4): text 128 wide x `layers` layers with `mlp`-wide MLPs,
    vision 64 wide x 2 layers."""
    head_dim = 32
    text = dict(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=head_dim,
        max_position_embeddings=4096,
        # M-RoPE splits the head_dim/2 rotary frequencies between (time, height, width); the
        # sections must sum to head_dim/2 or positions are silently wrong.
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [6, 5, 5], "mrope_interleaved": True},
        pad_token_id=special_ids["pad"],
        eos_token_id=special_ids["eos"],
    )
    assert sum(text["rope_parameters"]["mrope_section"]) == head_dim // 2
    vision = dict(
        depth=2,
        hidden_size=64,
        intermediate_size=256,
        num_heads=2,
        patch_size=8,
        spatial_merge_size=2,  # 2x2 patches of 8 px -> one visual token per 16x16 px (one grid cell)
        temporal_patch_size=2,
        out_hidden_size=128,  # must equal the text hidden size: merged tokens go straight into the LM
        num_position_embeddings=256,  # a 16x16 table of learned patch positions, interpolated to any grid
        deepstack_visual_indexes=[0],
    )
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=special_ids["image"],
        video_token_id=special_ids["video"],
        vision_start_token_id=special_ids["vision_start"],
        vision_end_token_id=special_ids["vision_end"],
        tie_word_embeddings=True,
        pad_token_id=special_ids["pad"],
        eos_token_id=special_ids["eos"],
    )


def build_mini(seed: int = 0, layers: int = 6, mlp: int = 512) -> tuple[Qwen3VLForConditionalGeneration, VLProcessor]:
    """A freshly initialised mini model (fp32, CPU, eval mode) and its processor; same seed, same weights.

    `layers` x `mlp` is the text decoder's shape (stage 0's `--layers` / `--mlp`; the defaults are the
    shipped base's); later stages read the shape from the saved model's config."""
    tokenizer = load_tokenizer()
    processor = VLProcessor(mini_image_processor(), tokenizer, chat_template=tokenizer.chat_template)
    ids = {
        "pad": tokenizer.pad_token_id,
        "eos": tokenizer.eos_token_id,
        "image": processor.image_token_id,
        "video": processor.video_token_id,
        "vision_start": processor.vision_start_token_id,
        "vision_end": processor.vision_end_token_id,
    }
    config = mini_config(len(tokenizer), ids, layers, mlp)
    with torch.random.fork_rng(devices=[]):  # seed the init without disturbing the caller's RNG
        torch.manual_seed(seed)
        model = Qwen3VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = ids["pad"]
    model.generation_config.eos_token_id = ids["eos"]
    return model.float().eval(), processor


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """`device`, or CUDA when there is one, else the CPU: where `load` puts a model."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def load(
    model: str = "mini",
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    grad_ckpt: bool = False,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, VLProcessor]:
    """Model + processor by name: "mini", "qwen3-vl-4b"/"qwen3-vl-8b", a local directory or a hub id.

    bf16 on CUDA and fp32 on CPU unless `dtype` says otherwise. Raises ModelLoadError (a ValueError)
    with a one-line fix for unknown names, missing or non-model directories and unreadable weights.
    """
    device = pick_device(device)
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    if model == "mini" and not (MINI_BASE / "config.json").exists():
        net, processor = build_mini(seed=0)
    else:
        source = _resolve(model)
        net, processor = _from_pretrained(source, dtype, trust_remote_code)
    net = net.to(device=device, dtype=dtype).eval()
    if grad_ckpt:
        # Non-reentrant checkpointing also works when only LoRA weights require grad.
        net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return net, processor


def _resolve(name: str) -> str:
    """A local model directory or a hub id for `name`, or ModelLoadError saying what would work."""
    if name == "mini":
        return str(MINI_BASE)
    name = MODEL_IDS.get(name, name)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{name} is a file, not a model directory: pass the directory that holds config.json")
        config = path / "config.json"
        if not config.exists():
            raise ModelLoadError(f"{name} is not a model directory (no config.json): pass a directory written by save_pretrained")
        model_type = _model_type(config)
        if model_type not in MODEL_CLASSES:
            raise ModelLoadError(f"{name} holds a '{model_type}' model; supported: {', '.join(MODEL_CLASSES)} (Qwen3-VL, Qwen2.5-VL)")
        if not list(path.glob("*.safetensors")):
            raise ModelLoadError(f"{name} has no *.safetensors weights: re-save the model (pickle .bin weights are not loaded)")
        return str(path)
    looks_like_hub_id = name.count("/") == 1 and not name.startswith((".", "/", "~")) and not name.endswith("/")
    if not looks_like_hub_id:
        raise ModelLoadError(f"unknown model '{name}': use mini, {', '.join(MODEL_IDS)}, a local model directory or a hub id like Qwen/Qwen3-VL-4B-Instruct")
    return name


def _model_type(config_path: Path) -> str:
    try:
        return json.loads(config_path.read_text()).get("model_type", "?")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{config_path} is not valid JSON ({err}): re-save or re-download the model") from None


def _from_pretrained(source: str, dtype: torch.dtype, trust_remote_code: bool):
    try:
        local = Path(source).is_dir()
        model_type = _model_type(Path(source) / "config.json") if local else _hub_model_type(source, trust_remote_code)
        cls = MODEL_CLASSES.get(model_type)
        if cls is None:
            raise ModelLoadError(f"{source} holds a '{model_type}' model; supported: {', '.join(MODEL_CLASSES)}")
        net = cls.from_pretrained(source, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True)
        processor = VLProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
    except ModelLoadError:
        raise
    except OSError as err:  # not cached / hub unreachable / missing files
        offline = " (HF_HUB_OFFLINE is set: download it once with network, or pass a local directory)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise ModelLoadError(f"cannot load model {source}: {str(err).splitlines()[0]}{offline}") from None
    except Exception as err:  # safetensors header / size errors on a corrupt or truncated file
        raise ModelLoadError(f"cannot load model {source}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} — the files look corrupt or truncated; re-save or re-download them") from None
    return net, processor


def _hub_model_type(model_id: str, trust_remote_code: bool) -> str:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model_id, trust_remote_code=trust_remote_code).model_type


def save(model: PreTrainedModel, processor: VLProcessor, out_dir: str | Path) -> Path:
    """`save_pretrained` model (safetensors) and processor into out_dir, atomically.

    Everything is written into a temporary sibling directory that then replaces out_dir, so a crash
    leaves either the old directory or the new one, never a half-written model.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _replace_dir(src: Path, dst: Path) -> None:
    """Move directory src to dst; an existing dst is renamed away first and deleted only afterwards."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def image_size(model_or_processor, task: str, level: int) -> int:
    """Pixels per side to render a puzzle at.

    The mini model (8-px patches) sees one merged visual token per grid cell: patch x merge = 16 px
    per cell, so 16 * side px for a side-`level` grid (every task's level is its grid side); its
    processor then pastes that on its fixed canvas (processor.CanvasImageProcessor). Real
    Qwen-VL backbones get the paper's 256 x 256.
    """
    patch, merge = _vision_geometry(model_or_processor)
    if patch == 8:
        return patch * merge * level
    return PAPER_IMAGE_SIZE


def puzzle_image(model_or_processor, task: str, level: int, state: dict) -> Image.Image:
    """The puzzle `state` rendered at the size this model reads it at (image_size)."""
    return puzzles.get_task(task).render(state, image_size(model_or_processor, task, level))


def _vision_geometry(obj) -> tuple[int, int]:
    if hasattr(obj, "image_processor"):
        return obj.image_processor.patch_size, obj.image_processor.merge_size
    vision = obj.config.vision_config
    return vision.patch_size, vision.spatial_merge_size
