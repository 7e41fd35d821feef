# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The morphology continuity loss of NeuroLink: penalise predictions that break a neurite along its centreline.

References:
    Yan H. et al., "Bridging Weak Signals in Neuronal Imaging with Morphology Learning", MICCAI 2024.
    Shit S. et al., "clDice - a Novel Topology-Preserving Loss Function for Tubular Structure Segmentation",
    CVPR 2021.
    Lee T.-C., Kashyap R. L., Chu C.-N., "Building skeleton models via 3-D medial surface/axis thinning
    algorithms", CVGIP: Graphical Models and Image Processing 56(6), 1994.
    Saha P. K., Chaudhuri B. B., Dutta Majumder D., "A new shape preserving parallel thinning algorithm for 3D
    digital images", Pattern Recognition 30(12), 1997.
    Udupa J. K., Samarasekera S., "Fuzzy connectedness and object definition", Graphical Models and Image
    Processing 58(3), 1996 (the strength of a path is that of its weakest link).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

from ..utils import check_same_shape
from .centreline import CentrelineGraph, build_centreline_graph
from .validation import as_plain_tensor, check_binary_label, check_probabilities

__all__ = ["MorphologyContinuityLoss"]

_PENALTIES = ("log", "linear")


class MorphologyContinuityLoss(_Loss):
    r"""Morphology continuity loss: how strongly the prediction holds each neurite together along its centreline.

    A voxel-wise loss hardly notices a one-voxel cut across a neurite, but a tracer stops there. This loss asks,
    for every centreline voxel of the label, "how bright is the darkest centreline voxel of the prediction within
    ``radius`` steps along the neurite?" and penalises dark answers. It is built from two morphological operations:

    1. **Thinning of the label** to its centreline :math:`S`: a topology-preserving curve thinning
       (:func:`~neurolink_monai.skeleton.thin_curves`, directional and subfield-parallel after Lee et al.,
       1994 and Saha et al., 1997), a one-voxel-wide 26-connected curve inside the label with one piece per
       connected component, computed once per batch on the label side (no gradient needed); or a given
       centreline, e.g. a rasterised SWC trace.
    2. **Geodesic erosion of the prediction along the centreline**, :math:`e = \varepsilon^{r}_{S}(z)`: ``radius``
       = :math:`r` iterations of :math:`e_s \leftarrow \min(e_s, \min_{u \in N_{26}(s) \cap S} e_u)` starting
       from the logits (or probabilities) :math:`z_s` on :math:`S`. :math:`e_s` is the weakest link of the
       prediction within :math:`r` centreline steps of :math:`s` (a chain is as strong as its weakest link, as in
       fuzzy connectedness, Udupa & Samarasekera, 1996), so one dark centreline voxel lowers :math:`2r + 1`
       centreline voxels, not one.

    The loss of a sample is the mean penalty over its centreline,

    .. math::
        L = \frac{1}{|S|} \sum_{s \in S} \phi(e_s), \qquad
        \phi(e) = -\log \sigma(e) = \mathrm{softplus}(-e) \;\; (\text{"log"}) \quad \text{or} \quad
        \phi(e) = 1 - \sigma(e) \;\; (\text{"linear"}),

    with :math:`\sigma` the sigmoid (``sigmoid=True``, the default); with ``sigmoid=False`` the input holds
    probabilities, :math:`\sigma` is the identity and ``log`` becomes
    :math:`-\log\frac{e + \epsilon}{1 + \epsilon}`. Since :math:`\sigma` is monotone it commutes with the
    erosion, which therefore runs on the logits directly. ``log`` is the binary cross-entropy of the eroded
    prediction against 1: the logit of a confidently dark one-voxel gap gets the gradient
    :math:`-(1 - \sigma(e)) (2r + 1) / |S| \approx -(2r + 1) / |S|` instead of one that vanishes with
    :math:`\sigma'`, which is what a weak-signal gap needs. ``linear`` is bounded in [0, 1] and reads as "the
    fraction of the centreline within ``radius`` of a break".

    Why it penalises gaps: the centreline is a connected path through the label, so a prediction that no longer
    connects two points of the neurite must be dark on at least one centreline voxel between them (otherwise
    the centreline itself would connect them), whatever the orientation or shape of the cut. The erosion charges
    a gap of :math:`w` centreline voxels to :math:`\min(|S_c|, w + 2r)` centreline voxels of its component
    :math:`S_c`, each at
    :math:`\phi(\text{dark})`, while the same number of wrong voxels off the centreline (a thickened or thinned
    border, false positives) costs nothing. The loss never increases when any voxel of the prediction brightens,
    so it falls as a gap narrows or fills in, and a perfect prediction reaches the minimum (0 for probabilities,
    :math:`\mathrm{softplus}(-|z|) \to 0` for logits of magnitude :math:`|z|`). The gradient flows to the
    darkest centreline voxel of each window: the loss pushes up exactly the weakest links.

    Comparison with clDice (Shit et al., CVPR 2021; MONAI ``SoftclDiceLoss``): clDice's topology sensitivity
    :math:`T_{sens} = \sum S_L p / \sum S_L` equals this loss with ``radius=0`` and the ``linear`` penalty, but
    on a soft morphological skeleton of the label (iterated min/max-pooling), which is neither one voxel wide nor
    connected; there a one-voxel cut costs :math:`1/|S|`, no more than one dim voxel anywhere on the skeleton.
    clDice also has a topology precision term, built from the soft skeleton of the *prediction*, that penalises
    spurious branches and merges; its iterated full-volume soft erosions with gradient make clDice slow. This loss
    leaves false positives to the Dice/cross-entropy terms it is combined with (see ``NeuroLinkLoss``) and touches
    only the :math:`|S|` centreline voxels with gradient: its cost is the label thinning plus a gather.

    Limitations: a dark centreline voxel with bright voxels around it (a pinhole on the axis) is charged like a
    cut, so the loss asks for a bright centreline, not just a connected mask; a prediction displaced off the
    label centreline is treated as a gap; a label piece shorter than about twice its diameter thins to a single
    voxel, so only cuts through that voxel count there; adjacency and ``radius`` are voxel steps, not physical
    lengths, on anisotropic stacks. The thinning runs on the CPU at every call (tens of milliseconds per 96^3
    sample); pass ``centreline=`` to compute it once in the data pipeline instead.

    Args:
        radius: geodesic erosion steps along the centreline (>= 0); a break is charged to ``2 * radius + 1``
            centreline voxels. Default 3.
        penalty: ``"log"`` (default) or ``"linear"``, see above.
        sigmoid: if True (default) the input holds logits, else probabilities in [0, 1] (as MONAI losses'
            ``sigmoid=``).
        eps: smoothing of the ``log`` penalty on probabilities; bounds the loss by :math:`\log(1 + 1/\epsilon)`
            and its gradient by :math:`1/\epsilon`. Unused for logits.
        reduction: ``"mean"`` (default: mean over the samples that have a centreline; 0 when none has),
            ``"sum"`` or ``"none"`` (the ``(B,)`` per-sample losses, 0 for a sample without foreground).

    Example::

        loss = MorphologyContinuityLoss(radius=3)
        value = loss(logits, label)  # (B, 1, D, H, W) each, label in {0, 1}
    """

    def __init__(
        self,
        radius: int = 3,
        penalty: str = "log",
        sigmoid: bool = True,
        eps: float = 1e-4,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)):
            raise TypeError(f"radius must be an int, got {type(radius).__name__} ({radius!r}).")
        if radius < 0:
            raise ValueError(f"radius must be >= 0, got {radius}.")
        if penalty not in _PENALTIES:
            raise ValueError(f"penalty must be one of {_PENALTIES}, got {penalty!r}.")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}.")
        self.radius = int(radius)
        self.penalty = penalty
        self.sigmoid = bool(sigmoid)
        self.eps = float(eps)

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, centreline: torch.Tensor | np.ndarray | None = None
    ) -> torch.Tensor:
        """
        Args:
            input: ``(B, 1, D, H, W)`` (or ``(B, 1, H, W)``) logits, or probabilities when ``sigmoid=False``.
            target: binary label of the same shape (values in {0, 1}; any dtype).
            centreline: optional centreline of the same shape (non-zero = centreline) used instead of the label's
                thinning, e.g. a rasterised SWC trace.

        Returns:
            the loss, a scalar (``reduction="mean"``/``"sum"``) or ``(B,)`` (``"none"``).

        Raises:
            ValueError: on a shape mismatch, a channel count other than 1, label values outside {0, 1}, or
                probabilities outside [0, 1] with ``sigmoid=False``.
        """
        input = as_plain_tensor(input, "input")
        target = as_plain_tensor(target, "target")
        if input.dim() not in (4, 5):
            raise ValueError(
                f"input must be (B, 1, D, H, W) or (B, 1, H, W), got shape {list(input.shape)} ({input.dim()}-D)."
            )
        if input.shape[1] != 1:
            raise ValueError(
                f"MorphologyContinuityLoss expects one foreground channel, got input of shape {list(input.shape)} "
                f"with {input.shape[1]} channels; pass the foreground logits (e.g. logits[:, 1:2] - logits[:, 0:1] "
                "for a two-channel softmax output)."
            )
        check_same_shape(input, target)
        check_binary_label(target, "target")
        if not self.sigmoid:
            check_probabilities(input)
        if centreline is None:
            graph = build_centreline_graph(target[:, 0].detach().cpu().numpy() != 0)
        else:
            if isinstance(centreline, torch.Tensor):
                centreline = centreline.detach().cpu().numpy()
            centreline = np.asarray(centreline)
            if tuple(centreline.shape) != tuple(target.shape):
                raise ValueError(
                    f"centreline must have the target's shape {list(target.shape)}, got {list(centreline.shape)}."
                )
            graph = build_centreline_graph(None, centreline[:, 0] != 0)
        return self.reduce(self.per_sample(input, graph), graph)

    def per_sample(self, input: torch.Tensor, graph: CentrelineGraph) -> torch.Tensor:
        """``(B,)`` mean centreline penalty of each sample (0 where a sample has no centreline), differentiable."""
        batch = input.shape[0]
        if graph.num_centreline == 0:
            return input.reshape(batch, -1)[:, :1].sum(dim=1) * 0.0  # zero, but still part of the autograd graph
        device = input.device
        weakest = input.reshape(-1)[torch.as_tensor(graph.centreline_index, device=device)]
        if self.radius > 0:
            neighbours = torch.as_tensor(graph.neighbours, device=device)
            no_neighbour = weakest.new_full((1,), float("inf"))
            for _ in range(self.radius):
                weakest = torch.minimum(weakest, torch.cat([weakest, no_neighbour])[neighbours].amin(dim=1))
        penalty = self._penalty(weakest)
        sample = torch.as_tensor(graph.sample, device=device)
        sums = penalty.new_zeros(batch).index_add(0, sample, penalty)
        counts = torch.as_tensor(graph.counts(), device=device, dtype=penalty.dtype)
        return sums / counts.clamp_min(1.0)

    def reduce(self, per_sample: torch.Tensor, graph: CentrelineGraph) -> torch.Tensor:
        """Apply ``reduction`` to the output of :meth:`per_sample`."""
        if self.reduction == LossReduction.NONE.value:
            return per_sample
        if self.reduction == LossReduction.SUM.value:
            return per_sample.sum()
        return per_sample.sum() / max(int((graph.counts() > 0).sum()), 1)

    def _penalty(self, weakest: torch.Tensor) -> torch.Tensor:
        if self.sigmoid:
            return F.softplus(-weakest) if self.penalty == "log" else torch.sigmoid(-weakest)
        if self.penalty == "log":
            return -torch.log(((weakest + self.eps) / (1.0 + self.eps)).clamp(max=1.0))
        return 1.0 - weakest
