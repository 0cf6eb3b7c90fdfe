"""The clean stage at two sizes, side by side in one Spark session.

    python benchmarks/clean.py [--small 100000] [--factor 10] [--days 210] [--keep DIR]

Generates the ``ratings`` shape (a movie-rating site: bursts of ratings over months, the planted
faults of every sample) at about ``--small`` raw events and ``--factor`` times that, over
``--days`` days (200+ by default, so the clean window spans 200+ ``event_date`` partitions), then
runs the clean stage on each into a fresh lake with the local configuration (``conf/local.yaml``,
whose shuffle settings the session sizes from its cores). A small warm-up run comes first, so
that neither size pays the JVM's start. Prints, per size: raw events, seconds, raw events per
second, the ``event_date`` partitions written and the files per partition (max and mean), and
the time ratio of the two sizes next to the ratio of their events.
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.sample_data import SampleSpec, generate  # noqa: E402

EVENTS_PER_USER = 46          # the ratings shape's median ratings per user (measured on its samples)


def sample(root: Path, events: int, days: int, seed: int) -> tuple[Path, dict]:
    users = max(10, events // EVENTS_PER_USER)
    spec = SampleSpec(shape="ratings", users=users, items=max(200, users // 2), days=days, seed=seed)
    t0 = time.monotonic()
    truth = generate(root, spec)
    print(f"  generated {truth['raw_event_rows']:,} raw events ({users:,} users) in {time.monotonic() - t0:.1f} s",
          flush=True)
    return root, truth


def clean_once(spark, base_cfg, folder: Path, lake: Path, spec_days: int) -> dict:
    from pyarrow import table

    from deltalake import DeltaTable
    from jobs.common.config import with_values
    from jobs.common.runner import run_stage

    cfg = with_values(base_cfg, {"lake.root": str(lake), "input.events_path": str(folder / "events"),
                                 "input.items_path": str(folder / "items"), "clean.window_days": spec_days})
    end = dt.date.fromisoformat("2026-06-30")
    t0 = time.monotonic()
    summary = run_stage(spark, cfg, "clean", end, "bench")
    seconds = time.monotonic() - t0
    files = table(DeltaTable(str(lake / "events_clean")).get_add_actions(flatten=True)).to_pandas()
    per_partition = files.groupby("partition.event_date").size()
    return {"raw": summary["events"]["raw"], "clean": summary["events"]["clean"], "seconds": seconds,
            "partitions": int(len(per_partition)), "files_max": int(per_partition.max()),
            "files_mean": float(per_partition.mean()), "identity": summary["events"]["identity_holds"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=100_000, help="raw events of the smaller size")
    parser.add_argument("--factor", type=int, default=10, help="the larger size is this many times the smaller")
    parser.add_argument("--days", type=int, default=210, help="days of history (event_date partitions)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--keep", default=None, help="folder to keep the samples and lakes in (default: a temp dir)")
    args = parser.parse_args(argv)

    from conf import CONF_DIR
    from jobs.common.config import load_config
    from jobs.common.runner import setup_logging
    from jobs.common.session import get_spark

    setup_logging("WARNING")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="recjobs-bench-clean-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = load_config([CONF_DIR / "local.yaml"])
    cfg["spark"]["conf"].pop("spark.sql.shuffle.partitions", None)   # let the session size it from its cores
    spark = get_spark(cfg, app_name="recjobs-bench-clean")
    print(f"Spark {spark.version}, master {spark.sparkContext.master}, "
          f"shuffle partitions {spark.conf.get('spark.sql.shuffle.partitions')}", flush=True)
    try:
        print("warm-up:", flush=True)
        warm, _ = sample(work / "warm", 2_000, args.days, args.seed + 1)
        clean_once(spark, cfg, warm, work / "warm-lake", args.days)
        results = []
        for size in (args.small, args.small * args.factor):
            print(f"size {size:,}:", flush=True)
            folder, _ = sample(work / f"s{size}", size, args.days, args.seed)
            results.append(clean_once(spark, cfg, folder, work / f"lake-{size}", args.days))
    finally:
        spark.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'raw events':>12} {'clean':>12} {'seconds':>9} {'events/s':>10} {'partitions':>11} "
          f"{'files/partition max':>20} {'mean':>6}  identity")
    for r in results:
        print(f"{r['raw']:>12,} {r['clean']:>12,} {r['seconds']:>9.1f} {r['raw'] / r['seconds']:>10,.0f} "
              f"{r['partitions']:>11} {r['files_max']:>20} {r['files_mean']:>6.2f}  {'holds' if r['identity'] else 'BROKEN'}")
    small, large = results
    print(f"\n{large['raw'] / small['raw']:.1f}x the events took {large['seconds'] / small['seconds']:.2f}x the time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
