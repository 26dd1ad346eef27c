"""Offline evaluation of every recommender on the real UCI Online Retail II data (2009-2010).

The export in ../shared/data is ingested through examples/online-retail/segmint.yaml (in a
temporary folder, with an RFM segmentation added for segment popularity), then
``evaluate_models`` compares the models on a time split: training before the cut, test =
completed purchases in the 30 days after it. The shop sells giftware to many wholesalers,
who reorder the same items, so two settings are reported:

* ``new items``   already bought items are filtered out (and are not relevant): what else
  will the customer buy?
* ``reorders too`` nothing is filtered: every purchase in the window is relevant.

Quantities run into the thousands, so line quantities are scaled with ``ln(1 + q)``.

    .venv/bin/python bench/recommend_retail.py [--cut 2010-11-09] [--test-days 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from _common import table as md_table

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "online-retail"
DATA = HERE.parent.parent / "shared" / "data"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cut", default="2010-11-09")
    p.add_argument("--test-days", type=int, default=30)
    p.add_argument("--k", type=int, default=10)
    a = p.parse_args()

    import segmint
    from segmint.config import RecommendConfig
    from segmint.recommend import Filters, evaluate_models

    data = Path(os.environ.get("SEGMINT_SHARED_DATA", DATA))
    if not (data / "online_retail_II_2009_2010.parquet").exists():
        raise SystemExit(f"{data}/online_retail_II_2009_2010.parquet is missing")
    with tempfile.TemporaryDirectory(prefix="segmint-retail-") as tmp:
        # the example's paths are relative: examples/online-retail -> ../../../shared/data
        proj = Path(tmp) / "a" / "examples" / "online-retail"
        proj.mkdir(parents=True)
        config = yaml.safe_load((EXAMPLE / "segmint.yaml").read_text())
        config["segmentations"] = {"rfm": {"type": "rfm"}}
        (proj / "segmint.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (Path(tmp) / "shared").mkdir()
        (Path(tmp) / "shared" / "data").symlink_to(data.resolve())
        t0 = time.perf_counter()
        project = segmint.open_project(proj)
        project.ingest()
        project.segment(["rfm"], as_of=a.cut)
        print(f"ingested and segmented in {time.perf_counter() - t0:.1f} s", flush=True)
        cfg = RecommendConfig(
            quantity="log",
            segmentation="rfm",
            models=[
                "popularity",
                "segment_popularity",
                "item_knn",
                "als",
                "bpr",
                "content",
                "hybrid",
            ],
        )
        print(f"# Online Retail II, cut {a.cut}, test {a.test_days} days, k = {a.k}")
        print(f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC}, load {os.getloadavg()[0]:.2f}\n")
        for label, filters in (
            ("new items (already bought filtered out)", Filters(exclude_purchased=True)),
            ("reorders too (nothing filtered)", Filters(exclude_purchased=False)),
        ):
            t0 = time.perf_counter()
            r = evaluate_models(
                project.store,
                cut=a.cut,
                test_days=a.test_days,
                k=a.k,
                config=cfg,
                filters=filters,
                save=False,
            )
            print(f"## {label}: {r.n_users:,} users evaluated, {r.n_cold_users:,} new buyers")
            print(
                f"best {r.best}, NDCG@{a.k} gain of the best personalised model over "
                f"popularity {r.gain_over_popularity:+.1%}; {time.perf_counter() - t0:.1f} s\n"
            )
            cols = [c for c in r.table.columns]
            rows = [
                [str(name), *(f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}" for v in row)]
                for name, row in zip(r.table.index, r.table.to_numpy(), strict=True)
            ]
            print(md_table(["model", *cols], rows))
            print()
        project.close()
    shutil.rmtree(HERE / "out" / "retail", ignore_errors=True)


if __name__ == "__main__":
    main()
