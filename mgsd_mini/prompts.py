"""The three prompts of MGSD and the response format they share.

- student prompt  x_S: task instruction + the puzzle image (what the model sees at inference),
- teacher prompt  x_T: task instruction + the symbolic state as text (+ the reference plan),
- perception prompt:   the image + one perception question (grounding data, perception eval).

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

# One terse line of rules per task, so a model that has never seen the puzzle knows what the actions
# do. Terse on purpose: the mini model pays for every prompt token on a CPU.
RULES = {
    "frozenlake": "Go from S to G ; never enter a hole H or leave the grid . Actions : U D L R .",
    "maze": "Go from start to target through open sides only . Actions : U D L R .",
    "minibehaviour": "PICK the printer from next to it , then DROP it next to the table ; both block moves . Actions : U D L R PICK DROP .",
}
ANSWER_FORMAT = "Restate the state , then plan inside <answer> </answer> ."
PERCEPTION_FORMAT = "Answer with the exact value only ."


def plan_text(actions: list[str]) -> str:
    """The canonical way to write a plan: action tokens separated by single spaces."""
    return " ".join(actions)


def response(task: str, state: dict, plan: list[str]) -> str:
    """The target response for a planning prompt: restated state, then the plan."""
    return f"{puzzles.get_task(task).symbolic_text(state)}\n<answer>{plan_text(plan)}</answer>"


def student_prompt(task: str) -> list[dict]:
    """Chat messages of x_S: the instruction and the image (passed to the processor separately)."""
    text = f"Solve this {task} puzzle shown in the image . {RULES[task]} {ANSWER_FORMAT}"
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def teacher_prompt(task: str, state: dict, reference_plan: list[str] | None = None) -> list[dict]:
    """Chat messages of x_T: the instruction, the symbolic state and, optionally, the reference plan."""
    text = f"Solve this {task} puzzle . {RULES[task]}\n{puzzles.get_task(task).symbolic_text(state)}\n"
    if reference_plan is not None:
        text += f"Reference plan : {plan_text(reference_plan)}\n"
    text += ANSWER_FORMAT
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


def image_question(text: str) -> list[dict]:
    """Chat messages of a question about one image."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def perception_prompt(task: str, question: str) -> list[dict]:
    """Chat messages of one perception question about the puzzle image."""
    return image_question(f"This is a {task} puzzle . {question} {PERCEPTION_FORMAT}")


def with_response(messages: list[dict], text: str) -> list[dict]:
    """Append the assistant turn (the training target) to a prompt."""
    return messages + [{"role": "assistant", "content": [{"type": "text", "text": text}]}]
