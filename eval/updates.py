"""The trusted low-rank part from the weight updates (host-only).

The host sees a split layer's weights W_s at every step s. It knows the
optimizer (SGD with momentum mu, weight decay wd, the learning-rate
schedule: src/nn/optim.c), so it undoes it: with d_s = (W_s - W_s+1) / lr_s
(the momentum buffer), the gradient is g_s = d_s - mu d_s-1 - wd W_s. It
subtracts the residual's part, which it computes itself from R_s and the
output gradient G_s it was sent in the clear, and is left with
    sum_b corr(M_b, G_b) = g_s - sum_b corr(R_b, G_b),
linear in the trusted part M. Channel c of M enters only channel c of the
gradient through one matrix A built from G, so A X = Y with X the samples'
M stacked (B*H*W rows, C columns):
- batches 1-4 (LeNet's split layer): A has more rows than X unknowns:
  least squares recovers M exactly (to float rounding);
- larger batches: underdetermined for M, but M_b = Q_b P_b^T has rank r and
  its channel basis Q_b is the residual's left null space (the residual is
  what the trusted basis leaves), so only P_b (H*W x r) is unknown: least
  squares again (conjugate gradients), determined while B*H*W*r is below
  the K*kh*kw*C equations (LeNet, r = 2: up to batch 32).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F


def lr_at(t, base, total, kind="cosine", min_lr=0.0):
    """The learning rate of step t as the trainer computes it (float32)."""
    if kind == "constant":
        return float(np.float32(base))
    t = min(max(t, 0), total)
    c = 0.5 * (1.0 + math.cos(math.pi * t / total))
    return float(np.float32(min_lr + (base - min_lr) * c))


def gradients(weights, lr, momentum, wd):
    """{s: g_s} from {s: W_s} recorded from step 0 on; lr(s) the schedule."""
    steps = sorted(weights)
    d, g = {}, {}
    for s in steps:
        if s + 1 not in weights or (s > 0 and s - 1 not in d):
            break
        d[s] = (weights[s].double() - weights[s + 1].double()) / lr(s)
        g[s] = d[s] - (momentum * d[s - 1] if s > 0 and momentum else 0) - wd * weights[s].double()
    return g


def residual_part(R, G, wshape, pad):
    return torch.nn.grad.conv2d_weight(R.double(), wshape, G.double(), padding=pad)


def design(G, C, H, W, kh, kw, pad):
    """A: (K*kh*kw, B*H*W), with A[(k,i,j), (b,h,w)] = G[b, k, h - i + p, w - j + p] (stride 1)."""
    B, K = G.shape[0], G.shape[1]
    P = max(kh, kw)
    Gp = F.pad(G.double(), (P, P, P, P))
    rows = []
    for i in range(kh):
        for j in range(kw):
            h0, w0 = P + pad[0] - i, P + pad[1] - j
            rows.append(Gp[:, :, h0:h0 + H, w0:w0 + W])  # (B, K, H, W)
    A = torch.stack(rows, 0).reshape(kh, kw, B, K, H, W).permute(3, 0, 1, 2, 4, 5)
    return A.reshape(K * kh * kw, B * H * W).contiguous()


def target(gM):
    """Y: (K*kh*kw, C) from the gradient (K, C, kh, kw)."""
    K, C, kh, kw = gM.shape
    return gM.permute(0, 2, 3, 1).reshape(K * kh * kw, C)


def unstack(X, B, C, H, W):
    return X.reshape(B, H * W, C).permute(0, 2, 1).reshape(B, C, H, W)


def least_squares(A, Y):
    """Minimum-norm least squares."""
    return torch.linalg.lstsq(A, Y, driver="gelsd").solution


def _cgls(op, adj, y, x, iters):
    r = y - op(x)
    s = adj(r)
    d, gamma = s.clone(), (s * s).sum()
    gamma0 = gamma
    for _ in range(iters):
        q = op(d)
        qq = (q * q).sum()
        if qq <= 0:
            break
        a = gamma / qq
        x, r = x + a * d, r - a * q
        s = adj(r)
        gn = (s * s).sum()
        if gn <= 1e-24 * gamma0:
            break
        d, gamma = s + (gn / gamma) * d, gn
    return x


def trusted_basis(R, tol=1e-2):
    """Each sample's trusted channel basis Q_b (C x r), read off its residual:
    the decomposition leaves R_b = (I - U U^T) X_b, orthogonal to the trusted
    basis U, so the left null space of R_b (as C x H*W) is U's span, and r
    is the count of its singular values that are zero but for the
    decomposition's rounding (measured: 1e-3 of the largest, the next 0.1)."""
    B, C = R.shape[:2]
    U, S, _ = torch.linalg.svd(R.double().reshape(B, C, -1), full_matrices=True)
    r = int((S < tol * S[:, :1]).sum(1).min())
    return U[:, :, C - r:], r


def low_rank(A, Y, Q, B, H, W, iters=2000):
    """M_b = Q_b P_b^T with Q_b known: P by conjugate gradients on the least squares."""
    Ab = A.reshape(A.shape[0], B, H * W)
    # Columns scaled to unit norm (Q's columns are orthonormal, so a column's
    # norm is A's): samples whose output gradients are small would otherwise
    # converge last.
    D = Ab.norm(dim=0).clamp_min(1e-30)[:, :, None]

    def op(p):
        return torch.einsum("nbh,bhr,bcr->nc", Ab, p / D, Q)

    def adj(y):
        return torch.einsum("nbh,nc,bcr->bhr", Ab, y, Q) / D

    P = _cgls(op, adj, Y, torch.zeros(B, H * W, Q.shape[2], dtype=torch.float64), iters) / D
    return torch.einsum("bhr,bcr->bhc", P, Q).reshape(B * H * W, Q.shape[1])


def recover(g, R, G, conv, prior=False):
    """M (B, C, H, W) from one step's gradient g of the layer's weights, its
    residual R and output gradient G: least squares, or with the trusted
    basis read off R (prior)."""
    B, C, H, W = R.shape
    kh, kw = conv["kernel"]
    pad = tuple(conv["pad"])
    if tuple(conv["stride"]) != (1, 1) or G.shape[2:] != R.shape[2:]:
        raise ValueError("updates: only stride-1 'same' convolutions")
    gM = g - residual_part(R, G, g.shape, pad)
    A, Y = design(G, C, H, W, kh, kw, pad), target(gM)
    if prior:
        Q, r = trusted_basis(R)
        X = low_rank(A, Y, Q, B, H, W) if r else least_squares(A, Y)
    else:
        X = least_squares(A, Y)
    return unstack(X, B, C, H, W)


def score(M, R, X):
    """Relative error of M against the true X - R; cosine of M + R with X per sample."""
    Mt = X.double() - R.double()
    err = float((M - Mt).norm() / Mt.norm())
    a, b = (M + R.double()).flatten(1), X.double().flatten(1)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)
    return err, cos
