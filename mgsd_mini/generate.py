"""Batched decoding for Qwen-VL models with a KV cache: greedy (temperature 0) or sampled.

One loop, written out instead of calling `model.generate`, because stage 2 needs exactly what is
sampled (tokens, response mask, log-probs) and because Qwen-VL's multimodal RoPE is easy to get
wrong behind the scenes:

- Prompts are left-padded, so every row's next token is at the last column.
- Positions are 3-D (temporal, height, width). We compute them explicitly with the model's own
  `get_rope_index` for the prompt; after the prompt every new token is text, so its three position
  components are all `p_next = max(prompt positions) + 1 + k` for the k-th new token. Passing
  positions explicitly means the model's cached `rope_deltas` are neither read nor written, so a
  later hand-built forward pass is never hit by stale deltas (DESIGN §7).
- `<|image_pad|>` and `<|video_pad|>` are never sampled (their logits are set to -inf): a generated
  vision placeholder would make the next forward pass look for image features that do not exist.
- A row stops at `<|im_end|>` (or the tokenizer's eos); afterwards it is fed padding, and its
  tokens are `pad_id` with mask 0.

`use_cache=False` recomputes the whole sequence at every step: the slow reference that the KV-cache
path is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from mgsd_mini.data import mm_token_types
from mgsd_mini.lora import merged


@dataclass
class GenerationOutput:
    tokens: torch.Tensor  # [B, T] generated ids; pad_id after the row's end-of-turn token
    mask: torch.Tensor  # [B, T] 1 for generated tokens up to and including end-of-turn, else 0
    logprobs: torch.Tensor  # [B, T] log-prob of each token under the distribution it was drawn from; 0 where mask is 0
    texts: list[str]  # decoded responses, special tokens (and the end-of-turn) removed


def _rope_model(model):
    """The inner Qwen-VL model that owns `get_rope_index` (works for plain and LoRA-injected models)."""
    for m in (getattr(model, "model", None), model):
        if m is not None and hasattr(m, "get_rope_index"):
            return m
    raise TypeError(f"{type(model).__name__} has no get_rope_index: not a Qwen-VL model")


def prompt_positions(model, batch: dict) -> torch.Tensor:
    """3-D RoPE positions [3, B, L] of a (left-padded) prompt batch; padding positions are 0."""
    return _rope_model(model).get_rope_index(
        batch["input_ids"],
        mm_token_type_ids=batch["mm_token_type_ids"],
        image_grid_thw=batch.get("image_grid_thw"),
        attention_mask=batch["attention_mask"],
    )[0]


def stop_token_ids(tokenizer) -> list[int]:
    ids = {tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id}
    return sorted(i for i in ids if i is not None and i >= 0)


def suppressed_token_ids(tokenizer) -> list[int]:
    ids = {tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>")}
    unk = tokenizer.unk_token_id
    return sorted(i for i in ids if i is not None and i >= 0 and i != unk)


@torch.no_grad()
def generate(model, processor, batch: dict, max_new_tokens: int, temperature: float = 0.0, seed=None,
             use_cache: bool = True) -> GenerationOutput:
    """Decode up to `max_new_tokens` for every prompt in `batch` (from `data.collate(..., left_pad=True)`).

    temperature == 0: greedy (argmax). temperature > 0: sample from softmax(logits / temperature),
    with a private generator seeded by `seed`, or torch's global RNG when `seed` is None.

    `logprobs` are log-softmax(logits / temperature) at the chosen token (plain log-softmax(logits)
    for greedy), after the vision pad tokens are masked out: the log-probability under the
    distribution the token was actually drawn from (at temperature 1, the student's own log-prob).
    """
    tokenizer = processor.tokenizer
    if batch["attention_mask"][:, -1].eq(0).any():
        raise ValueError("generate() needs left-padded prompts (collate(..., left_pad=True))")
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
    if "mm_token_type_ids" not in batch:
        batch["mm_token_type_ids"] = mm_token_types(batch["input_ids"], tokenizer)
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    B = input_ids.shape[0]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stops = torch.tensor(stop_token_ids(tokenizer), device=device)
    banned = suppressed_token_ids(tokenizer)
    generator = None  # seed=None samples from torch's global RNG (seeded, saved and resumed by the caller)
    if temperature > 0 and seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(int(seed))

    # The active adapters folded into one matmul per layer for the whole decode (lora.merged).
    with merged(model):
        positions = prompt_positions(model, batch)  # [3, B, L]
        next_pos = positions.amax(dim=(0, 2)) + 1  # [B] position of the first new token
        images = {k: batch[k] for k in ("pixel_values", "image_grid_thw") if k in batch}
        cache = DynamicCache() if use_cache else None

        tokens, logprobs = [], []
        done = torch.zeros(B, dtype=torch.bool, device=device)
        ids, pos, mask = input_ids, positions, attention_mask
        for step in range(max_new_tokens):
            if use_cache and step > 0:  # feed only the newest token; the cache holds the rest
                out = model(input_ids=ids[:, -1:], attention_mask=mask, position_ids=pos[:, :, -1:],
                            past_key_values=cache, use_cache=True, logits_to_keep=1)
            else:  # the prompt (cached path) or the whole sequence every step (reference path)
                out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                            use_cache=use_cache, logits_to_keep=1, **images)
            logits = out.logits[:, -1].float()
            if banned:
                logits[:, banned] = float("-inf")
            if temperature > 0:
                logp = torch.log_softmax(logits / temperature, dim=-1)
                tok = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)
            else:
                logp = torch.log_softmax(logits, dim=-1)
                tok = logp.argmax(dim=-1)
            lp = logp.gather(1, tok[:, None]).squeeze(1)
            tok = torch.where(done, torch.full_like(tok, pad_id), tok)
            tokens.append(tok)
            logprobs.append(torch.where(done, torch.zeros_like(lp), lp))
            was_done = done
            done = done | torch.isin(tok, stops)
            ids = torch.cat([ids, tok[:, None]], dim=1)
            # Finished rows keep attending to their own prefix; their outputs are discarded.
            mask = torch.cat([mask, (~was_done).long()[:, None]], dim=1)
            pos = torch.cat([pos, (next_pos + step).view(1, B, 1).expand(3, B, 1)], dim=2)
            if done.all():
                break

    tokens = torch.stack(tokens, dim=1) if tokens else input_ids.new_zeros(B, 0)
    logprobs = torch.stack(logprobs, dim=1) if logprobs else torch.zeros(B, 0, device=device)
    # mask: every token up to and including the first stop token (all of them if none was produced).
    is_stop = torch.isin(tokens, stops)
    after_stop = (is_stop.long().cumsum(1) - is_stop.long()) > 0
    out_mask = (~after_stop).long()
    texts = [tokenizer.decode(row[m.bool()].tolist(), skip_special_tokens=True) for row, m in zip(tokens, out_mask)]
    return GenerationOutput(tokens=tokens, mask=out_mask, logprobs=logprobs * out_mask, texts=texts)
