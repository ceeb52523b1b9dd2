"""The CPU peer for scripts/benchmark.py: the same BN-Inception in PyTorch, timed the same way.

  pip install torch  # not a dependency of the project; only this comparison needs it
  python scripts/dev/benchmark_pytorch.py [--batch_size=32] [--image_size=224] [--steps=10] [--threads=0]

Builds the network from our `INCEPTION_BLOCKS` table (separable stem, BN before every ReLU, per-branch
widths), trains it with SGD + momentum + weight decay on a fixed random batch in float32, and prints
training and forward-only images/s, for NCHW and channels-last memory layouts.
"""

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from bn_inception.models import INCEPTION_BLOCKS, InceptionBlock  # noqa: E402


def unit(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    """conv (no bias) -> BN -> ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout, eps=1e-3), nn.ReLU(inplace=True))


class Block(nn.Module):
    """One Inception module of the table."""

    def __init__(self, cin: int, b: InceptionBlock):
        super().__init__()
        s = b.stride
        self.b1 = unit(cin, b.conv1x1, 1) if b.conv1x1 else None
        self.b3 = nn.Sequential(unit(cin, b.reduce3x3, 1), unit(b.reduce3x3, b.conv3x3, 3, s))
        self.bd = nn.Sequential(unit(cin, b.double_reduce3x3, 1), unit(b.double_reduce3x3, b.double3x3, 3),
                                unit(b.double3x3, b.double3x3, 3, s))
        pool = nn.MaxPool2d(3, s, 1) if b.pool == "max" else nn.AvgPool2d(3, s, 1, count_include_pad=False)
        self.bp = nn.Sequential(pool, unit(cin, b.pool_proj, 1)) if b.pool_proj else pool
        self.out = b.conv1x1 + b.conv3x3 + b.double3x3 + (b.pool_proj or cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = ([self.b1(x)] if self.b1 is not None else []) + [self.b3(x), self.bd(x), self.bp(x)]
        return torch.cat(branches, 1)


def bn_inception(num_classes: int = 1000) -> nn.Sequential:
    """BN-Inception as bn_inception.models.BNInception builds it with its defaults."""
    layers = [nn.Conv2d(3, 24, 7, 2, 3, groups=3, bias=False), unit(24, 64, 1), nn.MaxPool2d(3, 2, 1),
              unit(64, 64, 1), unit(64, 192, 3), nn.MaxPool2d(3, 2, 1)]
    cin = 192
    for block in INCEPTION_BLOCKS.values():
        layers.append(Block(cin, block))
        cin = layers[-1].out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


def images_per_second(step, batch_size: int, steps: int, warmup: int = 2) -> float:
    """Images/s of `step()` over `steps` calls after `warmup`."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - start)


def main() -> None:
    """Times training and forward-only steps in both memory layouts and prints a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, {args.image_size}px, float32")
    print(f"{'layout':16s} {'train img/s':>12s} {'forward img/s':>14s}")
    for layout in (torch.contiguous_format, torch.channels_last):
        model = bn_inception().to(memory_format=layout)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
        x = torch.randn(args.batch_size, 3, args.image_size, args.image_size).to(memory_format=layout)
        y = torch.randint(0, 1000, (args.batch_size,))

        def train_step():
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        def forward():
            with torch.no_grad():
                model(x)

        model.train()
        train_rate = images_per_second(train_step, args.batch_size, args.steps)
        model.eval()
        forward_rate = images_per_second(forward, args.batch_size, args.steps)
        name = "NCHW" if layout is torch.contiguous_format else "channels_last"
        print(f"{name:16s} {train_rate:12.1f} {forward_rate:14.1f}")


if __name__ == "__main__":
    main()
