"""The three prompts of MGSD and the response format they share.

- student prompt  x_S: task instruction + the puzzle image (what the model sees at inference),
- teacher prompt  x_T: task instruction + the symbolic state as text (+ the reference plan),
- perception prompt:   the image + one perception question (grounding data, perception eval).

The mini model gets no instructions: the task name stands in for them (`instructed`).

The response to a planning prompt restates the state, then gives the plan in an answer block:

    <symbolic state text>
    <answer>R R D L</answer>

so the image-only student learns "recover the state, then plan", and the teacher — which reads the
same state text in its prompt — can score that restatement token by token.

Chat messages use the Hugging Face multimodal format: a user turn is a list of parts,
`{"type": "image"}` or `{"type": "text", "text": ...}`; the processor's chat template inserts the
vision tokens where the image part is.
"""

from __future__ import annotations

import puzzles

# Instructions for a model that has never seen the puzzles (the Qwen backbones): the symbols of the
# state text, and what the actions do. The mini model gets none of them (`instructed`): pretrained
# from scratch on the task name + state, it has no use for words it never learned, and dropping them
# almost halves its sequences, which on a CPU is almost half the cost of every step.
RULES = {
    "frozenlake": "S start , G goal , H hole , . frozen . Go from S to G ; never enter a hole or leave the grid . "
                  "Actions : U D L R .",
    "maze": "Each cell lists its open sides . Go from start to target through open sides only . Actions : U D L R .",
    "minibehaviour": "A agent , P printer , T table , . floor . PICK the printer from next to it , then DROP it "
                     "next to the table ; both block moves . Actions : U D L R PICK DROP .",
}
ANSWER_FORMAT = "Restate the state , then plan inside <answer> </answer> ."
PERCEPTION_FORMAT = "Answer with the exact value only ."
# Tasks whose grid marks every object, so their state text is complete without its last line, the
# coordinates (a maze grid lists open sides only: its start and target are in that line alone).
GRID_MARKS_ALL = ("frozenlake", "minibehaviour")
ANSWER_OPEN = "<answer>"  # opens the plan in every response
# The mini tokenizer has a few hundred puzzle words; every real backbone has far more.
MINI_VOCAB_LIMIT = 4096


def instructed(processor) -> bool:
    """Whether a model's prompts carry the instructions: yes for every backbone but the mini model."""
    return len(processor.tokenizer) > MINI_VOCAB_LIMIT


def plan_text(actions: list[str]) -> str:
    """The canonical way to write a plan: action tokens separated by single spaces."""
    return " ".join(actions)


def response(task: str, state: dict, plan: list[str]) -> str:
    """The target response for a planning prompt: restated state, then the plan."""
    return f"{state_text(task, state)}\n{ANSWER_OPEN}{plan_text(plan)}</answer>"


def state_text(task: str, state: dict, coordinates: bool = True) -> str:
    """The symbolic state text; without `coordinates`, only its grid (GRID_MARKS_ALL tasks only)."""
    text = puzzles.get_task(task).symbolic_text(state)
    if coordinates:
        return text
    if task not in GRID_MARKS_ALL:
        raise ValueError(f"the {task} grid does not mark every object: its state text needs the coordinates line")
    return text.rsplit("\n", 1)[0]


def student_prompt(task: str, instructions: bool = True) -> list[dict]:
    """Chat messages of x_S: the instruction and the image (passed to the processor separately)."""
    text = f"Solve this {task} puzzle shown in the image . {RULES[task]} {ANSWER_FORMAT}" if instructions else task
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def teacher_prompt(task: str, state: dict, reference_plan: list[str] | None = None,
                   instructions: bool = True, coordinates: bool = True) -> list[dict]:
    """Chat messages of x_T: the instruction, optionally the reference plan, and the symbolic state
    (`coordinates`: see state_text).

    The plan comes before the state, so that the state always ends the prompt, right before the
    response that restates it: a mini base pretrained with the plan after the state restated
    FrozenLake 5 grids correctly only 30 % of the time (100 % without a plan; README, "Status")."""
    head = f"Solve this {task} puzzle . {RULES[task]}" if instructions else task
    if reference_plan is not None:
        head += f"\nReference plan : {plan_text(reference_plan)}"
    text = f"{head}\n{state_text(task, state, coordinates)}"
    if instructions:
        text += f"\n{ANSWER_FORMAT}"
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


def task_prompt(task: str) -> list[dict]:
    """Chat messages naming the task and nothing else (stage 0's own-state prompts: the base is made
    to write a state it was not shown, then to plan from what it wrote — as the image student must)."""
    return [{"role": "user", "content": [{"type": "text", "text": task}]}]


def image_question(text: str) -> list[dict]:
    """Chat messages of a question about one image."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def perception_prompt(task: str, question: str, instructions: bool = True) -> list[dict]:
    """Chat messages of one perception question about the puzzle image."""
    return image_question(f"This is a {task} puzzle . {question} {PERCEPTION_FORMAT}" if instructions
                          else f"{task} {question}")


def state_question(task: str, state: dict, question: str, instructions: bool = False) -> list[dict]:
    """Chat messages of a perception question asked about the symbolic state (stage 0's text form of
    the question, eval's text-perception): the state text stands where perception_prompt has the image."""
    text = (f"This is a {task} puzzle . {RULES[task]}\n{state_text(task, state)}\n{question} {PERCEPTION_FORMAT}" if instructions
            else f"{state_text(task, state)}\n{task} {question}")
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


def with_response(messages: list[dict], text: str) -> list[dict]:
    """Append the assistant turn (the training target) to a prompt."""
    return messages + [{"role": "assistant", "content": [{"type": "text", "text": text}]}]
