"""Inverse problems solved on the learned manifold (Alberti et al., JMLR 2024, section 4).

Given data y = A(x) + noise for a differentiable forward operator A, minimise the data fidelity
f(x) = 1/2 ||A(x) - y||^2 over the manifold M learned by a mixture of VAE charts, by Riemannian
gradient descent. At the iterate x, with chart weights beta_k(x) (the model's chart posteriors):

- per chart k: z_k = E_k(x) (encoder mean), J_k = dg_k/dz at z_k (through ``torch.func``), and the
  Riemannian gradient in chart coordinates v_k = (J_k^T J_k + lambda I)^-1 J_k^T grad f(g_k(z_k))
  (a damped solve, lambda = damping * tr(J_k^T J_k) / d); J_k v_k is the same vector in data space
  (the projection of grad f onto the tangent space of chart k);
- a retraction R_k(t) back onto chart k: ``"project"``: g_k(E_k(x - t J_k v_k)) (step, then
  encode-decode); ``"chart"``: g_k(z_k - t v_k) (step in chart coordinates, then decode);
- the next iterate x' = sum_k beta_k(x) R_k(t), over the charts with beta_k > min_weight.

The start is the projection of y, x_0 = sum_k beta_k(y) g_k(E_k(y)). Step sizes are fixed
(t = step_size) or adaptive (Armijo backtracking per image: accept the largest t = step_size *
2^-j with f(x') <= f(x) - c t sum_k beta_k <grad f, J_k v_k>, then grow t by 1.5 for the next
iteration; an image with no acceptable t keeps its iterate and stops there, so f never
increases).

A single VAE is a one-chart atlas; ``latent_descent`` is the usual baseline (Adam on
f(g(z)) over the latent z, started at the encoder mean of y).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..models.base import Model
from .operators import data_fidelity

RETRACTIONS = ("project", "chart")


# ---- the atlas of a model ----------------------------------------------------------------------

@dataclass
class Atlas:
    """Charts (modules with encode(x) -> (mean, logvar) and decode(z)) and the chart weights beta(x) (n, K)."""

    charts: list
    weights: Callable[[torch.Tensor], torch.Tensor]


def atlas(model: Model) -> Atlas:
    """A mixture of charts gives its charts and chart posteriors; a single VAE-type model (encode/decode
    without a pose head) is a one-chart atlas with weight 1."""
    if model.chart_models() is not None:
        return Atlas(model.chart_models(), model.cluster_posterior)
    if model.has_pose:
        raise ValueError("a model with a pose head decodes in canonical pose, so encode/decode are not a chart of "
                         "the images; fit it with pose='none' to solve inverse problems on it")
    return Atlas([model], lambda x: x.new_ones(len(x), 1))


def decoder_jacobian(decode: Callable, z: torch.Tensor) -> torch.Tensor:
    """J = dg/dz at each row of z (m, d): (m, D, d), D the flattened output size.

    Forward mode (``torch.func.jvp``) on one batch of m * d rows, row (i, j) pushing the basis
    vector e_j through g at z_i (batched rather than ``vmap``-ped, since the conv decoders use
    channels-last memory, which vmap does not support)."""
    m, d = z.shape
    basis = torch.eye(d, dtype=z.dtype, device=z.device).repeat(m, 1)
    _, columns = torch.func.jvp(decode, (z.repeat_interleave(d, 0),), (basis,))
    return columns.reshape(m, d, -1).transpose(1, 2)


# ---- Riemannian descent ------------------------------------------------------------------------

@dataclass
class Descent:
    """Result of a descent: x (n, *shape) the reconstructions; objective (iterations + 1, n) the data
    fidelity f per iteration (row 0 at the start); weights (n, K) the chart weights at the end;
    step_sizes (n,) the last step sizes."""

    x: torch.Tensor
    objective: torch.Tensor
    weights: torch.Tensor
    step_sizes: torch.Tensor


@dataclass
class _ChartStep:
    """Chart k's part of one iteration on the rows it is active on."""

    rows: torch.Tensor  # (m,) indices into the batch
    z: torch.Tensor  # (m, d) chart coordinates E_k(x)
    direction: torch.Tensor  # (m, d) v = (J^T J + lambda I)^-1 J^T grad f
    tangent: torch.Tensor  # (m, D) J v
    slope: torch.Tensor  # (m,) <grad f, J v> = (J^T grad f) . v


def _active_weights(weights: torch.Tensor, min_weight: float) -> torch.Tensor:
    """beta with entries <= min_weight set to 0, rows renormalised to sum 1."""
    kept = torch.where(weights > min_weight, weights, torch.zeros_like(weights))
    return kept / kept.sum(1, keepdim=True)


def project(model: Model, x: torch.Tensor, min_weight: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """The projection onto the learned manifold: P(x) = sum_k beta_k(x) g_k(E_k(x)); returns (P(x), beta)."""
    charts = atlas(model)
    with torch.no_grad():
        weights = _active_weights(charts.weights(x), min_weight)
        out = torch.zeros_like(x)
        for k, chart in enumerate(charts.charts):
            rows = (weights[:, k] > 0).nonzero().flatten()
            if len(rows):
                out[rows] += weights[rows, k].view(-1, *[1] * (x.dim() - 1)) * chart.decode(chart.encode(x[rows])[0])
    return out, weights


def riemannian_descent(model: Model, operator, y: torch.Tensor, *, steps: int = 50, step_size: float = 1.0,
                       adaptive: bool = True, retraction: str = "project", damping: float = 1e-4,
                       min_weight: float = 1e-6, armijo: float = 1e-4, max_backtracks: int = 8,
                       growth: float = 1.5, target: float | None = None, x0: torch.Tensor | None = None) -> Descent:
    """Minimise f(x) = 1/2 ||A(x) - y||^2 on the model's learned manifold (see the module docstring).

    model: a mixture of charts (or any VAE-type model, as one chart); operator: differentiable A;
    y: (n, *A's output shape) data. x0: the start (default: the projection of y). target: an image whose f
    falls to <= target stops moving (the discrepancy principle: target = 1/2 * pixels * noise^2).
    Images are independent; they are processed together, each chart on the rows where its weight
    exceeds min_weight.
    """
    if retraction not in RETRACTIONS:
        raise ValueError(f"unknown retraction {retraction!r}; expected one of {RETRACTIONS}")
    if steps < 0 or not step_size > 0 or damping < 0 or not 0 < armijo < 1 or max_backtracks < 0 or not growth >= 1:
        raise ValueError("need steps >= 0, step_size > 0, damping >= 0, 0 < armijo < 1, max_backtracks >= 0 and "
                         f"growth >= 1; got {steps}, {step_size}, {damping}, {armijo}, {max_backtracks}, {growth}")
    charts = atlas(model)
    was_training = model.training
    model.eval()
    try:
        x = project(model, y, min_weight)[0] if x0 is None else x0.clone()
        value = _fidelity(x, y, operator)
        history = [value]
        t = torch.full((len(x),), float(step_size), device=x.device, dtype=x.dtype)
        weights = charts.weights(x)
        stalled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(steps):
            moving = ~stalled if target is None else ~stalled & (value > target)
            if not bool(moving.any()):
                history.append(value)
                continue
            weights = _active_weights(charts.weights(x), min_weight)
            parts = _chart_steps(charts, x, y, operator, weights, moving, damping)
            slope = torch.zeros_like(value)
            for k, part in parts.items():
                slope.index_add_(0, part.rows, weights[part.rows, k] * part.slope)
            if not adaptive:
                x = _retract(charts, parts, x, weights, t, moving, retraction)
                value = _fidelity(x, y, operator)
            else:
                todo = moving.clone()
                for _ in range(max_backtracks + 1):
                    trial = _retract(charts, parts, x, weights, t, todo, retraction)
                    trial_value = _fidelity(trial, y, operator)
                    accept = todo & (trial_value <= value - armijo * t * slope)
                    x = torch.where(accept.view(-1, *[1] * (x.dim() - 1)), trial, x)
                    value = torch.where(accept, trial_value, value)
                    t = torch.where(accept, t * growth, t)
                    todo &= ~accept
                    if not bool(todo.any()):
                        break
                    t = torch.where(todo, t / 2, t)
                stalled |= todo  # no step down to step_size * 2^-max_backtracks decreases f: stop there
            history.append(value)
        return Descent(x=x.detach(), objective=torch.stack(history).detach(), weights=weights.detach(),
                       step_sizes=t.detach())
    finally:
        model.train(was_training)


def _fidelity(x, y, operator) -> torch.Tensor:
    with torch.no_grad():
        return data_fidelity(x, y, operator)


def _chart_steps(charts: Atlas, x, y, operator, weights, moving, damping) -> dict[int, _ChartStep]:
    """Per active chart: z = E_k(x), J, grad f at g_k(z), v = (J^T J + lambda I)^-1 J^T grad f, J v and the slope."""
    parts = {}
    for k, chart in enumerate(charts.charts):
        rows = ((weights[:, k] > 0) & moving).nonzero().flatten()
        if not len(rows):
            continue
        with torch.no_grad():
            z = chart.encode(x[rows])[0]
        jac = decoder_jacobian(chart.decode, z).detach()  # (m, D, d)
        point = chart.decode(z).detach().requires_grad_(True)
        with torch.enable_grad():
            grad = torch.autograd.grad(data_fidelity(point, y[rows], operator).sum(), point)[0].flatten(1)
        jtg = torch.einsum("mDd,mD->md", jac, grad)
        gram = jac.transpose(1, 2) @ jac
        d = gram.shape[-1]
        scale = torch.diagonal(gram, dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)
        gram = gram + damping * scale.view(-1, 1, 1) * torch.eye(d, dtype=gram.dtype, device=gram.device)
        direction = torch.linalg.solve(gram, jtg)
        parts[k] = _ChartStep(rows=rows, z=z, direction=direction, tangent=torch.einsum("mDd,md->mD", jac, direction),
                              slope=(jtg * direction).sum(1))
    return parts


@torch.no_grad()
def _retract(charts: Atlas, parts: dict[int, _ChartStep], x, weights, t, todo, retraction) -> torch.Tensor:
    """x' = sum_k beta_k R_k(t) on the rows in todo (the others keep x)."""
    out = x.clone()
    out[todo] = 0
    for k, part in parts.items():
        keep = todo[part.rows]
        if not bool(keep.any()):
            continue
        rows, step = part.rows[keep], t[part.rows[keep]].view(-1, 1)
        chart = charts.charts[k]
        if retraction == "chart":
            new = chart.decode(part.z[keep] - step * part.direction[keep])
        else:
            moved = x[rows] - (step * part.tangent[keep]).view(-1, *x.shape[1:])
            new = chart.decode(chart.encode(moved)[0])
        out[rows] += weights[rows, k].view(-1, *[1] * (x.dim() - 1)) * new
    return out


def latent_descent(model: Model, operator, y: torch.Tensor, *, steps: int = 50, lr: float = 0.05) -> Descent:
    """Single-generator baseline: z_0 = E(y) (encoder mean), then ``steps`` Adam steps (learning rate lr) on
    f(g(z)) = 1/2 ||A(g(z)) - y||^2; x = g(z). Every image has its own z; f is summed over images."""
    if steps < 0 or not lr > 0:
        raise ValueError(f"need steps >= 0 and lr > 0, got {steps}, {lr}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            z = model.encode(y)[0].clone()
        z.requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=lr)
        history = []
        for _ in range(steps):
            with torch.enable_grad():
                value = data_fidelity(model.decode(z), y, operator)
                optimizer.zero_grad()
                value.sum().backward(inputs=[z])  # the networks' gradients are left untouched
            history.append(value.detach())
            optimizer.step()
        with torch.no_grad():
            x = model.decode(z)
            history.append(data_fidelity(x, y, operator))
        return Descent(x=x, objective=torch.stack(history), weights=x.new_ones(len(x), 1),
                       step_sizes=torch.full((len(x),), lr))
    finally:
        model.train(was_training)
