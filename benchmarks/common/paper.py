"""The DDPM paper's CIFAR-10 figures (Ho et al. 2020, §4.3 and Table 4), for side-by-side
reports. Rate is cumulative bits/dim; RMSE of x̂_0 on [0, 255]; full test set."""

from diffcodec.nll import PAPER_CIFAR10 as SPLIT  # rate 1.78, distortion 1.97, total 3.75, RMSE 0.95

__all__ = ["SPLIT", "TABLE4"]

# (reverse steps done T − t + 1, cumulative rate bits/dim, RMSE)
TABLE4 = [
    (1000, 1.77581, 0.95136), (900, 0.11994, 12.02277), (800, 0.05415, 18.47482),
    (700, 0.02866, 24.43656), (600, 0.01507, 30.80948), (500, 0.00716, 38.03236),
    (400, 0.00282, 46.12765), (300, 0.00081, 54.18826), (200, 0.00013, 60.97170),
]
