"""Does a fixed canvas let the mini vision pathway read *positions*? Two fresh mini models, side by side.

    python bench/vision_canvas.py --steps 400 --batch-size 16

Qwen3-VL's vision tower adds to each patch an absolute position embedding *interpolated* from a
16 x 16 table to the image's patch grid, so a cell's embedding says where it is as a fraction of the
image — a different fraction for row 2 of a 3x3 grid and of a 5x5 one. Each model here is trained
from scratch on generic colour grids only (`generic_images`, the stage-0 image data, same examples
for both):
- `fit`: the image is the grid (16 px a cell, as the mini preset renders everything today);
- `canvas`: the grid pasted at the top left of a fixed 8 x 8-cell grey canvas (128 px), so the
  interpolation is the identity and row r has the same embedding whatever the grid's size.
Then greedy accuracy per question kind on fresh images (bench/probe_vision.py), and the train time.
"""

import argparse
import random
import tempfile
import time

from PIL import Image

from mgsd_mini import config, data, generic_images, model as models, prompts
from mgsd_mini.sft import named_trainables, train_sft
from probe_vision import accuracy_by_kind

CANVAS_PX = generic_images.CELL_PX * max(generic_images.SIZES)
CANVAS_GREY = (128, 128, 128)  # not one of generic_images.COLOURS


def on_canvas(image: Image.Image) -> Image.Image:
    canvas = Image.new("RGB", (CANVAS_PX, CANVAS_PX), CANVAS_GREY)
    canvas.paste(image, (0, 0))
    return canvas


PLACEMENTS = {"fit": lambda image: image, "canvas": on_canvas}


def train(place, steps: int, batch_size: int, seed: int):
    net, processor = models.build_mini(seed=seed)
    cfg = config.resolve("base", "mini", {"steps": steps, "batch_size": batch_size, "seed": seed, "ckpt_every": steps + 1})

    def batches(i: int) -> dict:
        rng = random.Random(f"vision-canvas|{seed}|{i}")
        side = rng.choice(generic_images.SIZES)  # one grid size per batch, as in stage 0
        examples = []
        for _ in range(batch_size):
            image, question, answer = generic_images.sample(rng, sizes=range(side, side + 1))
            examples.append(data.encode_sft(processor, prompts.image_question(question), answer, [place(image)]))
        return data.collate(examples, processor.tokenizer.pad_token_id)

    with tempfile.TemporaryDirectory() as run_dir:
        train_sft(net, batches, named_trainables(net), cfg, run_dir)
    return net, processor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n", type=int, default=256, help="fresh images to score")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    results = {}
    for name, place in PLACEMENTS.items():
        t0 = time.time()
        net, processor = train(place, args.steps, args.batch_size, args.seed)
        train_s = time.time() - t0
        rng = random.Random(123)
        accuracy, counts = accuracy_by_kind(net, processor, [generic_images.sample(rng) for _ in range(args.n)], place)
        results[name] = (accuracy, counts, train_s)
    kinds = list(results["fit"][0])
    print(f"{'question kind':28s} {'n':>4s} {'fit %':>7s} {'canvas %':>9s}")
    for kind in kinds:
        print(f"{kind:28s} {results['fit'][1][kind]:4d} {results['fit'][0][kind]:7.1f} {results['canvas'][0][kind]:9.1f}")
    print(f"{'train time s':28s} {'':4s} {results['fit'][2]:7.0f} {results['canvas'][2]:9.0f}")


if __name__ == "__main__":
    main()
