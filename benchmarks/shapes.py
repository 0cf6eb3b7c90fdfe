"""The learned blend against the fixed weights and the baselines, on every sample shape.

    .venv/bin/python benchmarks/shapes.py --out DIR [--shapes shop ratings reviews] [--users N ...] [--items M ...]
        [--set KEY=VALUE ...]

For each shape: a sample (``--users``/``--items`` per shape, the shape's default days), the
nightly with the local configuration and the shape's suggested settings (what
``recjobs demo --shape S`` runs), evaluated under leave-last-out (``--protocols`` adds next-day). Under
leave-last-out the product is the night's own blend, learned from half of the users' held-out
events, scored on the other half (next-day: learned on a hold-out nested in the split's
training events), and the same users are ranked with the fixed weights
(``blend_fixed``), without the sequence model (``blend_no_sequence``), without the item
neighbours (``blend_no_neighbours``), the sequence model alone
(``seqrec``) and trained without text (``seqrec_no_text``), and the baselines (EASE, popularity,
co-occurrence, ALS). Prints Recall@10 / NDCG@10 per shape and protocol (and on held-out items with fewer than
five training events), the blend's NDCG@10 minus each model's with its paired bootstrap interval,
the weights the night learned next to the fixed ones, the seconds each night and its slowest
stages took, and where the sequence model ranks the held-out items with and without its text
input (``benchmarks/rare_items.py``). ``--set`` changes a setting of every night (the same
syntax as ``recjobs --set``), e.g. ``--set seqrec.id_dropout=0.5``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ("blend", "blend_no_sequence", "blend_no_neighbours", "blend_fixed", "seqrec", "seqrec_no_text", "ease", "popularity",
          "cooccurrence", "als")
RARE = ("seqrec", "seqrec_no_text", "blend", "ease")
# users, items per shape by default: the ratings and reviews catalogues in the proportions of the
# public sets they imitate (MovieLens-100k: 943 users, 1,682 films; an Amazon 5-core subset: about
# 1.8 reviewers an item), where held-out items with little history occur as they do there
SIZES = {"shop": (400, 300), "ratings": (600, 1000), "reviews": (1500, 800)}


def bench_cfg(out: Path, sample_conf, protocols: list[str], overrides: list[str] | None = None):
    """The configuration of one shape's benchmark night in ``out``: the local one, the sample's
    suggested settings, the lake and reports in ``out``, every model of the table evaluated, then
    ``overrides`` (``KEY=VALUE``)."""
    from conf import CONF_DIR
    from jobs.common.config import load_config

    return load_config([CONF_DIR / "local.yaml", sample_conf], [
        f"lake.root={out / 'lake'}", f"dq.docs_dir={out / 'reports' / 'dq'}", f"report.dir={out / 'reports'}",
        # the default configuration's sequence window (conf/local.yaml shortens it for the demo)
        "seqrec.max_len=50",
        f"eval.protocols=[{','.join(protocols)}]", "eval.ablations=[no_sequence,no_neighbours]",
        "eval.baselines=[popularity,cooccurrence,als,ease,seqrec,seqrec_no_text]", "eval.ks=[10]",
        *(overrides or [])])


def night(spark, out: Path, shape: str, users: int, items: int, seed: int, protocols: list[str],
          overrides: list[str] | None = None) -> dict:
    from jobs.nightly import run_nightly
    from jobs.sample_data import DEFAULT_DAYS, SampleSpec, generate

    spec = SampleSpec(shape=shape, users=users, items=items, days=DEFAULT_DAYS[shape], seed=seed)
    truth = generate(out / "sample", spec)
    cfg = bench_cfg(out, truth["conf"], protocols, overrides)
    t0 = time.monotonic()
    result = run_nightly(spark, cfg, spec.end_date, force=True, echo=lambda *a, **k: None)
    if result["exit_code"]:
        raise SystemExit(f"{shape}: the nightly failed: {result['error']}")
    return {"cfg": cfg, "ds": spec.end_date, "seconds": time.monotonic() - t0, "result": result}


def table(spark, shape: str, run: dict, protocols: list[str]) -> list[str]:
    from pyspark.sql import functions as F

    from jobs.common import delta_io
    from jobs.common.metrics import gap_text

    rows = (delta_io.read_table(spark, run["cfg"], "metrics").where(F.col("ds") == F.lit(run["ds"]))
            .where((F.col("k") == 10) & F.col("metric").isin("recall", "ndcg", "recall_rare", "ndcg_rare", "ndcg_gap"))
            .collect())   # a row a metric
    got = {(r["protocol"], r["model"], r["metric"]): (r["value"], r["users"]) for r in rows}
    gaps = {(r["protocol"], r["model"]): gap_text(r["value"], r["ci_low"], r["ci_high"])
            for r in rows if r["metric"] == "ndcg_gap"}
    lines = []
    for protocol in protocols:
        users = next((u for (p, _, _), (_, u) in got.items() if p == protocol), 0)
        cells = []
        for model in MODELS:
            recall, ndcg = got.get((protocol, model, "recall")), got.get((protocol, model, "ndcg"))
            cells.append(f"{recall[0]:.3f} / {ndcg[0]:.3f}" if recall and ndcg else "-")
        lines.append(f"| {shape} | {protocol} ({users:,}) | " + " | ".join(cells) + " |")
        rare = []
        for model in RARE:
            recall, ndcg = got.get((protocol, model, "recall_rare")), got.get((protocol, model, "ndcg_rare"))
            rare.append(f"{model} {recall[0]:.3f} / {ndcg[0]:.3f}" if recall and ndcg else f"{model} -")
        lines.append(f"|   | held-out items with fewer than 5 training events: {'; '.join(rare)} |")
        against = [f"{m} {gaps[(protocol, m)]}" for m in MODELS if (protocol, m) in gaps]
        lines.append(f"|   | blend minus each model, NDCG@10 (paired 95% interval): {'; '.join(against)} |")
    return lines


def weights(spark, shape: str, run: dict) -> str:
    from jobs.common.settings import RankSettings

    blend = run["result"]["results"]["rank_topn"]["blend"]
    fixed = RankSettings.from_config(run["cfg"]).weights
    learned = blend.get("weights") or {}
    parts = [f"{n} {fixed[n]:.2f} -> {learned.get(n, 0.0):.2f}" for n in fixed]
    return (f"{shape}: {blend['source']} ({blend.get('chosen', 'fixed')}), half-lives {blend.get('half_lives')}; "
            f"weights fixed -> tonight: " + ", ".join(parts))


def stage_seconds(spark, run: dict, top: int = 6) -> str:
    """The night's slowest stages and fit_neighbours, by their ``runs`` rows."""
    from pyspark.sql import functions as F

    from jobs.common import delta_io

    rows = (delta_io.read_table(spark, run["cfg"], "runs").where(F.col("ds") == F.lit(run["ds"]))
            .where(F.col("status") == "succeeded").groupBy("stage").agg(F.max("duration_s").alias("s"))
            .collect())   # a row a stage
    seconds = {r["stage"]: r["s"] for r in rows}
    slow = sorted(seconds, key=seconds.get, reverse=True)[:top]
    if "fit_neighbours" in seconds and "fit_neighbours" not in slow:
        slow.append("fit_neighbours")
    return ", ".join(f"{name} {seconds[name]:.0f} s" for name in slow)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for the samples and lakes (one per shape)")
    parser.add_argument("--shapes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--users", type=int, nargs="*", help="users per shape (in --shapes order)")
    parser.add_argument("--items", type=int, nargs="*", help="items per shape (in --shapes order)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--protocols", nargs="+", default=["leave_last_out"], choices=["leave_last_out", "next_day"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for every night, as recjobs --set (repeatable)")
    args = parser.parse_args(argv)

    from conf import CONF_DIR
    from jobs.common.config import load_config
    from jobs.common.session import get_spark

    spark = get_spark(load_config([CONF_DIR / "local.yaml"]), app_name="recjobs-bench-shapes")
    runs = {}
    for i, shape in enumerate(args.shapes):
        users = args.users[i] if args.users else SIZES[shape][0]
        items = args.items[i] if args.items else SIZES[shape][1]
        print(f"{shape}: {users} users, {items} items ...", flush=True)
        runs[shape] = night(spark, Path(args.out) / shape, shape, users, items, args.seed, args.protocols,
                            args.overrides)
        print(f"{shape}: nightly in {runs[shape]['seconds']:.0f} s", flush=True)
    print("\nRecall@10 / NDCG@10")
    print("| shape | protocol (users) | " + " | ".join(MODELS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in MODELS) + " |")
    for shape, run in runs.items():
        print("\n".join(table(spark, shape, run, args.protocols)))
    print()
    for shape, run in runs.items():
        print(weights(spark, shape, run))
    print()
    for shape, run in runs.items():
        print(f"{shape}: {stage_seconds(spark, run)}")
    if "leave_last_out" in args.protocols:
        from benchmarks.rare_items import HEADER, report

        print("\nWhere the sequence model ranks held-out items, with and without its text input "
              "(benchmarks/rare_items.py):")
        print("\n".join(HEADER + [line for shape, run in runs.items() for line in report(spark, shape, run["cfg"],
                                                                                          run["ds"])]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
