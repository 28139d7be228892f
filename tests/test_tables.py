"""Tables: the writers and the total-variation distance."""

import numpy as np
import pandas as pd
import pytest

from prunelimit.tables import total_variation, tv_distance_table, write_table


def test_total_variation_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, 200_000)
    assert total_variation(a, a) == 0.0
    assert total_variation(a, a + 5.0, bins=100) == pytest.approx(1.0)  # disjoint supports
    # U[0,1] vs U[0.5,1.5]: densities overlap on half the mass, TV = 1/2
    assert total_variation(a, a + 0.5, bins=300) == pytest.approx(0.5, abs=0.01)
    # N(0,1) vs N(1,1): TV = 2Φ(1/2) − 1 = 0.3829
    x, y = rng.normal(0, 1, 400_000), rng.normal(1, 1, 400_000)
    assert total_variation(x, y, bins=400) == pytest.approx(0.3829, abs=0.01)


def test_tv_distance_table_has_a_row_per_seed_pair():
    rng = np.random.default_rng(1)
    runs = {"t1": {0: rng.normal(size=1000), 1: rng.normal(size=1000), 2: rng.normal(size=1000)},
            "t2": {0: rng.normal(size=500), 3: rng.normal(size=500)}}
    table = tv_distance_table(runs, bins=20)
    assert len(table) == 3 + 1
    assert set(table.columns) >= {"task", "seed_a", "seed_b", "tv_weights", "tv_log_abs_weights"}
    assert (table.tv_weights.between(0, 1)).all()


def test_write_table_three_formats(tmp_path):
    df = pd.DataFrame({"task": ["a_b", "c"], "acc": [0.91234567, 0.5]})
    write_table(df, tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "t.tex")
    assert pd.read_csv(tmp_path / "t.csv").equals(df)
    md = (tmp_path / "t.md").read_text()
    assert "0.9123" in md and md.startswith("| task")
    tex = (tmp_path / "t.tex").read_text()
    assert "\\toprule" in tex and "a\\_b" in tex
