"""Reading model answers: the plan inside the last <answer>...</answer> block, and perception scoring.

Both run in time linear in the response length and never raise: they read untrusted model output.
A response longer than MAX_RESPONSE_CHARS is not read at all (a parse failure, a wrong perception
answer), which bounds the time per response to a few milliseconds whatever a model emits.
"""

from __future__ import annotations

import re

# 4x the longest response the presets generate (2,048 tokens of ~2 characters each).
MAX_RESPONSE_CHARS = 16_384
_TAG = re.compile(r"<(/?)answer>", re.IGNORECASE)
# Separators between action tokens: whitespace, punctuation, arrows, dashes, brackets, quotes.
_SEP = re.compile(r"[\s,;:.!?\-\u2010-\u2015>\u2192\u21d2\u27f6=|/\\\[\](){}'\"`*+]+")
_WORDS = {"U": "U", "UP": "U", "D": "D", "DOWN": "D", "L": "L", "LEFT": "L", "R": "R", "RIGHT": "R",
          "PICK": "PICK", "DROP": "DROP"}
_MOVE_LETTERS = frozenset("UDLR")


def answer_block(response: str) -> str | None:
    """Text inside the last complete <answer>...</answer> block (tags case-insensitive), or None."""
    block, opened = None, None
    for m in _TAG.finditer(response):
        if not m.group(1):
            opened = m.end()
        elif opened is not None:
            block, opened = response[opened:m.start()], None
    return block


def parse_answer(response: str, task) -> list[str] | None:
    """The action tokens of the last answer block, or None if there is none or any token is unknown.

    Tokens: U D L R / UP DOWN LEFT RIGHT / PICK DROP (any case, any separators); a run of move
    letters such as "RRDL" is read letter by letter. Tokens the task does not allow (PICK in
    FrozenLake) and empty blocks are parse failures.
    """
    try:
        from puzzles import get_task

        task = get_task(task) if isinstance(task, str) else task
        readable = isinstance(response, str) and len(response) <= MAX_RESPONSE_CHARS
        block = answer_block(response) if readable else None
        if block is None:
            return None
        actions: list[str] = []
        for chunk in _SEP.split(block.upper()):
            if not chunk:
                continue
            word = _WORDS.get(chunk)
            if word is not None and word in task.actions:
                actions.append(word)
            elif _MOVE_LETTERS.issuperset(chunk):
                actions.extend(chunk)
            else:
                return None
        return actions or None
    except Exception:  # untrusted input: a parse failure, never a crash
        return None


_PUNCT = re.compile(r"([(),])")


def normalise(text: str) -> str:
    """Lower case, spaces around ( ) , and single spaces: '(1,2)' and '( 1 , 2 )' read the same."""
    return " ".join(_PUNCT.sub(r" \1 ", text.lower()).split())


def score_perception(gold: str, response: str) -> bool:
    """Exact match of a perception answer (the <answer> block if present) after normalise()."""
    try:
        if len(response) > MAX_RESPONSE_CHARS:
            return False
        block = answer_block(response)
        return normalise(response if block is None else block) == normalise(gold)
    except Exception:
        return False
