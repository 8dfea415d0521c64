"""Importers reproduce the public benchmarks' own optimal lengths on every shipped sample."""

import json
import random
from pathlib import Path

import pytest

from puzzles import TASKS, get_task
from puzzles.benchmarks import import_visualplanning, import_vsp, vp_maze_state, vsp_state
from puzzles.cli import main

BENCH = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
VSP, VP = BENCH / "vsp-frozenlake-sample", BENCH / "visualplanning-sample"
pytestmark = pytest.mark.skipif(not BENCH.is_dir(), reason="benchmark samples not present")

# shared/benchmarks/README.md: BFS optimal lengths of the VSP sample maps 0, 1, 2 per level.
VSP_LENGTHS = {3: [2, 2, 1], 4: [1, 4, 2], 5: [3, 4, 5], 6: [6, 7, 2], 7: [1, 1, 4], 8: [1, 9, 9]}
FLAT = {(-1, 0): "U", (1, 0): "D", (0, -1): "L", (0, 1): "R"}


def test_vsp_maps_reproduce_the_published_lengths():
    items = import_vsp(VSP)
    assert len(items) == 18
    for item in items:
        assert item.image is not None and item.image.is_file()
        assert len(get_task("frozenlake").solve(item.state)) == VSP_LENGTHS[item.level][int(Path(item.source).stem)]


def test_vsp_table_coordinates():
    state = vsp_state("| | Col 1 | Col 2 | Col 3 |\n| Row 1 | _ | * | _ |\n| Row 2 | # | _ | _ |\n| Row 3 | _ | @ | _ |\n")
    assert state == {"size": 3, "start": [2, 1], "goal": [0, 1], "holes": [[1, 0]]}
    with pytest.raises(ValueError):
        vsp_state("| | Col 1 | Col 2 |\n| Row 1 | _ | * |\n| Row 2 | ? | @ |\n")


def _actions_of_trajectory(task, traj):
    """VisualPlanning input_state -> our action tokens (FrozenLake: cells; MiniBehaviour: [cell, carrying])."""
    if task == "frozenlake":
        traj = [[cell, False] for cell in traj]
    actions = []
    for (a, carrying_a), (b, carrying_b) in zip(traj, traj[1:]):
        if carrying_a != carrying_b:
            actions.append("PICK" if carrying_b else "DROP")
        else:
            actions.append(FLAT[b[0] - a[0], b[1] - a[1]])
    return actions


def test_visualplanning_records_reproduce_lengths_and_trajectories():
    items = import_visualplanning(VP)
    assert {i.task for i in items} == {"frozenlake", "minibehaviour"} and len(items) == 10
    for item in items:
        rel, lineno = item.source.rsplit(":", 1)
        raw = json.loads((VP / rel).read_text().splitlines()[int(lineno) - 1])
        task, meta = get_task(item.task), raw["meta"]
        length = len(task.solve(item.state))
        assert length == len(raw["input_state"]) - 1
        traj = raw["input_state"]
        if item.task == "frozenlake":
            n = meta["level"]
            assert length == meta["distance_map"][str(meta["start_pos"])]
            traj = [divmod(s, n) for s in traj]
        out = task.verify(item.state, _actions_of_trajectory(item.task, traj))
        assert out.success and out.optimal  # their optimal trajectory is optimal under our rules


def test_maze_importer_round_trips_our_mazes():
    flags = {"U": "north", "D": "south", "L": "west", "R": "east"}
    rng = random.Random(0)
    for level in TASKS["maze"].levels:
        state = TASKS["maze"].generate(level, rng)
        n = state["size"]
        meta = {"level": n, "start_pos": state["start"][0] * n + state["start"][1],
                "target_pos": state["target"][0] * n + state["target"][1],
                "layout": [[{flags[a]: a not in cell for a in "UDLR"} for cell in row] for row in state["open"]]}
        assert vp_maze_state(meta) == state


def test_import_cli_writes_records_with_sources_and_images(tmp_path):
    assert main(["import", "--format", "vsp", "--path", str(VSP), "--out", str(tmp_path / "vsp")]) == 0
    recs = [json.loads(x) for x in (tmp_path / "vsp/frozenlake/level8/test.jsonl").read_text().splitlines()]
    assert [r["optimal_length"] for r in recs] == VSP_LENGTHS[8]
    for r in recs:
        assert (tmp_path / "vsp/frozenlake/level8" / r["image"]).read_bytes() == (VSP / r["source"].replace("table", "img").replace(".txt", ".png")).read_bytes()
    assert main(["import", "--format", "visualplanning", "--path", str(VP), "--size", "112", "--out", str(tmp_path / "vp")]) == 0
    recs = [json.loads(x) for x in (tmp_path / "vp/minibehaviour/level5/test.jsonl").read_text().splitlines()]
    assert [r["optimal_length"] for r in recs] == [5, 4, 6, 5, 5]  # README: the first 5 records
    assert all(r["source"].startswith("minibehaviour/test_sample.jsonl:") for r in recs)
