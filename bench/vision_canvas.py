"""Does the fixed canvas let the mini vision pathway read *positions*? Two fresh mini models, side by side.

    python bench/vision_canvas.py --steps 2000 --batch-size 32

Qwen3-VL's vision tower adds to each patch an absolute position embedding *interpolated* from a
16 x 16 table to the image's patch grid, so a cell's embedding says where it is as a fraction of the
image — a different fraction for row 2 of a 3x3 grid and of a 5x5 one. The mini processor therefore
pastes every image on a fixed canvas (processor.CanvasImageProcessor). This bench trains two fresh
mini models from scratch on the same generic colour grids (`generic_images`, the stage-0 image data)
and scores each on fresh images by question kind (bench/probe_vision.py):
- `fit`: canvas off, the image is the grid (16 px a cell);
- `canvas`: the mini default, the grid at the top left of a fixed grey canvas.
"""

import argparse
import random
import tempfile
import time

from mgsd_mini import config, data, generic_images, model as models, prompts
from mgsd_mini.processor import MINI_CANVAS_CELLS
from mgsd_mini.sft import named_trainables, train_sft
from probe_vision import accuracy_by_kind

CANVAS_PX = {"fit": 0, "canvas": MINI_CANVAS_CELLS * generic_images.CELL_PX}


def train(canvas_px: int, steps: int, batch_size: int, seed: int):
    net, processor = models.build_mini(seed=seed)
    processor.image_processor.canvas_px = canvas_px
    cfg = config.resolve("base", "mini", {"steps": steps, "batch_size": batch_size, "seed": seed, "ckpt_every": steps + 1})

    def batches(i: int) -> dict:
        rng = random.Random(f"vision-canvas|{seed}|{i}")
        side = rng.choice(generic_images.SIZES)  # one grid size per batch, as in stage 0
        examples = []
        for _ in range(batch_size):
            image, question, answer = generic_images.sample(rng, sizes=range(side, side + 1))
            examples.append(data.encode_sft(processor, prompts.image_question(question), answer, [image]))
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
    for name, canvas_px in CANVAS_PX.items():
        t0 = time.time()
        net, processor = train(canvas_px, args.steps, args.batch_size, args.seed)
        train_s = time.time() - t0
        rng = random.Random(123)
        accuracy, counts = accuracy_by_kind(net, processor, [generic_images.sample(rng) for _ in range(args.n)])
        results[name] = (accuracy, counts, train_s)
    kinds = list(results["fit"][0])
    print(f"{'question kind':28s} {'n':>4s} {'fit %':>7s} {'canvas %':>9s}")
    for kind in kinds:
        print(f"{kind:28s} {results['fit'][1][kind]:4d} {results['fit'][0][kind]:7.1f} {results['canvas'][0][kind]:9.1f}")
    print(f"{'train time s':28s} {'':4s} {results['fit'][2]:7.0f} {results['canvas'][2]:9.0f}")


if __name__ == "__main__":
    main()
