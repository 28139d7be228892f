"""benchmarks/compare_results.py: two runs' tables compared as text, timing columns left out."""

from pipeline_utils import load_benchmark

compare = load_benchmark("compare_results")


def _run(root, tables: dict[str, str]):
    for name, text in tables.items():
        path = root / "results" / "mini" / "tables" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_tables_equal_but_for_time_pass_and_a_last_digit_fails(tmp_path, capsys):
    base = {"training.csv": "task,acc,wall_time_s\na,0.9639,3.1\n", "regime/map.csv": "task,m\na,0.03\n"}
    before = _run(tmp_path / "before", base)
    same = _run(tmp_path / "same", {**base, "training.csv": "task,acc,wall_time_s\na,0.9639,9.9\n"})
    assert compare.main([str(before), str(same)]) == 0
    digit = _run(tmp_path / "digit", {**base, "training.csv": "task,acc,wall_time_s\na,0.9638,3.1\n"})
    assert compare.main([str(before), str(digit)]) == 1
    assert "row 0, acc: 0.9639 vs 0.9638" in capsys.readouterr().out
    missing = _run(tmp_path / "missing", {"training.csv": base["training.csv"]})
    assert compare.main([str(before), str(missing)]) == 1
    assert "regime/map.csv: only in the before run" in capsys.readouterr().out
    column = _run(tmp_path / "column", {**base, "regime/map.csv": "task,m,extra\na,0.03,1\n"})
    assert compare.main([str(before), str(column)]) == 1
    # a task whose data changed on purpose: its rows left out, the others still compared
    two = _run(tmp_path / "two", {**base, "training.csv": "task,acc,wall_time_s\na,0.9639,3.1\nb,0.5,1\n"})
    changed = _run(tmp_path / "changed", {**base, "training.csv": "task,acc,wall_time_s\na,0.9639,3.1\nb,0.7,1\n"})
    assert compare.main([str(two), str(changed)]) == 1
    assert compare.main([str(two), str(changed), "--except-task", "b"]) == 0
    assert compare.main([str(two), str(digit), "--except-task", "b"]) == 1
    # a column a deliberate change added: left out, the rest still compared
    added = _run(tmp_path / "added", {**base, "training.csv": "task,acc,new,wall_time_s\na,0.9639,1,3.1\n"})
    assert compare.main([str(before), str(added)]) == 1
    assert compare.main([str(before), str(added), "--except-column", "new"]) == 0


def test_timing_rows_are_left_out_and_the_other_rows_still_compared(tmp_path, capsys):
    """lomp_vs_sota has rows of seconds ("prune time (s)") among its accuracy rows."""
    table = "task,sparsity_%,MP\na,50,96.1\na,prune time (s),0.12\na,60,95.0\n"
    before = _run(tmp_path / "before", {"lomp_vs_sota.csv": table})
    slower = _run(tmp_path / "slower", {"lomp_vs_sota.csv": table.replace("0.12", "0.31")})
    assert compare.main([str(before), str(slower)]) == 0
    changed = _run(tmp_path / "changed", {"lomp_vs_sota.csv": table.replace("95.0", "95.1")})
    assert compare.main([str(before), str(changed)]) == 1
    assert "row 2, MP: 95.0 vs 95.1" in capsys.readouterr().out  # the row index is the table's own
