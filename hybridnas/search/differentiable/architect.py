"""The architect: steps the architecture parameters on search-validation batches.

First order (DARTS-1): grad_alpha L_val(w, alpha).
Second order (DARTS-2): grad_alpha L_val(w', alpha) - xi * H, with the unrolled weights
w' = w - xi * (grad_w L_train(w) + wd * w) and the Hessian-vector product H estimated by
finite differences: (grad_alpha L_train(w+) - grad_alpha L_train(w-)) / (2 eps), where
w+- = w +- eps * grad_w' L_val(w', alpha) and eps = 0.01 / ||grad_w' L_val||.

The weights' momentum is left out of the unrolled step (the reference keeps it); with the
default xi = lr it changes w' by a momentum-sized term only.

Gradients are taken with ``torch.autograd.grad`` on the plain module (never through the DDP or
DeepSpeed wrapper, whose hooks expect a full backward), then averaged over ranks by hand, so
every rank steps identical alphas.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hybridnas.space.supernet import Architecture

Batch = tuple[torch.Tensor, torch.Tensor]
AllReduce = Callable[[list[torch.Tensor]], None]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> loss


class Architect:
    """Adam on the architecture parameters.

    DARTS defaults: lr 3e-4, betas (0.5, 0.999), weight decay 1e-3. ``loss_fn(logits, labels)``
    is the loss of both levels (cross-entropy by default). ``beta_decay`` > 0 adds beta-DARTS's
    regulariser to the architecture loss: ``beta_decay`` x the mean over free edges of
    logsumexp(alpha), which pulls the dominant ops of every edge down and keeps the mixtures from
    saturating early (constant weight; the paper ramps it up over the search).

    ``latency(arch)`` > 0 (an ``ExpectedLatency``: the expected ms per clip of the derived
    network) adds ``latency_weight`` x max(0, log(E[ms] / latency_target_ms)) to the
    architecture loss: nothing under the target, a pull towards cheaper ops above it whose
    size does not depend on the device's absolute speed (FBNet's log-latency, hinged).
    """

    def __init__(
        self,
        arch: Architecture,
        *,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        weight_decay: float = 1e-3,
        order: int = 1,
        all_reduce: AllReduce | None = None,
        loss_fn: LossFn = F.cross_entropy,
        beta_decay: float = 0.0,
        latency: Callable[[Architecture], torch.Tensor] | None = None,
        latency_target_ms: float = 1.0,
        latency_weight: float = 0.0,
    ) -> None:
        if order not in (1, 2):
            raise ValueError(f"search.order must be 1 or 2, got {order}")
        self.arch, self.order = arch, order
        self.optimizer = torch.optim.Adam(
            arch.parameters(), lr=lr, betas=tuple(betas), weight_decay=weight_decay
        )
        self.all_reduce = all_reduce
        self.loss_fn = loss_fn
        self.beta_decay = beta_decay
        self.latency = latency if latency_weight > 0 else None
        self.latency_target_ms, self.latency_weight = latency_target_ms, latency_weight
        self.expected_ms = float("nan")  # of the last step, for logging

    def _free_params(self) -> list[nn.Parameter]:
        return [p for p in self.arch.parameters() if p.requires_grad]

    def step(
        self,
        model: nn.Module,
        val_batch: Batch,
        train_batch: Batch | None = None,
        *,
        xi: float = 0.0,
        weight_decay: float = 0.0,
    ) -> dict[str, float]:
        """One architecture step on ``val_batch``; ``model`` is the plain supernet.

        Returns the validation loss and the number of correct predictions of that batch.
        """
        params = self._free_params()
        if self.order == 1 or train_batch is None:
            loss, correct, grads = self._val_grads(model, val_batch, params)
        else:
            loss, correct, grads = self._unrolled_grads(
                model, val_batch, train_batch, params, xi, weight_decay
            )
        self._apply(params, grads)
        return {"loss": float(loss), "correct": float(correct), "expected_ms": self.expected_ms}

    def _val_loss(self, model, batch):
        logits = model(batch[0], self.arch)
        loss = self.loss_fn(logits, batch[1])
        correct = (logits.detach().argmax(1) == batch[1]).sum()
        return loss + self._beta_term() + self._latency_term(), correct

    def _beta_term(self) -> torch.Tensor | float:
        if not self.beta_decay:  # off by default: no work on the step's path
            return 0.0
        free = [a for a in self.arch.alphas if a.requires_grad]
        if not free:
            return 0.0
        return self.beta_decay * torch.stack([torch.logsumexp(a, dim=-1) for a in free]).mean()

    def _latency_term(self) -> torch.Tensor | float:
        if self.latency is None:
            return 0.0
        expected = self.latency(self.arch)
        self.expected_ms = float(expected.detach())
        return self.latency_weight * torch.relu(torch.log(expected / self.latency_target_ms))

    def _val_grads(self, model, batch, params):
        loss, correct = self._val_loss(model, batch)
        return loss.detach(), correct, torch.autograd.grad(loss, params, allow_unused=True)

    def _apply(self, params, grads) -> None:
        present = [g for g in grads if g is not None]
        if self.all_reduce is not None and present:
            self.all_reduce(present)
        self.optimizer.zero_grad(set_to_none=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = g  # None for decided edges: Adam skips them
        self.optimizer.step()

    @torch.no_grad()
    def _shift(self, weights: list[torch.Tensor], direction: list[torch.Tensor], scale: float):
        for w, d in zip(weights, direction, strict=True):
            w.add_(d, alpha=scale)

    def _unrolled_grads(self, model, val_batch, train_batch, params, xi, wd):
        weights = [p for p in model.parameters() if p.requires_grad]
        backup = [w.detach().clone() for w in weights]
        train_loss = self.loss_fn(model(train_batch[0], self.arch), train_batch[1])
        g_train = torch.autograd.grad(train_loss, weights, allow_unused=True)
        step = [
            (g if g is not None else torch.zeros_like(w)) + wd * w
            for g, w in zip(g_train, weights, strict=True)
        ]
        self._shift(weights, step, -xi)  # w' = w - xi * dL_train/dw
        val_loss, correct = self._val_loss(model, val_batch)
        grads = torch.autograd.grad(val_loss, list(params) + weights, allow_unused=True)
        d_alpha, d_w = grads[: len(params)], grads[len(params) :]
        d_w = [
            g if g is not None else torch.zeros_like(w) for g, w in zip(d_w, weights, strict=True)
        ]
        with torch.no_grad():
            for w, b in zip(weights, backup, strict=True):
                w.copy_(b)
        hessian = self._hessian_vector(model, train_batch, params, weights, d_w)
        combined = [
            None if a is None else a - xi * (h if h is not None else 0.0)
            for a, h in zip(d_alpha, hessian, strict=True)
        ]
        return val_loss.detach(), correct, combined

    def _hessian_vector(self, model, batch, params, weights, vector):
        norm = torch.cat([v.flatten() for v in vector]).norm()
        eps = 0.01 / max(float(norm), 1e-12)
        self._shift(weights, vector, eps)
        loss = self.loss_fn(model(batch[0], self.arch), batch[1])
        g_pos = torch.autograd.grad(loss, params, allow_unused=True)
        self._shift(weights, vector, -2 * eps)
        loss = self.loss_fn(model(batch[0], self.arch), batch[1])
        g_neg = torch.autograd.grad(loss, params, allow_unused=True)
        self._shift(weights, vector, eps)
        return [
            None if p is None else (p - n) / (2 * eps) for p, n in zip(g_pos, g_neg, strict=True)
        ]
