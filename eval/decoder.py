"""The learned decoder (the paper's model-inversion attack, made stronger):
a small convolutional network trained on the attacker's auxiliary set to
map what the host sees of a split layer (its residual, or a recovered or
whole layer input) back to the input image; loss L1 + (1 - SSIM).
Also the independent classifier that judges the reconstructions."""
import torch
import torch.nn as nn
import torch.nn.functional as F

import metrics


class Decoder(nn.Module):
    def __init__(self, channels, size_in, size_out, width=48):
        super().__init__()
        ups, s, w = [], size_in, width
        while s < size_out:
            ups += [nn.ConvTranspose2d(w, w // 2, 4, 2, 1), nn.ReLU()]
            s, w = s * 2, w // 2
        self.net = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), *ups,
                                 nn.Conv2d(w, 1, 3, padding=1))
        self.size_out = size_out

    def forward(self, v):
        y = self.net(v)
        if y.shape[-1] != self.size_out:
            y = F.interpolate(y, size=(self.size_out, self.size_out), mode="bilinear", align_corners=False)
        return torch.sigmoid(y)


def ssim_loss(x, y):
    c = x.shape[1]
    w = metrics._window(c).float()
    mu_x, mu_y = F.conv2d(x, w, groups=c), F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x ** 2
    syy = F.conv2d(y * y, w, groups=c) - mu_y ** 2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return 1 - m.mean()


def train(views, images, epochs=5, batch=128, seed=0):
    """A decoder from views (N, C, h, w) to images (N, 1, H, W); returns
    (decoder, scale): scale standardizes each channel of a view."""
    torch.manual_seed(seed)
    v = views.float()
    scale = (v.mean((0, 2, 3), keepdim=True), v.std((0, 2, 3), keepdim=True).clamp_min(1e-12))
    dec = Decoder(views.shape[1], views.shape[-1], images.shape[-1])
    opt = torch.optim.Adam(dec.parameters(), lr=2e-3)
    n = len(views)
    steps = epochs * (n // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(n // batch):
            idx = perm[i * batch:(i + 1) * batch]
            out = dec(standard(views[idx], scale))
            y = images[idx]
            loss = F.l1_loss(out, y) + ssim_loss(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    dec.eval()
    return dec, scale


def standard(v, scale):
    return (v.float() - scale[0]) / scale[1]


@torch.no_grad()
def reconstruct(dec, scale, views, batch=500):
    return torch.cat([dec(standard(views[i:i + batch], scale)) for i in range(0, len(views), batch)])


class Classifier(nn.Module):
    def __init__(self, size):
        super().__init__()
        s = size // 4
        self.net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(64 * s * s, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.net((x - 0.286) / 0.353)


def train_classifier(images, labels, epochs=4, batch=128, seed=0):
    """An independent judge of reconstructions, trained on the auxiliary set alone."""
    torch.manual_seed(seed)
    clf = Classifier(images.shape[-1])
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(images), generator=g)
        for i in range(len(images) // batch):
            idx = perm[i * batch:(i + 1) * batch]
            loss = F.cross_entropy(clf(images[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    clf.eval()
    return clf


@torch.no_grad()
def accuracy(clf, images, labels):
    return float((clf(images).argmax(1) == labels).float().mean())
