"""Generation, BFS optimality (against exhaustive search under an independent simulator), text views."""

import itertools
import json
import random
import re

import pytest

import puzzles
from puzzles import TASKS, get_task
from puzzles.grid import cells_text

MOVE = {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}


def reference_run(name, state, actions):
    """DESIGN §3 written out directly (no shared code with puzzles/): (success, illegal kind)."""
    n = state["size"]
    if name in ("frozenlake", "maze"):
        pos = tuple(state["start"])
        goal = tuple(state["goal"] if name == "frozenlake" else state["target"])
        holes = {tuple(h) for h in state.get("holes", [])}
        for a in actions:
            nxt = (pos[0] + MOVE[a][0], pos[1] + MOVE[a][1])
            if not (0 <= nxt[0] < n and 0 <= nxt[1] < n):
                return False, "off_grid"
            if name == "frozenlake" and nxt in holes:
                return False, "hole"
            if name == "maze" and a not in state["open"][pos[0]][pos[1]]:
                return False, "wall"
            pos = nxt
            if pos == goal:
                return True, None
        return False, None
    pos, carrying = tuple(state["agent"]), False
    printer, table = tuple(state["printer"]), {tuple(t) for t in state["table"]}
    adjacent = lambda p, q: abs(p[0] - q[0]) + abs(p[1] - q[1]) == 1  # noqa: E731
    for a in actions:
        if a == "PICK":
            if carrying or not adjacent(pos, printer):
                return False, "pick"
            carrying = True
        elif a == "DROP":
            if not carrying or not any(adjacent(pos, t) for t in table):
                return False, "drop"
            return True, None
        else:
            nxt = (pos[0] + MOVE[a][0], pos[1] + MOVE[a][1])
            if not (0 <= nxt[0] < n and 0 <= nxt[1] < n):
                return False, "off_grid"
            if nxt in table:
                return False, "table"
            if nxt == printer and not carrying:
                return False, "printer"
            pos = nxt
    return False, None


@pytest.mark.parametrize("name", list(TASKS))
def test_generate_is_deterministic_valid_and_solved_optimally_by_the_verifier(name):
    task = get_task(name)
    for level in task.levels:
        a = [task.generate(level, random.Random(f"s{level}")) for _ in range(3)]
        b = [task.generate(level, random.Random(f"s{level}")) for _ in range(3)]
        assert json.dumps(a) == json.dumps(b)
        rng = random.Random(level)
        for _ in range(60):
            state = task.generate(level, rng)
            json.dumps(state)  # JSON-able
            task.validate(state)
            assert state["size"] == level
            plan = task.solve(state)
            out = task.verify(state, plan)
            assert out.parse_ok and out.success and out.optimal and out.illegal is None
            assert out.steps == out.n_actions == len(plan)
            assert reference_run(name, state, plan) == (True, None)
            if name == "frozenlake":
                assert len(plan) >= 2
            if name == "minibehaviour":
                assert plan.count("PICK") == 1 and plan[-1] == "DROP"


@pytest.mark.parametrize("name,level,max_len,n_puzzles", [
    ("frozenlake", 3, 6, 8), ("frozenlake", 4, 6, 6), ("maze", 3, 6, 8), ("maze", 4, 6, 6), ("minibehaviour", 5, 5, 6),
])
def test_bfs_is_optimal_against_exhaustive_search(name, level, max_len, n_puzzles):
    """Every action string up to the BFS length: none shorter succeeds, and the verifier agrees with
    an independent simulator on every single one (success and illegal kind)."""
    task, rng, checked = get_task(name), random.Random(7), 0
    while checked < n_puzzles:
        state = task.generate(level, rng)
        best = len(task.solve(state))
        if best > max_len:
            continue
        checked += 1
        shortest = None
        for k in range(1, best + 1):
            for actions in itertools.product(task.actions, repeat=k):
                actions = list(actions)
                ok, illegal = reference_run(name, state, actions)
                out = task.verify(state, actions)
                assert (out.success, out.illegal) == (ok, illegal), (state, actions)
                assert out.optimal == (ok and k == best)
                if ok and shortest is None:
                    shortest = k
        assert shortest == best


def test_extra_actions_after_the_goal_are_success_but_not_optimal():
    for name, task in TASKS.items():
        state = task.generate(min(task.levels), random.Random(1))
        plan = task.solve(state)
        if name == "minibehaviour":
            continue  # the DROP ends the episode: covered in test_puzzles_verify
        out = task.verify(state, plan + [plan[-1]] * 3)
        assert out.success and not out.optimal and out.steps == len(plan) and out.n_actions == len(plan) + 3


def test_symbolic_text_formats():
    fl = {"size": 4, "start": [0, 0], "goal": [2, 3], "holes": [[0, 3], [1, 1]]}
    assert TASKS["frozenlake"].symbolic_text(fl) == (
        "S . . H\n. H . .\n. . . G\n. . . .\n"
        "start ( 0 , 0 ) goal ( 2 , 3 )")
    maze = {"size": 3, "start": [0, 0], "target": [2, 2],
            "open": [["DR", "LR", "DL"], ["UD", "D", "UD"], ["UR", "UL", "U"]]}
    TASKS["maze"].validate(maze)
    assert TASKS["maze"].symbolic_text(maze) == (
        "DR LR DL\nUD D UD\nUR UL U\nstart ( 0 , 0 ) target ( 2 , 2 )")
    mb = {"size": 5, "agent": [0, 2], "printer": [3, 1], "table": [[1, 2], [1, 3], [1, 4], [2, 2], [2, 3], [2, 4]]}
    assert TASKS["minibehaviour"].symbolic_text(mb) == (
        ". . A . .\n. . T T T\n. . T T T\n"
        ". P . . .\n. . . . .\nagent ( 0 , 2 ) printer ( 3 , 1 ) table ( 1 , 2 ) to ( 2 , 4 )")


def _cells(text):
    return sorted([int(r), int(c)] for r, c in re.findall(r"\( (\d+) , (\d+) \)", text))


def state_from_perception(name, qa):
    """Rebuild the full state from the gold perception answers alone."""
    a = dict(qa)
    if name == "frozenlake":
        return {"size": int(a["what is the grid size ?"].split("x")[0]), "start": _cells(a["where is the start ?"])[0],
                "goal": _cells(a["where is the goal ?"])[0], "holes": _cells(a["which cells are holes ?"])}
    if name == "maze":
        n = int(a["what is the grid size ?"].split("x")[0])
        return {"size": n, "start": _cells(a["where is the start ?"])[0], "target": _cells(a["where is the target ?"])[0],
                "open": [row.split() for row in a[puzzles.RESTATE].split("\n")[:n]]}
    n = int(a["what is the room size ?"].split("x")[0])
    (r0, c0), (r1, c1) = _cells(a["where is the table ?"])
    return {"size": n, "agent": _cells(a["where is the agent ?"])[0], "printer": _cells(a["where is the printer ?"])[0],
            "table": [[r, c] for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]}


@pytest.mark.parametrize("name", list(TASKS))
def test_perception_answers_determine_the_state(name):
    task, rng = get_task(name), random.Random(3)
    for _ in range(50):
        state = task.generate(rng.choice(task.levels), rng)
        qa = task.perception(state)
        assert 4 <= len(qa) <= 10 and len({q for q, _ in qa}) == len(qa)
        assert all(isinstance(x, str) and x for pair in qa for x in pair)
        assert qa[0] == (puzzles.RESTATE, task.symbolic_text(state))  # the one multi-line answer
        assert all("\n" not in x for pair in qa[1:] for x in pair)
        assert task.canonical(state_from_perception(name, qa)) == task.canonical(state)
        legal = dict(qa)[qa[-1][0]].split(" : ")[-1].split()  # after the look around, where one is written
        assert legal == [x for x in task.actions if task.verify(state, [x]).illegal is None] or legal == ["none"]


def _look_around_reference(grid, cell):
    """Each direction's neighbour written out by hand: (direction, (r, c) or None off the grid, symbol)."""
    (r, c), n = cell, len(grid)
    seen = [("U", (r - 1, c)), ("D", (r + 1, c)), ("L", (r, c - 1)), ("R", (r, c + 1))]
    return [(a, (i, j), grid[i][j]) if 0 <= i < n and 0 <= j < n else (a, None, None) for a, (i, j) in seen]


@pytest.mark.parametrize("name, question, cell_key", [("frozenlake", "which moves are legal from the start ?", "start"),
                                                      ("minibehaviour", "which actions are legal for the agent ?", "agent"),
                                                      ("minibehaviour", "which cells are adjacent to the printer ?", "printer")])
def test_neighbour_answers_look_around_first_and_agree_with_the_rules(name, question, cell_key):
    """A neighbour question is answered as 'U ( r , c ) X D none … : answer': the four neighbours and
    their grid symbols, then the gold answer, which must follow from them."""
    task, rng = get_task(name), random.Random(7)
    for _ in range(60):
        state = task.generate(rng.choice(task.levels), rng)
        working, answer = dict(task.perception(state))[question].split(" : ")
        words, seen = working.split(), _look_around_reference(task.grid(state), tuple(state[cell_key]))
        expected = []
        for a, cell, symbol in seen:
            expected += [a, "none"] if cell is None else [a, "(", str(cell[0]), ",", str(cell[1]), ")", symbol]
        assert words == expected
        if question.startswith("which cells"):  # free neighbours: not the table, not off the grid
            assert answer == cells_text(cell for _, cell, symbol in seen if cell and symbol != "T") or answer == "none"
        else:  # a move is legal onto a free cell; PICK when the printer is next door
            free = {".", "G"}
            legal = [a for a, _, symbol in seen if symbol in free] + ["PICK"] * any(s == "P" for *_, s in seen)
            assert answer == (" ".join(legal) or "none")


def test_holes_answer_scans_every_row_and_places_each_hole():
    """'which cells are holes ?' is answered by a scan: 'row r' then each cell's column and symbol,
    every hole followed by its coordinates — built here cell by cell from the grid."""
    task, rng = get_task("frozenlake"), random.Random(11)
    for _ in range(60):
        state = task.generate(rng.choice(task.levels), rng)
        expected = []
        for r, row in enumerate(task.grid(state)):
            expected += ["row", str(r)]
            for c, symbol in enumerate(row):
                expected += [str(c), symbol] + (["(", str(r), ",", str(c), ")"] if [r, c] in state["holes"] else [])
        assert dict(task.perception(state))["which cells are holes ?"].split() == expected


def test_get_task_names_the_valid_tasks():
    with pytest.raises(ValueError, match="frozenlake, maze, minibehaviour"):
        puzzles.get_task("sokoban")
    for task in TASKS.values():
        with pytest.raises(ValueError):
            task.generate(task.levels.stop, random.Random(0))


def test_blind_plan_ignores_obstacles_and_is_shortest_on_the_empty_grid():
    for name, task in TASKS.items():
        rng = random.Random(5)
        for _ in range(30):
            state = task.generate(rng.choice(task.levels), rng)
            plan = task.blind_plan(state)
            moves = [a for a in plan if a in MOVE]
            if name == "minibehaviour":
                assert plan.count("PICK") == plan.count("DROP") == 1 and plan[-1] == "DROP"
            else:
                goal = state["goal"] if name == "frozenlake" else state["target"]
                dist = abs(goal[0] - state["start"][0]) + abs(goal[1] - state["start"][1])
                assert len(moves) == dist and len(plan) <= len(task.solve(state))
