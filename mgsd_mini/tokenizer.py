"""The mini preset's tokenizer: a byte-level BPE trained locally on the puzzle/prompt vocabulary.

Byte-level (like Qwen's own tokenizer) means every input string round-trips: an unseen word falls
back to its UTF-8 bytes, never to [UNK]. Trained on a few hundred short texts (prompts, symbolic
states, perception Q&A, reference plans), a vocabulary of 512 makes every word the puzzles and
prompts use a single token, so sequences stay short on a CPU.

The Qwen chat special tokens keep their Qwen names, so the same chat template, label masking and
image-token handling serve the mini model and the real Qwen3-VL checkpoints.

Regenerate the shipped copy (`mgsd_mini/assets/tokenizer.json`) with `python -m mgsd_mini.tokenizer`.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from mgsd_mini import generic_images, prompts

ASSET = Path(__file__).parent / "assets" / "tokenizer.json"
VOCAB_SIZE = 768  # room to spare: the BPE saturates near 650 on the puzzle corpus, so every word is one token
PAD, EOS = "<|endoftext|>", "<|im_end|>"
# Order fixes the ids 0..6 of the special tokens.
SPECIAL_TOKENS = [PAD, "<|im_start|>", EOS, "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

# Qwen3-VL's chat format without its tool/thinking branches: a user turn is a string or a list of
# {"type": "image"} / {"type": "text"} parts; each image becomes <|vision_start|><|image_pad|><|vision_end|>
# and the processor expands the single <|image_pad|> to one per merged visual token.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def corpus(n_per_level: int = 4, seed: int = 0) -> list[str]:
    """Training texts: every prompt kind, symbolic states, perception Q&A and plans of a few puzzles."""
    import puzzles  # the puzzles package defines the vocabulary the model must read and write

    rng = random.Random(seed)
    texts = ["user assistant system", prompts.ANSWER_FORMAT, prompts.PERCEPTION_FORMAT, *prompts.RULES.values()]
    texts += ["0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 yes no none true false"]
    # Every maze cell (a set of open sides) must be one token wherever it stands — at the start of a
    # row or after a space — so a cell's column is a fixed token offset within its row. A handful of
    # sampled mazes misses rare ones ("ULR" opening a row, " UDLR"), which BPE then splits into
    # pieces and the planner has to count sub-tokens to find a cell.
    texts += [f"{cell}\n {cell} {cell}" for cell in _maze_cells()]
    for name in puzzles.TASKS:
        task = puzzles.get_task(name)
        texts.append(" ".join(task.actions))
        for level in task.levels:
            for _ in range(n_per_level):
                state = task.generate(level, rng)
                plan = task.solve(state)
                texts.append(prompts.response(name, state, plan))
                for instructions in (True, False):
                    texts.append(prompts.teacher_prompt(name, state, plan, instructions)[0]["content"][0]["text"])
                    texts.append(prompts.student_prompt(name, instructions)[0]["content"][1]["text"])
                    for question, answer in task.perception(state):
                        texts.append(prompts.perception_prompt(name, question, instructions)[0]["content"][1]["text"])
                        texts.append(str(answer))
    for _ in range(200):  # stage 0's generic image captions (colour grids, shapes)
        texts.extend(generic_images.sample(rng)[1:])
    return texts


def _maze_cells() -> list[str]:
    """Every set of open sides (none included), written as the maze's symbolic text writes it."""
    from puzzles.grid import MOVE_ORDER
    from puzzles.maze import sides_text

    return [sides_text(sides) for k in range(len(MOVE_ORDER) + 1) for sides in itertools.combinations(MOVE_ORDER, k)]


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Byte-level BPE on `texts`, wrapped as a transformers tokenizer with Qwen's special tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: the no-[UNK] fallback
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return wrap(tok)


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=SPECIAL_TOKENS[1:],  # never split, skipped by decode(skip_special_tokens)
        chat_template=CHAT_TEMPLATE,
        padding_side="left",  # generation pads left; training collation pads explicitly
        model_max_length=4096,
    )


def load_tokenizer() -> PreTrainedTokenizerFast:
    """The shipped tokenizer (deterministic across checkouts); trains one if the asset is missing."""
    if ASSET.exists():
        return wrap(Tokenizer.from_file(str(ASSET)))
    return train_tokenizer(corpus())


if __name__ == "__main__":
    tokenizer = train_tokenizer(corpus())
    ASSET.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.backend_tokenizer.save(str(ASSET))
    print(f"wrote {ASSET} ({len(tokenizer)} tokens)")
