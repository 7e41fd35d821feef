# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Tracing on constructed cases: gap bridging, parallel tubes, branch points, roots, units, input checks."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from neurolink_monai.io import validate_swc
from neurolink_monai.skeleton import spanning_forest, thin_curves, unbranched_sections, voxel_graph
from neurolink_monai.tracing import (
    TRACE_KEYWORDS,
    BridgeParams,
    LinkParams,
    TraceConfig,
    TraceSWC,
    TraceSWCd,
    bridge_gaps,
    prune_spurs,
    trace_swc,
)

from helpers import tube


def n_trees(swc):
    return int((swc[:, 6] == -1).sum())


def branch_points(swc):
    children = np.bincount(swc[swc[:, 6] > 0, 6].astype(np.int64), minlength=len(swc) + 1)
    return np.flatnonzero(children >= 2)  # SWC ids with two or more children


def broken_tube(k, shape=(16, 20, 72), radius=2.0):
    """A tube along x, y = 10, z = 8 from x = 4 to 67 with a gap of exactly k background voxels from x = 33."""
    m = tube(shape, (8, 10, 4), (8, 10, 32), radius)
    return tube(shape, (8, 10, 33 + k), (8, 10, 67), radius, out=m)


def axis_field(shape, vector, centre_yz=(8, 10), band=3.5):
    """A direction map holding ``vector`` (z, y, x) within ``band`` of the line y = centre_y, z = centre_z."""
    z, y, _ = np.indices(shape)
    near = np.hypot(z - centre_yz[0], y - centre_yz[1]) <= band
    field = np.zeros((3, *shape), dtype=np.float32)
    field[:, near] = np.asarray(vector, dtype=np.float32)[:, None]
    return field


@pytest.mark.parametrize("use_direction", [True, False])
@pytest.mark.parametrize("k", [1, 3, 6, 7, 10])
def test_gap_bridged_up_to_max_gap_and_not_beyond(k, use_direction):
    m = broken_tube(k)
    direction = axis_field(m.shape, (0.0, 0.0, -1.0)) if use_direction else None  # sign-free: -x works too
    swc = trace_swc(m, direction=direction, max_gap=6.0)
    assert n_trees(swc) == (1 if k <= 6 else 2)
    assert swc[:, 2].min() <= 5 and swc[:, 2].max() >= 66  # the trace spans the tube, tips included
    validate_swc(swc)


def test_direction_field_decides_which_ends_face():
    m = broken_tube(3)
    across = axis_field(m.shape, (0.0, 1.0, 0.0))  # claims the neurite runs along y: the ends do not face
    assert n_trees(trace_swc(m, direction=across, max_gap=6.0)) == 2
    assert n_trees(trace_swc(m, direction=axis_field(m.shape, (0.0, 0.0, 1.0)), max_gap=6.0)) == 1


def test_weak_stretch_in_probability_map_is_bridged_along_the_signal():
    prob = broken_tube(0).astype(np.float32) * 0.9
    prob[:, :, 30:40] *= 0.4  # a weak stretch below the threshold but above the background
    prob[8, 3, 36] = 0.45  # a brighter detour off the axis the path must not take
    swc = trace_swc(prob, threshold=0.5, max_gap=12.0)
    assert n_trees(swc) == 1
    gap_nodes = swc[(swc[:, 2] > 31) & (swc[:, 2] < 39)]
    assert len(gap_nodes) > 0 and np.abs(gap_nodes[:, 3] - 10).max() <= 1 and np.abs(gap_nodes[:, 4] - 8).max() <= 1


@pytest.mark.parametrize("end", [67, 50])
def test_parallel_tubes_are_not_merged(end):
    shape = (16, 30, 72)
    m = tube(shape, (8, 10, 4), (8, 10, 30), 2.0)
    m = tube(shape, (8, 10, 34), (8, 10, end), 2.0, out=m)  # gap of 3 in the first tube
    m = tube(shape, (8, 19, 4), (8, 19, 40), 2.0, out=m)
    m = tube(shape, (8, 19, 44), (8, 19, 67), 2.0, out=m)  # gap of 3 in the second tube
    swc = trace_swc(m, max_gap=8.0)
    assert n_trees(swc) == 2
    assert len(branch_points(swc)) == 0
    roots = np.flatnonzero(swc[:, 6] == -1)
    for tree in np.split(swc, roots[1:]):
        assert np.ptp(tree[:, 3]) <= 2  # each tree stays on its own tube (y = 10 or y = 19)


@pytest.mark.parametrize("radius", [1.5, 2.5])
def test_y_branch_gives_one_branch_point(radius):
    shape = (20, 64, 64)
    m = tube(shape, (10, 32, 4), (10, 32, 32), radius)
    m = tube(shape, (10, 32, 32), (10, 8, 58), radius, out=m)
    m = tube(shape, (10, 32, 32), (10, 56, 58), radius, out=m)
    swc = trace_swc(m)
    assert n_trees(swc) == 1
    bps = branch_points(swc)
    assert len(bps) == 1
    x, y, z = swc[bps[0] - 1, 2:5]
    assert np.hypot(x - 32, y - 32) <= 4 and abs(z - 10) <= 1
    children = np.bincount(swc[swc[:, 6] > 0, 6].astype(np.int64), minlength=len(swc) + 1)[1:]
    assert np.count_nonzero(children == 0) + int(children[0] == 1) == 3  # leaves, plus the root when it is a tip


def test_endpoint_facing_the_side_of_a_neurite_becomes_a_branch():
    shape = (16, 40, 64)
    m = tube(shape, (8, 30, 4), (8, 30, 59), 2.0)
    m = tube(shape, (8, 2, 32), (8, 23, 32), 2.0, out=m)  # stops 4 voxels short of the trunk's surface
    swc = trace_swc(m, max_gap=8.0)
    assert n_trees(swc) == 1 and len(branch_points(swc)) == 1
    assert n_trees(trace_swc(m, max_gap=8.0, bridge_to_side=False)) == 2


def test_swc_conventions_nodes_inside_mask_and_radii():
    m = tube((16, 20, 50), (8, 10, 4), (8, 10, 45), 3.0)
    swc = trace_swc(m)
    assert swc.shape[1] == 7 and swc.dtype == np.float64
    np.testing.assert_array_equal(swc[:, 0], np.arange(1, len(swc) + 1))
    parent = swc[:, 6]
    assert (parent[1:] < swc[1:, 0]).all() and parent[0] == -1
    idx = np.round(swc[:, [4, 3, 2]]).astype(int)
    assert m[tuple(idx.T)].all()  # node (x, y, z) lies in voxel [round(z), round(y), round(x)]
    assert abs(np.median(swc[:, 5]) - 3.0) <= 1.0  # EDT radius at the centreline


def test_radii_come_from_the_distance_map():
    m = tube((16, 20, 50), (8, 10, 4), (8, 10, 45), 2.0)
    distance = np.where(m, 2.7, 0.0).astype(np.float32)[None]
    swc = trace_swc(m, distance=distance)
    np.testing.assert_allclose(swc[:, 5], 2.7, rtol=1e-6)
    tiny = trace_swc(m, distance=distance * 0.01, min_radius=0.5)
    np.testing.assert_allclose(tiny[:, 5], 0.5)


def test_soma_root_is_the_thickest_point():
    shape = (24, 48, 80)
    zz, yy, xx = np.indices(shape)
    m = (zz - 12) ** 2 + (yy - 24) ** 2 + (xx - 40) ** 2 <= 36
    m = tube(shape, (12, 24, 4), (12, 24, 40), 1.5, out=m)
    m = tube(shape, (12, 24, 40), (12, 24, 76), 1.5, out=m)
    swc = trace_swc(m)
    assert n_trees(swc) == 1
    assert swc[0, 1] == 1 and swc[0, 6] == -1  # soma type
    assert np.linalg.norm(swc[0, 2:5] - (40, 24, 12)) <= 1.5
    assert (swc[1:, 1] == 3).all()


def test_soma_outside_the_view_roots_each_tree_where_it_enters():
    shape = (24, 48, 80)
    zz, yy, xx = np.indices(shape)
    m = (zz - 12) ** 2 + (yy - 24) ** 2 + (xx - 50) ** 2 <= 36  # a bouton or blob, thicker than any neurite
    m = tube(shape, (12, 24, 0), (12, 24, 50), 1.5, out=m)  # the axon enters at x = 0
    m = tube(shape, (12, 24, 50), (12, 40, 70), 1.5, out=m)
    default = trace_swc(m)
    assert default[0, 1] == 1 and np.linalg.norm(default[0, 2:5] - (50, 24, 12)) <= 1.5  # taken for a soma
    axon = trace_swc(m, soma_in_view=False)
    assert n_trees(axon) == 1 and len(axon) == len(default)
    assert axon[0, 6] == -1 and axon[0, 2] <= 1.0 and abs(axon[0, 3] - 24) <= 1  # rooted at the entry
    assert (axon[:, 1] == 3).all()  # and no node is a soma
    with pytest.raises(TypeError, match="soma_in_view"):
        TraceConfig(soma_in_view="no")


def test_the_brightest_entry_roots_the_tree_and_noise_does_not_pick_it():
    shape = (16, 24, 96)
    m = tube(shape, (8, 12, 0), (8, 12, 95), 2.0)  # enters and leaves the view: two border endpoints
    rng = np.random.default_rng(0)
    noisy = rng.normal(10.0, 2.0, shape).astype(np.float32) + 50.0 * m
    assert trace_swc(m)[0, 2] <= 1.0  # without an image: the tie goes to the first endpoint (x = 0)
    assert trace_swc(m, image=noisy)[0, 2] <= 1.0  # equally bright ends within the noise: the same tie
    brighter_right = noisy + 40.0 * m * (np.arange(shape[2]) >= 60)
    assert trace_swc(m, image=brighter_right)[0, 2] >= 94.0  # the thicker (brighter) neurite is the entry


def test_a_piece_broken_off_its_entry_is_rooted_where_it_continues_it():
    """Axon stacks: a tree that does not reach the border is rooted at its end nearest to the tree that enters
    there, not at its brightest end (a bright branch far out in the arbor)."""
    shape = (16, 48, 120)
    m = tube(shape, (8, 24, 0), (8, 24, 30), 1.5)  # the entry piece
    m = tube(shape, (8, 24, 45), (8, 24, 100), 1.5, out=m)  # the rest of the axon, beyond a 15-voxel gap
    m = tube(shape, (8, 24, 100), (8, 8, 110), 1.5, out=m)
    m = tube(shape, (8, 24, 100), (8, 40, 110), 1.5, out=m)
    image = 10.0 + 50.0 * m
    image[:, 28:48, 101:120] += 100.0 * m[:, 28:48, 101:120]  # one terminal branch brighter than the axon
    default = trace_swc(m, image=image, soma_in_view=False, max_gap=0.0)
    assert n_trees(default) == 2
    roots = default[default[:, 6] == -1]
    assert roots[0, 2] <= 1.0 or roots[1, 2] <= 1.0  # the entry piece is rooted at the border
    loose = roots[roots[:, 2] > 1.0][0]
    assert abs(loose[2] - 45) <= 3 and abs(loose[3] - 24) <= 1  # the end that faces the entry piece
    in_view = trace_swc(m, image=image, max_gap=0.0)  # somata in view: the rules without entries
    assert not any(abs(r[2] - 45) <= 3 for r in in_view[in_view[:, 6] == -1])


def test_user_root_and_single_tree():
    shape = (16, 30, 60)
    m = tube(shape, (8, 8, 4), (8, 8, 55), 2.0)
    m = tube(shape, (8, 22, 10), (8, 22, 40), 2.0, out=m)
    both = trace_swc(m)
    assert n_trees(both) == 2 and np.all(both[: np.flatnonzero(both[:, 6] == -1)[1], 3] == 8)  # largest first
    rooted = trace_swc(m, root=(40.0, 22.0, 8.0))
    assert np.allclose(rooted[0, 2:5], (40, 22, 8), atol=1.0) and rooted[0, 6] == -1
    assert n_trees(rooted) == 2
    single = trace_swc(m, root=(40.0, 22.0, 8.0), single_tree=True)
    assert n_trees(single) == 1 and np.all(single[:, 3] == 22)


def test_physical_units_scale_coordinates_and_radius():
    m = tube((16, 20, 50), (8, 10, 4), (8, 10, 45), 2.0)
    spacing = (2.0, 0.5, 0.25)
    vox = trace_swc(m, spacing=spacing)
    phys = trace_swc(m, spacing=spacing, physical_units=True)
    np.testing.assert_allclose(phys[:, 2:5], vox[:, 2:5] * [0.25, 0.5, 2.0])
    np.testing.assert_allclose(phys[:, 5], vox[:, 5] * 0.25)
    with pytest.raises(ValueError, match="spacing"):
        trace_swc(m, physical_units=True)


def test_anisotropic_spacing_measures_z_gaps_in_plane_voxels():
    shape = (40, 16, 16)
    m = tube(shape, (2, 8, 8), (18, 8, 8), 2.5)
    m = tube(shape, (21, 8, 8), (37, 8, 8), 2.5, out=m)  # two empty slices
    assert n_trees(trace_swc(m, max_gap=4.0)) == 1  # isotropic: a gap of 2 voxels
    assert n_trees(trace_swc(m, max_gap=4.0, spacing=(3.0, 1.0, 1.0))) == 2  # 2 slices = 6 in-plane voxels
    assert n_trees(trace_swc(m, max_gap=7.0, spacing=(3.0, 1.0, 1.0))) == 1


def test_spur_pruning_and_tip_extension():
    shape = (16, 24, 64)
    m = tube(shape, (8, 12, 4), (8, 12, 59), 2.5)
    m[7:10, 14:17, 30:33] = True  # a bump on the surface
    assert len(branch_points(trace_swc(m, min_spur_length=0.0))) >= 1
    assert len(branch_points(trace_swc(m))) == 0
    thick = tube(shape, (8, 12, 4), (8, 12, 59), 3.5)
    full = trace_swc(thick)
    short = trace_swc(thick, extend_tips=False)
    assert full[:, 2].min() <= 4.5 and full[:, 2].max() >= 58.5
    assert short[:, 2].max() - short[:, 2].min() < full[:, 2].max() - full[:, 2].min()


def test_small_specks_are_dropped():
    m = tube((16, 20, 50), (8, 10, 4), (8, 10, 45), 2.0)
    m[2:5, 2:5, 2:5] = True  # a speck: its skeleton is a few voxels, far shorter than min_component_length
    assert n_trees(trace_swc(m)) == 1
    assert n_trees(trace_swc(m, min_component_length=0.0)) == 2


def test_deterministic_on_a_noisy_map():
    rng = np.random.default_rng(3)
    prob = np.clip(broken_tube(4) * 0.8 + rng.normal(scale=0.15, size=(16, 20, 72)), 0, 1).astype(np.float32)
    before = prob.copy()
    a = trace_swc(prob)
    b = trace_swc(prob.copy())
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(prob, before)  # the input is left alone


def test_empty_input_gives_empty_swc():
    swc = trace_swc(np.zeros((8, 8, 8), dtype=np.float32))
    assert swc.shape == (0, 7)


def test_mask_and_probability_input_types_agree():
    m = broken_tube(2)
    ref = trace_swc(m)
    for variant in (
        m.astype(np.uint8),
        m.astype(np.uint8) * 255,
        m.astype(np.uint16) * 7,
        m.astype(np.float64),
        torch.from_numpy(m.astype(np.float32))[None],
        MetaTensor(torch.from_numpy(m.astype(np.float32))[None]),
    ):
        np.testing.assert_array_equal(trace_swc(variant), ref)
    scaled = (m * 200).astype(np.uint8)
    scaled[0, 0, 0] = 10  # more than two values: a uint8 probability 0..255
    np.testing.assert_array_equal(trace_swc(scaled, threshold=0.7), ref)


def test_input_validation_messages():
    m = broken_tube(2).astype(np.float32)
    bad = m.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*\(1, 2, 3\)"):
        trace_swc(bad)
    with pytest.raises(ValueError, match=r"3D probability map.*\(20, 72\)"):
        trace_swc(m[0])
    with pytest.raises(ValueError, match="split_outputs"):
        trace_swc(np.stack([m] * 5))
    with pytest.raises(ValueError, match="sigmoid"):
        trace_swc(m * 4 - 2)
    with pytest.raises(ValueError, match=r"direction.*\(3, 16, 20, 72\).*\(3, 16, 20, 70\)"):
        trace_swc(m, direction=np.zeros((3, 16, 20, 70), np.float32))
    with pytest.raises(ValueError, match=r"distance.*\(16, 20, 72\)"):
        trace_swc(m, distance=np.zeros((2, 16, 20, 72), np.float32))
    with pytest.raises(ValueError, match="negative distances"):
        trace_swc(m, distance=-np.ones((16, 20, 72), np.float32))
    with pytest.raises(ValueError, match=r"root.*outside.*x must round into \[0, 71\]"):
        trace_swc(m, root=(80, 5, 5))
    with pytest.raises(ValueError, match="threshold"):
        trace_swc(m, threshold=0.0)
    with pytest.raises(ValueError, match="max_gap"):
        trace_swc(m, max_gap=-1)
    with pytest.raises(TypeError, match="single_tree"):
        TraceConfig(single_tree="yes")
    with pytest.raises(TypeError, match="dtype"):
        trace_swc(np.array([["a"]], dtype=object))


def test_trace_config_nests_the_bridging_and_linking_parameters():
    # the flat keywords of trace_swc, TraceSWC and the CLI: one per TraceConfig field or nested field
    inputs = {"prob", "direction", "distance", "root", "spacing", "physical_units", "image"}
    assert set(TRACE_KEYWORDS) == set(inspect.signature(trace_swc).parameters) - inputs
    assert TraceConfig.from_keywords() == TraceConfig()
    cfg = TraceConfig.from_keywords(
        max_gap=9.0, direction_window=4.0, bridge_to_side=False, min_facing_cos=0.3, min_component_length=0.5,
        link_cost=25.0, keep_length=40.0, max_trees=2,
    )  # fmt: skip
    assert cfg.bridge == BridgeParams(max_gap=9.0, min_facing_cos=0.3, window=4.0, to_side=False, anchor_length=0.5)
    assert cfg.link == LinkParams(max_link_cost=25.0, min_piece_length=1.0, keep_length=40.0, max_trees=2)
    assert TraceConfig.from_keywords(**cfg.keywords()) == cfg
    assert cfg.keywords()["direction_window"] == 4.0 and cfg.keywords()["link_cost"] == 25.0
    # errors name the flat keyword and the nested field, and show the value
    with pytest.raises(ValueError, match=r"direction_window \(bridge.window\) must be .* got 0.5"):
        trace_swc(broken_tube(3), direction_window=0.5)
    with pytest.raises(ValueError, match=r"link_cost \(link.max_link_cost\) must be .* got -1"):
        TraceSWC(link_cost=-1.0)
    with pytest.raises(TypeError, match=r"bridge_to_side \(bridge.to_side\) must be a bool, got 'no'"):
        TraceConfig.from_keywords(bridge_to_side="no")
    with pytest.raises(ValueError, match="max_trees must be an int >= 0, got 1.5"):
        TraceConfig.from_keywords(max_trees=1.5)
    with pytest.raises(TypeError, match="unknown tracing parameters \\['window'\\]"):
        TraceConfig.from_keywords(window=3.0)
    with pytest.raises(TypeError, match="bridge must be a BridgeParams"):
        TraceConfig(bridge={"max_gap": 3.0})


def test_graph_building_blocks():
    # an L of voxels with the corner diagonal: the spanning forest drops the diagonal
    coords = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 2, 1]])
    g = voxel_graph(coords)
    assert {tuple(e) for e in g.edges.tolist()} == {(0, 1), (0, 2), (1, 2), (2, 3)}
    f = spanning_forest(g)
    assert {tuple(e) for e in f.edges.tolist()} == {(0, 1), (1, 2), (2, 3)}
    seg = unbranched_sections(f)
    assert seg.ends.tolist() == [[0, 3]] and seg.length[0] == pytest.approx(3.0)
    assert seg.paths[0].tolist() == [0, 1, 2, 3] and seg.node_section.tolist() == [-1, 0, 0, -1]
    # a chain of 10 with a 2-voxel spur at voxel 5: pruned at length 3, kept at length 1
    chain = np.array([[0, 0, x] for x in range(10)] + [[0, 1, 5], [0, 2, 5]])
    forest = spanning_forest(voxel_graph(chain))
    assert prune_spurs(forest, 3.0).sum() == 10
    assert prune_spurs(forest, 1.0).all()


def test_bridge_gaps_reports_its_bridges():
    m = broken_tube(3)
    forest = spanning_forest(voxel_graph(thin_curves(m, return_coords=True)))
    res = bridge_gaps(forest, np.full(forest.num_nodes, 2.0), m.astype(np.float32), 0.5, BridgeParams(max_gap=6.0))
    assert len(res.bridges) == 1
    br = res.bridges[0]
    assert br.gap_length == pytest.approx(3.0) and br.cos_a > 0.9 and not br.to_side
    assert res.graph.num_nodes > forest.num_nodes and len(res.radius) == res.graph.num_nodes
    assert res.graph.components()[0] == 1


def test_trace_swc_transform_reads_spacing_from_the_affine():
    m = torch.from_numpy(tube((16, 20, 50), (8, 10, 4), (8, 10, 45), 2.0).astype(np.float32))[None]
    affine = torch.diag(torch.tensor([2.0, 0.5, 0.25, 1.0], dtype=torch.float64))
    img = MetaTensor(m, affine=affine)
    phys = TraceSWC(physical_units=True)(img)
    vox = trace_swc(m, spacing=(2.0, 0.5, 0.25))
    np.testing.assert_allclose(phys[:, 2], vox[:, 2] * 0.25)
    with pytest.raises(ValueError, match="spacing"):
        TraceSWC(physical_units=True)(m)
    with pytest.raises(TypeError, match="unknown tracing parameters"):
        TraceSWC(max_gapp=3)


def test_trace_swcd_in_a_post_processing_dict():
    m = broken_tube(3)
    data = {
        "pred": torch.from_numpy(m.astype(np.float32))[None],
        "direction": torch.from_numpy(axis_field(m.shape, (0.0, 0.0, 1.0))),
        "distance": torch.from_numpy(np.where(m, 2.0, 0.0).astype(np.float32))[None],
        "image": "kept",
    }
    out = TraceSWCd("pred", direction_key="direction", distance_key="distance", max_gap=6.0)(data)
    assert out["image"] == "kept" and n_trees(out["swc"]) == 1
    np.testing.assert_allclose(out["swc"][:, 5], 2.0)
    with pytest.raises(KeyError, match="direction"):
        TraceSWCd("pred", direction_key="direction")({"pred": data["pred"]})
    rooted = TraceSWCd("pred", root_key="root", max_gap=6.0)({"pred": data["pred"], "root": (60.0, 10.0, 8.0)})
    assert np.allclose(rooted["swc"][0, 2:5], (60, 10, 8), atol=1.0)
    lenient = TraceSWCd(["pred", "other"], direction_key="direction", output_key=["a", "b"], allow_missing_keys=True)
    res = lenient({"pred": data["pred"]})
    assert "a" in res and "b" not in res
    with pytest.raises(ValueError, match="output_key"):
        TraceSWCd(["pred", "other"], output_key="swc")
