"""The Qwen3-VL processor without its video half, so it needs no torchvision.

`Qwen3VLProcessor` insists on a video processor, and Qwen's video processor imports torchvision.
We plan over still images only, so `VLProcessor` takes just an image processor (the PIL backend of
the Qwen2-VL image processor, which Qwen3-VL also uses) and a tokenizer. Everything else — chat
template, expanding each <|image_pad|> to one token per merged patch, `mm_token_type_ids` — is the
stock Qwen3-VL behaviour, so the same class serves the mini model and real Qwen3-VL / Qwen2.5-VL
checkpoints.
"""

from __future__ import annotations

from transformers import Qwen3VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil


class VLProcessor(Qwen3VLProcessor):
    """Qwen3-VL processor for images and text only (no torchvision, no video)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # The parent passes (image_processor, tokenizer, video_processor) positionally to ProcessorMixin,
        # which pairs them with *our* attributes (from this signature): the None video slot is dropped.
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        # The auto class would pick the torchvision image processor when torchvision is installed and fail
        # when it is not; the PIL one gives the same pixels everywhere.
        tokenizer = cls._load_tokenizer_from_pretrained("tokenizer", pretrained_model_name_or_path, **kwargs)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return [image_processor, tokenizer]


def mini_image_processor(patch_size: int = 8, merge_size: int = 2) -> Qwen2VLImageProcessorPil:
    """Image processor of the mini preset: 8-px patches, 2x2 merge, so one visual token per 16x16 px."""
    cell = patch_size * merge_size
    return Qwen2VLImageProcessorPil(
        patch_size=patch_size,
        merge_size=merge_size,
        temporal_patch_size=2,
        size={"shortest_edge": 2 * cell * 2 * cell, "longest_edge": 256 * 256},  # min / max pixels
        image_mean=[0.5, 0.5, 0.5],  # Qwen3-VL's normalisation
        image_std=[0.5, 0.5, 0.5],
    )
