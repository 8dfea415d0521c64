"""Scoring model answers against puzzle records: per (task, level) rates and the macro summary.

Every record counts: a record with no answer is scored as an empty response (a parse failure),
never dropped. Success on the *detour* subset (puzzles the obstacle-blind plan fails) is reported
next to plain success, because the blind plan alone already solves most easy puzzles.
"""

from __future__ import annotations

from collections import defaultdict

from rich.table import Table

from puzzles import check, get_task


def _mean(xs):
    return sum(xs) / len(xs) if xs else None


def score(records: list[dict], responses: dict[str, str]) -> dict:
    """{"tasks": {task: {...macro over levels, "levels": {level: rates}}}, "macro": {...}, "cases": [...]}."""
    groups = defaultdict(list)
    cases = []
    for rec in records:
        task = get_task(rec["task"])
        out = check(task, rec["state"], responses.get(rec["id"], ""))
        blind_ok = task.verify(rec["state"], rec.get("blind_plan") or task.blind_plan(rec["state"])).success
        case = {"id": rec["id"], "task": task.name, "level": rec["level"], "answered": rec["id"] in responses,
                "parse_ok": out.parse_ok, "success": out.success, "optimal": out.optimal, "illegal": out.illegal,
                "steps": out.steps, "n_actions": out.n_actions, "blind_success": blind_ok}
        cases.append(case)
        groups[task.name, rec["level"]].append(case)

    tasks: dict[str, dict] = {}
    for (name, level), cs in sorted(groups.items()):
        detour = [c for c in cs if not c["blind_success"]]
        rates = {"n": len(cs), "parse_rate": _mean([c["parse_ok"] for c in cs]),
                 "success": _mean([c["success"] for c in cs]), "optimal": _mean([c["optimal"] for c in cs]),
                 "illegal_rate": _mean([c["illegal"] is not None for c in cs]),
                 "blind_success": _mean([c["blind_success"] for c in cs]),
                 "detour_success": _mean([c["success"] for c in detour]), "n_detour": len(detour),
                 "missing": sum(not c["answered"] for c in cs)}
        tasks.setdefault(name, {"levels": {}})["levels"][str(level)] = rates
    for ts in tasks.values():  # per-task numbers: unweighted mean over levels
        levels = ts["levels"].values()
        for key in ("parse_rate", "success", "optimal", "illegal_rate", "blind_success", "detour_success"):
            ts[key] = _mean([v[key] for v in levels if v[key] is not None])
        ts["n"] = sum(v["n"] for v in levels)
    macro = {key: _mean([ts[key] for ts in tasks.values() if ts[key] is not None])
             for key in ("success", "optimal", "detour_success")}
    return {"tasks": tasks, "macro": macro, "cases": cases}


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def table(summary: dict) -> Table:
    m = summary["macro"]
    t = Table(title=f"macro success {_pct(m['success'])} %  optimal {_pct(m['optimal'])} %  "
                    f"detour success {_pct(m['detour_success'])} %", title_justify="left")
    for col in ("task", "level", "cases", "missing", "parse %", "success %", "optimal %", "illegal %",
                "blind %", "detour %", "detour n"):
        t.add_column(col, justify="left" if col == "task" else "right")
    for name, ts in summary["tasks"].items():
        t.add_row(name, "all", str(ts["n"]), "", _pct(ts["parse_rate"]), _pct(ts["success"]), _pct(ts["optimal"]),
                  _pct(ts["illegal_rate"]), _pct(ts["blind_success"]), _pct(ts["detour_success"]), "", style="bold")
        for level, s in ts["levels"].items():
            t.add_row("", level, str(s["n"]), str(s["missing"]), _pct(s["parse_rate"]), _pct(s["success"]),
                      _pct(s["optimal"]), _pct(s["illegal_rate"]), _pct(s["blind_success"]),
                      _pct(s["detour_success"]), str(s["n_detour"]))
    return t
