"""Turn chat messages (+ images) into model inputs: one example at a time, then a padded batch.

An example is a dict of 1-D tensors over its tokens (`input_ids`, `attention_mask`, `mm_token_type_ids`
and, for training, `labels`) plus, when it has images, `pixel_values` [patches, dim] and
`image_grid_thw` [images, 3] — Qwen-VL flattens all patches of all images of a batch into one
tensor and finds each image's slice from its grid, so collation concatenates them in batch order.

Labels follow the usual causal-LM convention (the model shifts them): -100 everywhere except the
assistant response tokens and the <|im_end|> that closes the turn, so the loss never trains the
model to write the prompt and it learns to stop.

`pack_shared_prefix` turns several questions about one image into one training sequence (the image
and the prompt they share once, then each question's own tail); its `segment_ids` become a 4-D
attention mask in `collate`.
"""

from __future__ import annotations

import torch

IGNORE = -100
EOS_TOKEN = "<|im_end|>"
# mm_token_type_ids: 0 text, 1 image, 2 video (what Qwen3-VL's get_rope_index expects).
_IMAGE_PAD, _VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"


def mm_token_types(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """0 for text, 1 for <|image_pad|>, 2 for <|video_pad|> — for processors that do not return them."""
    types = torch.zeros_like(input_ids, dtype=torch.int)
    types[input_ids == tokenizer.convert_tokens_to_ids(_IMAGE_PAD)] = 1
    types[input_ids == tokenizer.convert_tokens_to_ids(_VIDEO_PAD)] = 2
    return types


def encode_chat(processor, messages: list[dict], images: list | None, add_generation_prompt: bool) -> dict:
    """Chat template + processor for one conversation; returns 1-D token tensors (+ image tensors)."""
    return encode_chats(processor, [messages], images, add_generation_prompt)[0]


def encode_chats(processor, conversations: list[list[dict]], images: list | None, add_generation_prompt: bool) -> list[dict]:
    """`encode_chat` of several conversations that show the same `images`, in one processor call:
    its per-call overhead (~2 ms on a CPU) is most of the cost of a short example."""
    texts = [processor.apply_chat_template(m, tokenize=False, add_generation_prompt=add_generation_prompt) for m in conversations]
    return _encode_texts(processor, texts, images)


def _encode_texts(processor, texts: list[str], images: list | None) -> list[dict]:
    """`encode_chats` of conversations already rendered by the chat template.

    The processor runs on the first text alone: with images it would process a copy of them per
    text (most of the cost of encoding a puzzle's questions). The others are tokenized with each
    <|image_pad|> expanded to as many as it expanded the first's to — checked on the first, and if
    this processor expands otherwise, every text goes through it as before.
    """
    images = list(images or [])
    if not images:
        return _rows(processor, processor(text=texts, padding=True, return_tensors="pt"))
    enc = processor(text=texts[:1], images=images, padding=True, return_tensors="pt")
    # every row shows the same images: one copy of their pixels, shared by the examples — pixels
    # are most of grounding's data memory
    pixels, grids = enc["pixel_values"], enc["image_grid_thw"]
    rows = _rows(processor, enc)
    if len(texts) > 1:  # the first again, tokenized as the others are: the check of the expansion
        pads = (grids.prod(-1) // processor.image_processor.merge_size ** 2).tolist()
        tokenized = _rows(processor, processor.tokenizer([_expand_image_pads(text, pads) for text in texts], padding=True, return_tensors="pt"))
        if torch.equal(tokenized[0]["input_ids"], rows[0]["input_ids"]):
            rows += tokenized[1:]
        else:  # not the expansion we know
            rows = _rows(processor, processor(text=texts, images=images * len(texts), padding=True, return_tensors="pt"))
    for ex in rows:
        ex["pixel_values"], ex["image_grid_thw"] = pixels, grids
    return rows


def _expand_image_pads(text: str, pads: list[int]) -> str:
    """`text` with its i-th <|image_pad|> repeated pads[i] times (the processor's expansion)."""
    parts = text.split(_IMAGE_PAD)
    if len(parts) - 1 != len(pads):
        raise ValueError(f"{len(parts) - 1} image placeholders in the text for {len(pads)} images")
    return parts[0] + "".join(_IMAGE_PAD * n + part for n, part in zip(pads, parts[1:]))


def _rows(processor, enc) -> list[dict]:
    """One example (input_ids, attention_mask, mm_token_type_ids, without padding) per row of a processor or tokenizer output."""
    types, rows = enc.get("mm_token_type_ids"), []
    for row in range(len(enc["input_ids"])):
        real = enc["attention_mask"][row].bool()
        ex = {"input_ids": enc["input_ids"][row][real], "attention_mask": enc["attention_mask"][row][real]}
        ex["mm_token_type_ids"] = types[row][real].int() if types is not None else mm_token_types(ex["input_ids"], processor.tokenizer)
        rows.append(ex)
    return rows


def encode_sft(processor, prompt_messages: list[dict], response_text: str, images: list | None) -> dict:
    """One supervised example: prompt + assistant response, labels only on the response and its <|im_end|>.

    The prompt (with the generation prompt `<|im_start|>assistant\\n`) must tokenize to a prefix of
    the full conversation; the labelled span runs from there up to and including the first
    <|im_end|> (the template's trailing newline after it stays unlabelled). The prefix check
    tokenizes text only: expanding each <|image_pad|> to its patches happens inside the prompt, so
    the response's tokens are the same either way, and the images are processed once, not twice.
    """
    return encode_sfts(processor, [(prompt_messages, response_text)], images)[0]


def encode_sfts(processor, prompts_responses: list[tuple[list[dict], str]], images: list | None) -> list[dict]:
    """`encode_sft` of several (prompt, response) pairs that show the same `images` (one processor
    call; the prefix checks of all pairs in one tokenizer call)."""
    conversations = [prompt + [{"role": "assistant", "content": [{"type": "text", "text": response}]}] for prompt, response in prompts_responses]
    full_texts = [processor.apply_chat_template(m, tokenize=False) for m in conversations]
    prompt_texts = [processor.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) for prompt, _ in prompts_responses]
    examples = _encode_texts(processor, full_texts, images)
    text_ids = processor.tokenizer(prompt_texts + full_texts)["input_ids"]
    eos = processor.tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    for full, prompt_ids, full_text_ids in zip(examples, text_ids[:len(examples)], text_ids[len(examples):]):
        ids, tail = full["input_ids"], len(full_text_ids) - len(prompt_ids)
        if tail <= 0 or full_text_ids[:len(prompt_ids)] != prompt_ids or ids[len(ids) - tail:].tolist() != full_text_ids[-tail:]:
            raise ValueError("the chat template does not tokenize the prompt as a prefix of prompt + response")
        n = len(ids) - tail
        ends = (ids[n:] == eos).nonzero()
        if len(ends) == 0:
            raise ValueError("the chat template did not close the assistant turn with <|im_end|>")
        end = n + int(ends[0]) + 1
        labels = torch.full_like(ids, IGNORE)
        labels[n:end] = ids[n:end]
        full["labels"] = labels
    return examples


def pack_shared_prefix(examples: list[dict], rope_index) -> dict:
    """One sequence for several examples whose prompts share a prefix holding all their images.

    The shared prefix (the longest common one: image, template, the question's first words) comes
    once, then each example's tail (the rest of its prompt and its labelled answer). Each tail sees
    the prefix and itself only (`segment_ids`: 0 for the prefix, i for tail i; `collate` makes the
    mask) at the positions it has alone, so the summed loss and its gradient are those of the
    examples one by one (tests/test_data.py), while the vision tower and the prefix run once.
    `rope_index` is the model's `get_rope_index`: the prefix's M-RoPE positions (text after it
    continues from their maximum + 1, Qwen-VL's rule).
    """
    # the prefix ends before any label (so that one example alone packs too: its prompt, then its answer)
    first, n = examples[0], min(int((ex["labels"] != IGNORE).int().argmax()) for ex in examples)
    for ex in examples[1:]:
        same = (ex["input_ids"][:n] == first["input_ids"][:n]).int()
        n = int(same.cumprod(0).sum())
    types = first["mm_token_type_ids"]
    same_images = all(torch.equal(ex[key], first[key]) for ex in examples for key in ("pixel_values", "image_grid_thw") if key in first)
    if not same_images or any((ex["mm_token_type_ids"][n:] != 0).any() or (ex["labels"][:n] != IGNORE).any() for ex in examples):
        raise ValueError("pack_shared_prefix: the examples must share their images and prompt start, labels after it")
    positions, _ = rope_index(first["input_ids"][None, :n], mm_token_type_ids=types[None, :n],
                              image_grid_thw=first.get("image_grid_thw"))
    prefix_positions, start = positions[:, 0], int(positions.max()) + 1
    tails = [{key: ex[key][n:] for key in ("input_ids", "attention_mask", "mm_token_type_ids", "labels")} for ex in examples]
    packed = {key: torch.cat([first[key][:n]] + [tail[key] for tail in tails]) for key in tails[0]}
    packed["segment_ids"] = torch.cat([torch.zeros(n, dtype=torch.long)]
                                      + [torch.full((len(t["input_ids"]),), i + 1) for i, t in enumerate(tails)])
    packed["position_ids"] = torch.cat([prefix_positions] + [(start + torch.arange(len(t["input_ids"]))).expand(3, -1) for t in tails], dim=1)
    for key in ("pixel_values", "image_grid_thw"):
        if key in first:
            packed[key] = first[key]
    return packed


def segment_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """[B, 1, L, L] boolean attention mask (True = attend) of packed rows: causal, a tail sees the
    prefix (segment 0) and itself; padding (-1) is seen by nothing and sees only itself, since a
    query that sees nothing has no softmax."""
    query, key = segment_ids[:, :, None], segment_ids[:, None, :]
    length = segment_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    mask = causal & (query >= 0) & (key >= 0) & ((key == 0) | (key == query))
    return (mask | torch.eye(length, dtype=torch.bool))[:, None]


def collate(examples: list[dict], pad_id: int, left_pad: bool = False) -> dict:
    """Pad token tensors to the longest example (left padding for generation), concatenate images.

    Padding: input_ids with `pad_id`, attention_mask and mm_token_type_ids with 0, labels with -100.
    Packed examples (`pack_shared_prefix`) also bring their M-RoPE `position_ids` [3, B, L] and,
    instead of the 2-D attention mask, the 4-D one of their segments.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    width = max(len(ex["input_ids"]) for ex in examples)
    fill = {"input_ids": pad_id, "attention_mask": 0, "mm_token_type_ids": 0, "labels": IGNORE, "segment_ids": -1, "position_ids": 0}
    batch = {}
    for key, value in fill.items():
        if key not in examples[0]:
            continue
        rows = []
        for ex in examples:
            x = ex[key]
            pad = x.new_full((*x.shape[:-1], width - x.shape[-1]), value)
            rows.append(torch.cat([pad, x] if left_pad else [x, pad], dim=-1))
        batch[key] = torch.stack(rows, dim=-2)
    if "segment_ids" in batch:
        batch["attention_mask"] = segment_mask(batch.pop("segment_ids"))
    with_images = [ex for ex in examples if "pixel_values" in ex]
    if with_images:
        batch["pixel_values"] = torch.cat([ex["pixel_values"] for ex in with_images])
        batch["image_grid_thw"] = torch.cat([ex["image_grid_thw"] for ex in with_images])
    return batch
