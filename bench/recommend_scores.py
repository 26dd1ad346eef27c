"""What batch-independent factor scores cost: ``users @ items`` in float32 (BLAS order
depends on the batch) against segmint's ``block_product`` (float64 products rounded to
float32, the same bits in any batch), side by side, and whether each is batch-independent.

    .venv/bin/python bench/recommend_scores.py [--users 100000] [--items 5000] [--factors 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from segmint.recommend._models import block_product  # noqa: PLC2701 (the function measured)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=5_000)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    users = rng.standard_normal((args.users, args.factors)).astype(np.float32)
    items = rng.standard_normal((args.factors, args.items)).astype(np.float32)
    items64 = items.astype(np.float64)
    ways = {
        "float32 matmul": lambda u: u @ items,
        "block_product": lambda u: block_product(u, items64),
    }
    print(
        f"{args.users:,} users x {args.factors} factors x {args.items:,} items, batches of {args.batch:,}"
    )
    print("| way | seconds | same scores for 200 users scored one by one |")
    print("|---|---:|---|")
    for name, score in ways.items():
        t0 = time.perf_counter()
        for start in range(0, args.users, args.batch):
            score(users[start : start + args.batch])
        seconds = time.perf_counter() - t0
        whole = score(users[:200])
        alone = np.vstack([score(users[i : i + 1]) for i in range(200)])
        print(f"| {name} | {seconds:.2f} | {bool((whole == alone).all())} |")


if __name__ == "__main__":
    main()
