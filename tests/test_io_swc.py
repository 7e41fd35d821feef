# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import os
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurolink_monai.io import (
    SWCError,
    first_tree,
    read_swc,
    sort_swc,
    swc_to_physical,
    swc_to_voxel,
    validate_swc,
    write_swc,
)

FOREST = """# a comment line
# id type x y z radius parent

1 1 10.5 20 3 2.0 -1
2 3 11 21 3 1.5 1   extra-column ignored
3 3 12 22 4 1.0 2
   4 3 11 19.25 2 1.0 1
10 2 40 40 5 0.5 -1
11 2 41 40 5 0.5 10
"""


def _write(tmp_path, text: str | bytes, name: str = "t.swc"):
    p = tmp_path / name
    (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
    return p


def test_read_forest_comments_blank_extra_columns(tmp_path):
    swc = read_swc(_write(tmp_path, FOREST))
    assert swc.shape == (6, 7) and swc.dtype == np.float64
    np.testing.assert_array_equal(swc[:, 0], [1, 2, 3, 4, 10, 11])
    np.testing.assert_array_equal(swc[:, 6], [-1, 1, 2, 1, -1, 10])
    np.testing.assert_allclose(swc[3, 2:6], [11, 19.25, 2, 1.0])
    assert (swc[:, 6] == -1).sum() == 2  # a forest is allowed


def test_empty_file_gives_empty_array(tmp_path):
    assert read_swc(_write(tmp_path, "# only comments\n\n")).shape == (0, 7)


@pytest.mark.parametrize(
    "body, line, words",
    [
        ("1 1 0 0 0 1 -1\n1 3 1 1 1 1 1\n", 3, ["duplicate node id 1", "line 2"]),
        ("1 1 0 0 0 1 -1\n2 3 1 1 1 1 7\n", 3, ["parent id 7", "not defined"]),
        ("1 1 0 0 0 1 -1\n2 3 1 1 1 1 3\n3 3 1 1 1 1 2\n", 3, ["cycle"]),
        ("1 1 0 0 0 1 1\n", 2, ["cycle"]),
        ("1 1 0 0 0 1 -1\n2 3 nan 1 1 1 1\n", 3, ["non-finite x"]),
        ("1 1 0 0 inf 1 -1\n", 2, ["non-finite z"]),
        ("1 1 0 0 0 -0.5 -1\n", 2, ["negative radius"]),
        ("1 1 0 0 0 1\n", 2, ["expected 7 columns", "got 6"]),
        ("1 1 zero 0 0 1 -1\n", 2, ["non-numeric"]),
        ("1.5 1 0 0 0 1 -1\n", 2, ["id must be an integer"]),
        ("1 1 0 0 0 1 -3\n", 2, ["parent id -3"]),
    ],
)
def test_invalid_files_name_file_and_line(tmp_path, body, line, words):
    p = _write(tmp_path, "# header\n" + body)
    with pytest.raises(SWCError) as err:
        read_swc(p)
    msg = str(err.value)
    assert str(p) in msg and f"line {line}" in msg
    for w in words:
        assert w in msg
    assert isinstance(err.value, ValueError)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_swc(tmp_path / "nope.swc")


def test_writer_orders_parents_first_and_round_trip_is_lossless(tmp_path):
    # children listed before parents, ids out of order, two trees
    swc = np.array(
        [
            [7, 3, 1.1, 2.2, 3.3, 0.7, 5],
            [9, 2, 9.0, 9.0, 9.0, 1.0, -1],
            [5, 1, 0.1, 0.2, 0.3, 2.5, -1],
            [8, 3, 1.0 / 3.0, 2.0, 3.0, 0.5, 7],
            [6, 3, 4.0, 5.0, 6.0, 1.25, 5],
            [3, 2, 9.5, 9.5, 9.5, 1.0, 9],
        ]
    )
    out = write_swc(tmp_path / "o.swc", swc, header=["written by a test", "second line"])
    back = read_swc(out)
    np.testing.assert_array_equal(back, sort_swc(swc))
    np.testing.assert_array_equal(back[:, 0], np.arange(1, 7))
    parents = back[:, 6].astype(int)
    assert all(p == -1 or p < i for i, p in zip(back[:, 0].astype(int), parents))  # parents first
    # trees are contiguous blocks starting at their single root
    roots = np.flatnonzero(parents == -1)
    assert list(roots) == [0, 2]  # trees in the order of their roots in the input: 9 (2 nodes), then 5
    # same nodes and the same edges, compared through the (unique) coordinates
    by_xyz = {tuple(r[2:6]): r for r in swc}
    old_xyz = {r[0]: tuple(r[2:6]) for r in swc}
    for r in back:
        old = by_xyz[tuple(r[2:6])]
        assert old[1] == r[1]
        if r[6] == -1:
            assert old[6] == -1
        else:
            assert tuple(back[int(r[6]) - 1, 2:6]) == old_xyz[old[6]]
    text = out.read_text()
    assert text.startswith("# written by a test\n# second line\n")
    assert "0.3333333333333333" in text  # shortest exact float repr
    # writing an already sorted array is the identity
    write_swc(tmp_path / "o2.swc", back)
    np.testing.assert_array_equal(read_swc(tmp_path / "o2.swc"), back)


def test_write_never_uses_exponent_notation(tmp_path):
    swc = np.array([[1, 3, 9.5367431640625e-07, 1e16, -2.5e-12, 1e-300, -1], [2, 3, 0.1, 400.0, 1 / 3, 2.0, 1]])
    text = write_swc(tmp_path / "tiny.swc", swc).read_text()
    assert "e" not in text.split("\n", 1)[1]  # the DIADEM scorer reads no "9.5e-07"
    assert "0.00000095367431640625 10000000000000000 -0.0000000000025" in text
    np.testing.assert_array_equal(read_swc(tmp_path / "tiny.swc"), swc)


def test_real_files_round_trip(tmp_path, diadem_dir):
    for k in (1, 2, 3):
        swc = read_swc(diadem_dir / f"OP_{k}.swc")
        assert swc.shape[0] > 100 and (swc[:, 6] == -1).sum() >= 1
        write_swc(tmp_path / f"OP_{k}.swc", swc)
        np.testing.assert_array_equal(read_swc(tmp_path / f"OP_{k}.swc"), sort_swc(swc))


def test_write_invalid_array_raises_and_writes_nothing(tmp_path):
    bad = np.array([[1, 1, 0, 0, 0, 1, -1], [2, 1, 0, 0, 0, -1, 1]], dtype=float)
    with pytest.raises(SWCError, match="row 1: negative radius"):
        write_swc(tmp_path / "bad.swc", bad)
    with pytest.raises(SWCError, match=r"shape \(N, 7\)"):
        write_swc(tmp_path / "bad.swc", np.zeros((3, 6)))
    assert os.listdir(tmp_path) == []


def test_write_is_atomic_and_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "keep.swc"
    p.write_text("1 1 0 0 0 1 -1\n")
    with pytest.raises(SWCError):
        write_swc(p, np.array([[1, 1, 0, 0, 0, 1, 5]], dtype=float))
    assert p.read_text() == "1 1 0 0 0 1 -1\n"
    write_swc(p, np.array([[1, 1, 2, 3, 4, 1, -1]], dtype=float))
    assert sorted(os.listdir(tmp_path)) == ["keep.swc"]  # no temporary left behind


def test_validate_and_cycles_in_big_chain():
    n = 5000
    swc = np.zeros((n, 7))
    swc[:, 0] = np.arange(1, n + 1)
    swc[:, 6] = np.arange(0, n)
    swc[0, 6] = -1
    validate_swc(swc)
    swc[0, 6] = n  # closes a cycle through every node
    with pytest.raises(SWCError, match="cycle"):
        validate_swc(swc)


def test_first_tree_follows_the_first_root_in_any_row_order():
    # two trees interleaved: ids 1, 3, 4 form the first (root 1), ids 2, 5 the second (root 2)
    swc = np.array(
        [
            [4, 3, 4.0, 0, 0, 1, 3],
            [1, 3, 0.0, 0, 0, 1, -1],
            [2, 3, 9.0, 9, 9, 1, -1],
            [5, 3, 9.0, 9, 8, 1, 2],
            [3, 3, 2.0, 0, 0, 1, 1],
        ]
    )
    tree = first_tree(swc)
    np.testing.assert_array_equal(tree[:, 2], [0.0, 2.0, 4.0])  # root, then parents before children
    np.testing.assert_array_equal(tree[:, 6], [-1, 1, 2])
    np.testing.assert_array_equal(first_tree(swc[[1, 4, 0]]), tree)  # one tree: all of it
    assert first_tree(np.zeros((0, 7))).shape == (0, 7)
    with pytest.raises(SWCError, match="parent"):
        first_tree(np.array([[1, 3, 0.0, 0, 0, 1, 7]]))


def test_physical_voxel_conversion():
    swc = np.array([[1, 1, 10, 20, 5, 2, -1]], dtype=float)
    phys = swc_to_physical(swc, (1.0, 0.5, 0.25))
    np.testing.assert_allclose(phys[0, 2:6], [2.5, 10.0, 5.0, 0.5])
    np.testing.assert_allclose(swc_to_voxel(phys, (1.0, 0.5, 0.25)), swc)
    with pytest.raises(ValueError, match="spacing"):
        swc_to_physical(swc, (1.0, 0.0, 1.0))


def _check_result(path):
    try:
        swc = read_swc(path)
    except SWCError:
        return
    assert swc.ndim == 2 and swc.shape[1] == 7 and swc.dtype == np.float64
    assert np.isfinite(swc).all() and (swc[:, 5] >= 0).all()
    validate_swc(swc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_fuzz_random_bytes(tmp_path, data):
    p = tmp_path / "fuzz.swc"
    p.write_bytes(data)
    _check_result(p)


_TOKENS = ["-1", "0", "1", "2", "1e400", "nan", "-inf", "3.5", "#", "x", "\x00", "1_0", "\t", "  ", "-0.0", "9" * 30]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, 40), st.integers(0, 8), st.sampled_from(_TOKENS), st.sampled_from(["set", "del", "dup"])
        ),
        max_size=6,
    )
)
def test_fuzz_mutations_of_valid_file(tmp_path, edits):
    lines = [ln.split() for ln in FOREST.splitlines()]
    for row, col, token, op in edits:
        if not lines:
            break
        r = row % len(lines)
        if op == "dup":
            lines.insert(r, list(lines[r]))
        elif op == "del" and lines[r]:
            del lines[r][col % len(lines[r])]
        elif lines[r]:
            lines[r][col % len(lines[r])] = token
        else:
            lines[r] = [token]
    p = tmp_path / "mut.swc"
    p.write_text("\n".join(" ".join(ln) for ln in lines), encoding="utf-8")
    _check_result(p)


def test_fuzz_mutations_of_real_file(tmp_path, diadem_dir):
    raw = (diadem_dir / "OP_3.swc").read_bytes()
    rng = random.Random(0)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(60):
        b = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            action = rng.random()
            if action < 0.5:
                b[i] = rng.randrange(256)
            elif action < 0.75:
                del b[i : i + rng.randint(1, 20)]
            else:
                b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 5)))
        p = tmp_path / "m.swc"
        p.write_bytes(bytes(b))
        try:
            swc = read_swc(p)
            validate_swc(swc)
            outcomes["ok"] += 1
        except SWCError as e:
            assert str(p) in str(e)
            outcomes["error"] += 1
    assert outcomes["error"] > 0, outcomes  # the mutations do break the file, and every break is a clear SWCError
