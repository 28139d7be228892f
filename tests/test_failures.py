"""Failure behaviour: bad input stops early in one line naming the culprit; a crash leaves its
traceback in the rule's log; a killed write leaves nothing behind for long.
"""

from __future__ import annotations

import os

from prunelimit.io import save_json, save_torch

# ---------------------------------------------------------------------------------------------
# Temporaries of a killed write are removed by the next write of the same target
# ---------------------------------------------------------------------------------------------


def test_next_write_removes_a_killed_writes_temporary(tmp_path):
    target = tmp_path / "model.pt"
    stale = tmp_path / ".model.pt.k1ll3d_x.tmp"  # what SIGKILL during save_torch leaves
    other = tmp_path / ".metrics.json.abcd1234.tmp"  # another target's: not ours to remove
    lookalike = tmp_path / ".model.pt.x.abcd1234.tmp"  # the temporary of a target named model.pt.x
    for path in (stale, other, lookalike):
        path.write_bytes(b"half")
    save_torch({"w": 1}, target)
    assert target.exists() and not stale.exists()
    assert other.exists() and lookalike.exists()
    save_json({"a": 1}, tmp_path / "metrics.json")
    assert not other.exists()
    assert sorted(os.listdir(tmp_path)) == [".model.pt.x.abcd1234.tmp", "metrics.json", "model.pt"]
