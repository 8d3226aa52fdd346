"""Label inference from the output gradients that cross in the clear
(asymml mode without --protect-grads): the host groups a batch's samples by
their output gradients, which carry each sample's label through the loss.

Two attacks, both host-only (nothing but the recording):
- nearest neighbour: each sample's closest other sample of its batch by
  cosine; scored by how often the two share a label (chance about 1/classes);
- k-means (k = classes, cosine, restarts) over the batch; scored by cluster
  purity, each cluster counted as its commonest true label (the attacker
  names the clusters with a few public examples; purity is that ceiling).
"""
import torch


def _unit(g):
    g = g.flatten(1).double()
    return g / g.norm(dim=1, keepdim=True).clamp_min(1e-30)


def nearest_neighbour(grads, labels):
    """Samples whose nearest neighbour (cosine) in their batch has their label, and the count."""
    u = _unit(grads)
    c = u @ u.T
    c.fill_diagonal_(-2)
    nn = c.argmax(1)
    return int((labels[nn] == labels).sum()), len(labels)


def kmeans(grads, labels, k, restarts=5, iters=30, seed=0):
    """Samples in clusters of their label's majority, and the count (the best restart by inertia)."""
    u = _unit(grads)
    g = torch.Generator().manual_seed(seed)
    best, best_in = None, None
    k = min(k, len(u))
    for _ in range(restarts):
        cent = u[torch.randperm(len(u), generator=g)[:k]].clone()
        for _ in range(iters):
            a = (u @ cent.T).argmax(1)
            for j in range(k):
                if (a == j).any():
                    m = u[a == j].mean(0)
                    cent[j] = m / m.norm().clamp_min(1e-30)
        inertia = float((1 - (u * cent[a]).sum(1)).sum())
        if best_in is None or inertia < best_in:
            best, best_in = a, inertia
    hit = 0
    for j in range(k):
        members = labels[best == j]
        if len(members):
            hit += int(torch.bincount(members).max())
    return hit, len(labels)


def over_steps(grads, labels, first, classes):
    """Both attacks over {step: gradients}, labels (steps, batch) from step
    first: ((hits, total) by nearest neighbour, (hits, total) by k-means)."""
    nn = [nearest_neighbour(grads[s], labels[s - first]) for s in sorted(grads)]
    km = [kmeans(grads[s], labels[s - first], classes, seed=s) for s in sorted(grads)]
    return tuple((sum(h for h, _ in r), sum(t for _, t in r)) for r in (nn, km))
