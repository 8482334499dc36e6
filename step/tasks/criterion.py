"""Training criteria of classification: cross-entropy (hard or soft targets), TET, and distillation.

**Cross-entropy.** Hard labels: ``CE(z, y)`` with label smoothing ``eps``, i.e. the target is
``(1 - eps) onehot(y) + eps / K``. Soft targets (mixup / cutmix, where timm already smoothed them):
``mean_b sum_k -t_bk log softmax(z_b)_k``.

**TET** (Temporal Efficient Training; Deng et al., ICLR 2022, Eq. 8-10): the loss sees the
per-timestep logits ``O(t)``, ``t = 1..T``, instead of their mean:

    L_TET = (1/T) sum_t L_CE(O(t), y)
    L_MSE = (1/T) sum_t MSE(O(t), phi)          (phi = ``means``, a constant; MSE averages over B x K)
    L     = (1 - lambda) L_TET + lambda L_MSE

as in the paper and its use in the released SDT code (``criterion.py``: ``(1 - lamb) * L_TET +
lamb * L_mse``). Evaluation still uses the time-averaged output.

**Distillation** (DeiT, Touvron et al., ICML 2021; as released with Meta-SpikeFormer): the
student's class-head output ``z_c`` takes the base criterion, its distillation-head output ``z_d``
(the same output for a student with one head) learns from the frozen teacher's logits ``z_t``:

    hard:  L_d = CE(z_d, argmax z_t)
    soft:  L_d = tau^2 KL(softmax(z_t / tau) || softmax(z_d / tau)) summed, / numel(z_d)
    L      = (1 - alpha) L_base(z_c, y) + alpha L_d
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropy(nn.Module):
    """Cross-entropy for hard labels (with label smoothing) or soft target vectors (mixup)."""

    def __init__(self, label_smoothing: float = 0.0, soft_targets: bool = False):
        super().__init__()
        self.label_smoothing = float(label_smoothing)
        self.soft_targets = bool(soft_targets)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.soft_targets:
            return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
        return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)

    def describe(self) -> dict:
        return {"loss": "soft_target_ce" if self.soft_targets else "ce",
                "label_smoothing": None if self.soft_targets else self.label_smoothing}


class TETLoss(nn.Module):
    """``(1 - lamb) * mean_t base(O(t), y) + lamb * MSE(O, means)`` on per-timestep logits ``[T, B, K]``."""

    def __init__(self, base: nn.Module, lamb: float = 0.0, means: float = 1.0):
        super().__init__()
        if not 0.0 <= lamb <= 1.0:
            raise ValueError(f"TET lambda must be in [0, 1], got {lamb}")
        self.base, self.lamb, self.means = base, float(lamb), float(means)

    def forward(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if outputs.dim() != 3:
            raise ValueError(f"TET needs per-timestep logits [T, B, K], got shape {list(outputs.shape)}")
        T = outputs.shape[0]
        loss_tet = sum(self.base(outputs[t], target) for t in range(T)) / T
        if self.lamb == 0.0:
            return loss_tet
        loss_mse = F.mse_loss(outputs, torch.full_like(outputs, self.means))
        return (1.0 - self.lamb) * loss_tet + self.lamb * loss_mse


def time_mean(output: torch.Tensor) -> torch.Tensor:
    """Per-timestep logits ``[T, B, K]`` -> ``[B, K]``; ``[B, K]`` passes."""
    return output.mean(0) if output.dim() == 3 else output


class DistillationLoss(nn.Module):
    """DeiT-style distillation around a base criterion; ``teacher(inputs)`` gives the teacher's logits."""

    def __init__(self, base: nn.Module, teacher: Callable[..., torch.Tensor], kind: str = "hard",
                 alpha: float = 0.5, tau: float | None = None):
        super().__init__()
        if kind not in ("hard", "soft"):
            raise ValueError(f"distillation type must be hard or soft, got {kind!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"distillation alpha must be in [0, 1], got {alpha}")
        self.base, self.teacher, self.kind, self.alpha = base, teacher, kind, float(alpha)
        self.tau = float(tau) if tau is not None else None

    def distillation(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        student, teacher = time_mean(student), time_mean(teacher).to(student.dtype)
        if self.kind == "hard":
            return F.cross_entropy(student, teacher.argmax(dim=-1))
        tau = self.tau
        kl = F.kl_div(F.log_softmax(student / tau, dim=-1), F.log_softmax(teacher / tau, dim=-1),
                      reduction="sum", log_target=True)
        return kl * (tau * tau) / student.numel()

    def forward(self, outputs, target: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        cls, dist = outputs if isinstance(outputs, (tuple, list)) else (outputs, outputs)
        base = self.base(cls, target)
        return (1.0 - self.alpha) * base + self.alpha * self.distillation(dist, teacher_logits.detach())
