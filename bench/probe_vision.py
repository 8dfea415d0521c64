"""Can a model read generic images? Greedy accuracy on `generic_images` questions, by question kind.

    python bench/probe_vision.py --model mini --n 192

(80 new tokens: more than a 5x5 raster transcription needs — 25 colour words and 4 line breaks.)

A diagnostic for stage 0: the mini base should read colour grids before grounding can teach it to
read puzzles. Exact match after stripping the end-of-turn token.
"""

import argparse
import collections
import random

from mgsd_mini import data, generic_images, model as models, prompts
from mgsd_mini.generate import generate


def accuracy_by_kind(net, processor, items: list) -> tuple[dict[str, float], dict[str, int]]:
    """({question kind (its first three words): % exact}, {kind: count}) over (image, question, answer) items."""
    hits = collections.defaultdict(list)
    for start in range(0, len(items), 32):
        chunk = items[start:start + 32]
        batch = data.collate([data.encode_chat(processor, prompts.image_question(q), [img], True) for img, q, _ in chunk],
                             processor.tokenizer.pad_token_id, left_pad=True)
        for (_, q, a), text in zip(chunk, generate(net, processor, batch, 80).texts):
            hits[" ".join(q.split()[:3])].append(text.replace("<|im_end|>", "").strip() == a)
    return {kind: 100 * sum(ok) / len(ok) for kind, ok in sorted(hits.items())}, {kind: len(ok) for kind, ok in hits.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mini")
    ap.add_argument("--n", type=int, default=192)
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()
    net, processor = models.load(args.model)
    rng = random.Random(args.seed)
    accuracy, counts = accuracy_by_kind(net, processor, [generic_images.sample(rng) for _ in range(args.n)])
    for kind, acc in accuracy.items():
        print(f"{kind:28s} n={counts[kind]:4d}  accuracy {acc:5.1f} %")


if __name__ == "__main__":
    main()
