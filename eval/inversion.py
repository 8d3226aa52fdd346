"""Gradient inversion (white-box; Geiping et al. 2020, "Inverting Gradients").

The attacker has the trained model (as if published) and, from the weight
updates it saw, the split layer's gradient g of one step (eval/updates.py).
It optimizes a batch of images so that the model's gradient of the same
layer, at the weights that step used (which it saw), points where g does:
loss 1 - cos(grad(x), g) plus a total-variation prior, Adam on pixels in
[0, 1], a few restarts, the best by loss. The labels are given, as in the
paper (the clear output gradients give them away: eval/labels.py).
"""
import torch
import torch.nn.functional as F


def tv(x):
    return (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean() + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean()


def invert(net, layer, w_step, g, labels, shape, mean, std, iters=300, restarts=2, tv_weight=0.01, seed=0):
    """Images (B, C, H, W) in [0, 1] whose gradient of net[layer].weight matches g."""
    conv = net[layer]
    with torch.no_grad():
        conv.weight.copy_(w_step)
    params = [conv.weight]
    gt = g.float().flatten()
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    gen = torch.Generator().manual_seed(seed)
    best, best_loss = None, float("inf")
    for _ in range(restarts):
        x = torch.rand((len(labels),) + tuple(shape), generator=gen).requires_grad_(True)
        opt = torch.optim.Adam([x], lr=0.1)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, [iters * 3 // 8, iters * 5 // 8, iters * 7 // 8], 0.1)
        for _ in range(iters):
            opt.zero_grad()
            loss_ce = F.cross_entropy(net((x - m) / s), labels)
            (gx,) = torch.autograd.grad(loss_ce, params, create_graph=True)
            loss = 1 - F.cosine_similarity(gx.flatten(), gt, dim=0) + tv_weight * tv(x)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                x.clamp_(0, 1)
        final = float(loss.detach())
        if final < best_loss:
            best, best_loss = x.detach().clone(), final
    return best, best_loss
