"""Fuzz: the answer parser, the verifier (through puzzles.check) and the perception scorer read
>= 100,000 random and adversarial strings without raising and within 25 ms of CPU time each (linear, not backtracking)."""

import random
import time

import puzzles
from puzzles.parse import MAX_RESPONSE_CHARS

N_INPUTS = 100_000
PIECES = ["<answer>", "</answer>", "<ANSWER>", "</Answer>", "<answer", "answer>", "<", ">", "/", " ", "\n", "\t",
          "U", "D", "L", "R", "UP", "down", "Left", "RIGHT", "PICK", "DROP", "UDLR", "RRDDLU", ",", ";", "->", "→",
          "( 1 , 2 )", "(0,0)", "3x3", "none", "é", "字", "🙂", "\u200b", "\u202e", "\x00", "\ufffd", "\U0010ffff",
          "<answer><answer>", "</answer></answer>", "<<answer>>", "<answer>U</answer>", "<answer>U D L R</answer>"]


def adversarial(rng: random.Random, i: int) -> str:
    kind = i % 6
    if kind == 0:  # random code points, surrogates excluded (str cannot be UTF-8-encoded with them, but must not crash us either)
        return "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(0, 40)))
    if kind == 1:  # random mixes of the tokens the parser looks for
        return "".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 30)))
    if kind == 2:  # deeply nested / unbalanced tags around plausible plans
        depth = rng.randrange(1, 60)
        return "<answer>" * depth + " ".join(rng.choice("UDLR") for _ in range(rng.randrange(0, 20))) + "</answer>" * rng.randrange(0, depth + 2)
    if kind == 3:  # random ASCII
        return "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(0, 80)))
    if kind == 4:  # random bytes decoded leniently
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60))).decode("utf-8", "replace")
    # huge inputs: every 1000th a long plan or tag flood around the reading limit, else a medium one
    n = MAX_RESPONSE_CHARS * rng.choice([1, 4, 60]) if i % 1000 == 5 else rng.randrange(100, 3000)
    unit = rng.choice(["U D ", "<answer>", "UDLR", "( 1 , 2 ) ", "<", "字"])
    body = unit * (n // len(unit))
    return rng.choice([f"<answer>{body}</answer>", body, body + "<answer>R</answer>"])


def _call_all(states, text) -> float:
    """Run every reader on `text` (raising on any exception); the CPU time of the slowest call.

    This thread's CPU time: process time would also count torch's worker threads, still spinning
    from earlier tests in the same pytest process."""
    slowest = 0.0
    for name, state in states.items():  # check() = parse_answer() then the verifier
        t0 = time.thread_time()
        outcome = puzzles.check(name, state, text)
        slowest = max(slowest, time.thread_time() - t0)
        assert outcome.parse_ok in (True, False) and outcome.success in (True, False)
    t0 = time.thread_time()
    assert puzzles.score_perception("( 1 , 2 )", text) in (True, False)
    return max(slowest, time.thread_time() - t0)


def test_parser_verifier_and_scorer_survive_100k_adversarial_strings():
    rng = random.Random(0)
    states = {name: puzzles.get_task(name).generate(puzzles.get_task(name).levels[0], random.Random(1)) for name in puzzles.TASKS}
    timings = []
    for i in range(N_INPUTS):
        text = adversarial(rng, i)
        timings.append((_call_all(states, text), text))  # raises on any exception, with that input in the traceback
    # Time bound per input and call, in CPU time (a busy machine does not count): re-time the slowest
    # few, best of 3. Linear parsing of the longest (16k-character) inputs takes ~10 ms; catastrophic
    # regex backtracking would take seconds, so 25 ms catches it without flaking on a loaded machine.
    for _, text in sorted(timings, key=lambda t: t[0], reverse=True)[:20]:
        best = min(_call_all(states, text) for _ in range(3))
        assert best <= 0.025, (len(text), text[:80], best)


def test_fuzz_covers_the_interesting_cases():
    """The generator really produces valid plans, nested tags and over-long inputs (not just noise)."""
    rng = random.Random(0)
    texts = [adversarial(rng, i) for i in range(6000)]
    assert any(len(t) > MAX_RESPONSE_CHARS for t in texts)
    assert any(t.count("<answer>") > 10 for t in texts)
    state = puzzles.get_task("frozenlake").generate(3, random.Random(1))
    assert sum(puzzles.check("frozenlake", state, t).parse_ok for t in texts) > 100
