# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Does a stack give the same mask alone and embedded in a larger background volume? (issue 15, item 1)

For each depth, a synthetic stack ``(depth, 64, 64)`` (seed = depth, scaled by its 0.5 / 99.95 percentiles) is run
through :class:`~neurolink_monai.inference.NeuroLinkInferer` (the window and context margin of ``inference.json``)
alone and placed in a volume of its median value, 16 voxels larger on every side; the Dice of the two masks
(probability >= 0.5) on the stack is printed. The network is ``inference.json``'s ``network_def``; ``--norm`` and
``--local-contrast`` / ``--no-local-contrast`` change it to match other weights. Also printed: the fraction of a pure Poisson-noise 64 x 128 x 128 window (mean 5 counts, scaled by 1/30)
that the network marks as neurite.

Usage::

    python benchmarks/embedded_agreement.py                                   # the shipped weights
    python benchmarks/embedded_agreement.py --ckpt /tmp/bn/model.pt --no-local-contrast
    python benchmarks/embedded_agreement.py --ckpt old_model.pt --norm instance --no-local-contrast --context-margin 0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from neurolink_monai.data.synthetic import generate_sample
from neurolink_monai.inference import NeuroLinkInferer, alone_and_embedded
from neurolink_monai.transforms import DEFAULT_PERCENTILES, intensity_window, scale_intensity

REPO = Path(__file__).resolve().parents[1]


def scaled_stack(depth: int) -> torch.Tensor:
    """A synthetic ``(1, 1, depth, 64, 64)`` stack scaled like the bundle (percentiles 0.5, 99.95, clipped)."""
    image = torch.from_numpy(generate_sample((depth, 64, 64), seed=depth)["image"])
    return scale_intensity(image, intensity_window(image, *DEFAULT_PERCENTILES))[None, None]


def agreement(net: torch.nn.Module, depth: int, roi_size: list[int], context_margin: int, border: int = 16) -> float:
    """Dice of the masks of a ``depth``-slice stack alone and embedded with ``border`` voxels of its median."""
    inferer = NeuroLinkInferer(roi_size, skip_background=False, context_margin=context_margin)
    alone, embedded = (
        torch.sigmoid(out[:, 0]) >= 0.5 for out in alone_and_embedded(inferer, net, scaled_stack(depth), border)
    )
    return float(2 * (alone & embedded).sum() / max(int(alone.sum() + embedded.sum()), 1))


def noise_fraction(net: torch.nn.Module) -> float:
    """Fraction of a pure Poisson-noise window marked as neurite."""
    gen = torch.Generator().manual_seed(0)
    x = (torch.poisson(torch.full((1, 1, 64, 128, 128), 5.0), generator=gen) / 30.0).clamp(0, 1)
    with torch.no_grad():
        return float((torch.sigmoid(net(x)[:, 0]) >= 0.5).float().mean())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", type=Path, default=REPO / "bundle" / "models" / "model.pt")
    p.add_argument("--norm", default=None, help="the network's normalisation (MONAI name), as trained")
    contrast = p.add_mutually_exclusive_group()
    contrast.add_argument("--local-contrast", type=int, nargs=3, default=None, metavar=("RD", "RH", "RW"),
                          help="the network's local-contrast radii, as trained (network_def#local_contrast)")  # fmt: skip
    contrast.add_argument("--no-local-contrast", action="store_true", help="weights trained without local contrast")
    p.add_argument("--context-margin", type=int, default=None, help="default: inference.json's")
    p.add_argument("--depths", type=int, nargs="+", default=[16, 37, 60, 200])
    args = p.parse_args(argv)
    config = ConfigParser()
    config.read_config(str(REPO / "bundle" / "configs" / "inference.json"))
    if args.norm is not None:
        config["network_def#norm"] = (args.norm, {"affine": True})
    if args.local_contrast is not None or args.no_local_contrast:
        config["network_def#local_contrast"] = args.local_contrast
    margin = config["context_margin"] if args.context_margin is None else args.context_margin
    net = config.get_parsed_content("network_def").eval()
    net.load_state_dict(torch.load(args.ckpt, map_location="cpu", weights_only=True))
    norm, contrast_radii = config["network_def#norm"], config["network_def#local_contrast"]
    print(
        f"{args.ckpt} (norm {norm}, local contrast {contrast_radii}), roi {config['roi_size']}, context_margin {margin}"
    )
    for depth in args.depths:
        dice = agreement(net, depth, config["roi_size"], margin)
        print(f"  {depth:4d} slices: Dice alone vs embedded {dice:.3f}")
    print(f"  pure-noise window marked neurite: {100 * noise_fraction(net):.2f} %")


if __name__ == "__main__":
    main()
