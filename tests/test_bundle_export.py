# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The bundle's export: TorchScript with metadata through ckpt_export, and verify_net_in_out."""

from __future__ import annotations

import json

import torch
from monai.bundle import ckpt_export, verify_net_in_out
from monai.data import load_net_with_metadata

from helpers import CONFIGS, META, bundle_net


def test_ckpt_export_and_verify_net_in_out(trained, tmp_path):
    root = trained["root"]
    ts_path = tmp_path / "model.ts"
    overrides = {"bundle_root": str(root), "network_def#features": [4, 8]}
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_path),
        ckpt_file=str(root / "models" / "trained" / "model.pt"),
        meta_file=META,
        config_file=str(CONFIGS / "inference.json"),
        **overrides,
    )
    ts, meta, _ = load_net_with_metadata(str(ts_path))
    assert meta["version"] == json.loads((CONFIGS / "metadata.json").read_text())["version"]
    net = bundle_net(features=[4, 8])
    net.load_state_dict(torch.load(root / "models" / "trained" / "model.pt", weights_only=True))
    net.eval()
    x = torch.rand(1, 1, 16, 24, 32)
    with torch.no_grad():
        torch.testing.assert_close(ts(x), net(x))
    verify_net_in_out(
        net_id="network_def",
        meta_file=META,
        config_file=str(CONFIGS / "inference.json"),
        device="cpu",
        n=2,
        **overrides,
    )
