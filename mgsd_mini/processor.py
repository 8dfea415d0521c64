"""The Qwen3-VL processor without its video half, so it needs no torchvision.

`Qwen3VLProcessor` insists on a video processor, and Qwen's video processor imports torchvision.
We plan over still images only, so `VLProcessor` takes just an image processor (the PIL backend of
the Qwen2-VL image processor, which Qwen3-VL also uses) and a tokenizer. Everything else — chat
template, expanding each <|image_pad|> to one token per merged patch, `mm_token_type_ids` — is the
stock Qwen3-VL behaviour, so the same class serves the mini model and real Qwen3-VL / Qwen2.5-VL
checkpoints.

The mini preset also pastes every image on a fixed canvas (`CanvasImageProcessor`), see there.
"""

from __future__ import annotations

from PIL import Image
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
        image_processor = CanvasImageProcessor.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return [image_processor, tokenizer]


# Mid grey: 0 after the (0.5, 0.5) normalisation, and no puzzle or generic-image colour.
CANVAS_GREY = (127, 127, 127)
# The mini canvas: 5 cells of 16 px, the largest grid of the mini preset (evaluate.DEFAULT_LEVELS).
MINI_CANVAS_CELLS = 5


class CanvasImageProcessor(Qwen2VLImageProcessorPil):
    """The Qwen2-VL PIL image processor, which first pastes each image at the top left of a fixed
    `canvas_px` square of CANVAS_GREY (0, the default, leaves images as they are).

    Why: Qwen3-VL's vision tower adds to each patch a learned position embedding *interpolated* from
    a 16 x 16 table to the image's patch grid, so a patch's embedding says where it is as a fraction
    of the image: row 1 of a 3 x 3 grid and row 2 of a 5 x 5 one look alike. A large model learns to
    undo that; the mini one, trained on a few ten thousand images, read grids in raster order but not
    *where* a cell is (bench/probe_vision.py). On one canvas size every image has the same patch
    grid, so cell (r, c) has one embedding whatever the puzzle's size. `canvas_px` is saved with the
    processor, so a model is always shown images the way it was trained.
    """

    def __init__(self, canvas_px: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.canvas_px = canvas_px

    def preprocess(self, images, **kwargs):
        return super().preprocess(self._on_canvas(images) if self.canvas_px else images, **kwargs)

    def _on_canvas(self, images):
        if isinstance(images, (list, tuple)):
            return [self._on_canvas(image) for image in images]
        if not isinstance(images, Image.Image):
            raise TypeError(f"the canvas takes PIL images, not {type(images).__name__}")
        if max(images.size) > self.canvas_px:
            raise ValueError(f"a {images.width}x{images.height} image does not fit the {self.canvas_px}-px canvas")
        canvas = Image.new("RGB", (self.canvas_px, self.canvas_px), CANVAS_GREY)
        canvas.paste(images.convert("RGB"), (0, 0))
        return canvas


def mini_image_processor(patch_size: int = 8, merge_size: int = 2) -> CanvasImageProcessor:
    """Image processor of the mini preset: 8-px patches, 2x2 merge, so one visual token per 16x16 px,
    on a canvas of MINI_CANVAS_CELLS such cells."""
    cell = patch_size * merge_size
    return CanvasImageProcessor(
        canvas_px=MINI_CANVAS_CELLS * cell,
        patch_size=patch_size,
        merge_size=merge_size,
        temporal_patch_size=2,
        size={"shortest_edge": 2 * cell * 2 * cell, "longest_edge": 256 * 256},  # min / max pixels
        image_mean=[0.5, 0.5, 0.5],  # Qwen3-VL's normalisation
        image_std=[0.5, 0.5, 0.5],
    )
