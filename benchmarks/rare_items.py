"""Where the sequence model ranks held-out items with little history, with and without its text input.

    .venv/bin/python benchmarks/rare_items.py --out DIR [--shapes ratings reviews] [--set KEY=VALUE ...]

Reads the lakes that ``benchmarks/shapes.py --out DIR`` left: under leave-last-out, the
evaluation trains the sequence model on the split's training events twice, with the
language-model input (``seqrec``) and with ID embeddings only (``seqrec_no_text``), each in a
hold-out lake of its own. For every held-out event whose item has fewer than
``eval.rare_item_events`` training events (the split and the count of ``recjobs eval``), each
model ranks the item among the whole catalogue by its score, less what the user's lists leave
out (``rank.exclude_types``, negative reviews). Few lists of 10 reach these items on the
samples, so the rank says more of what the text input does for them than Recall@10 does:
per shape, the events, the median rank, MRR, Recall at 10, 50 and 100, and on how many events
the text model ranks the item higher, lower or equal (with the two-sided sign test's p-value
over the events it is not equal on); then the same over every held-out event,
and over every held-out event ranked among the items whose first event in the lake came no later
than it (leave-last-out ranks every user with the night's models, which know of releases that
came after some users' held-out events).
Users or items without a model vector rank last. ``--set``: the settings ``benchmarks/shapes.py``
was given.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROTOCOL = "leave_last_out"
MODELS = {"seqrec": "", "seqrec_no_text": "-no_text"}
KS = (10, 50, 100)


def held_out(spark, cfg, ds):
    """(held-out events of the split with the item's training-event count and the event's time,
    the date features were built for)."""
    from pyspark.sql import functions as F

    from jobs.common import delta_io
    from jobs.common.settings import EvalSettings
    from jobs.evaluation.splits import split, with_training_events
    from schemas import columns as c

    ev = EvalSettings.from_config(cfg)
    train, test, fds = split(delta_io.read_table(spark, cfg, "events_clean"), PROTOCOL, ds, ev.relevant_types,
                             ev.random_ratio, ev.seed)
    held = with_training_events(test, train).select(c.USER_ID, c.ITEM_ID, "train_events",
                                                    F.col(c.EVENT_TS).alias("held_ts"))
    return held, fds, ev.rare_item_events


def model_lakes(cfg) -> dict:
    """The hold-out lake of each model of MODELS (its configuration), as the evaluation built them."""
    from jobs.evaluation.holdout import holdout_cfg, holdout_name

    return {model: holdout_cfg(cfg, holdout_name(PROTOCOL, suffix)) for model, suffix in MODELS.items()}


def ranks(spark, cfg, hcfg, held, fds):
    """``held`` with ``rank``: the held-out item's place in the whole-catalogue ranking of the
    sequence model of the hold-out lake ``hcfg`` (1 = first), less the exclusions of its training
    events; null when the user or the item has no vector. ``rank_out``: the same among the items
    whose first event (in ``cfg``'s whole lake) came no later than the held-out event, the items
    that were out when the user chose."""
    from pyspark.sql import functions as F

    from jobs.common import delta_io
    from jobs.common.settings import RankSettings
    from jobs.ranking.exclusions import excluded_pairs
    from schemas import columns as c

    read = delta_io.reader(spark, hcfg)
    on = F.col(c.DS) == F.lit(fds)
    users = read("sequence_user_vectors").where(on).select(c.USER_ID, F.col("embedding").alias("u"))
    items = read("sequence_item_vectors").where(on).select(c.ITEM_ID, F.col("embedding").alias("v"))
    rs = RankSettings.from_config(hcfg)
    excluded = excluded_pairs(read("events_clean"), read("user_item_sentiment"), fds, rs.exclude_types,
                              rs.negative_threshold)
    dot = F.aggregate(F.zip_with("u", "v", lambda a, b: a * b), F.lit(0.0), lambda acc, x: acc + x)
    first = (delta_io.read_table(spark, cfg, "events_clean").groupBy(c.ITEM_ID)
             .agg(F.min(c.EVENT_TS).alias("first_ts")))
    items = items.join(first, c.ITEM_ID, "left")
    target = (held.join(users, c.USER_ID).join(items.drop("first_ts"), c.ITEM_ID)
              .select(c.USER_ID, F.col(c.ITEM_ID).alias("target"), "held_ts", "u", dot.alias("t")))
    out = F.col("first_ts").isNotNull() & (F.col("first_ts") <= F.col("held_ts"))
    above = (target.crossJoin(items).where(F.col(c.ITEM_ID) != F.col("target"))
             .join(excluded, [c.USER_ID, c.ITEM_ID], "left_anti")
             .where(dot > F.col("t")).groupBy(c.USER_ID, "target")
             .agg(F.count("*").alias("above"), F.sum(out.cast("int")).alias("above_out")))
    placed = (target.join(above, [c.USER_ID, "target"], "left")
              .select(c.USER_ID, F.col("target").alias(c.ITEM_ID), (F.coalesce("above", F.lit(0)) + 1).alias("rank"),
                      (F.coalesce("above_out", F.lit(0)) + 1).alias("rank_out")))
    return held.join(placed, [c.USER_ID, c.ITEM_ID], "left")


def summary(frame, catalogue: int) -> dict:
    """One row of figures over ``frame`` (user_id, item_id, a rank column per model of MODELS)."""
    from pyspark.sql import functions as F

    figures = [F.count("*").alias("events")]
    for model in MODELS:
        rank = F.coalesce(F.col(model), F.lit(catalogue + 1))
        figures += [F.percentile_approx(rank, 0.5).alias(f"{model}_median"), F.avg(1.0 / rank).alias(f"{model}_mrr")]
        figures += [F.avg((rank <= k).cast("double")).alias(f"{model}_r{k}") for k in KS]
    text, ids = (F.coalesce(F.col(m), F.lit(catalogue + 1)) for m in MODELS)
    figures += [F.sum((text < ids).cast("int")).alias("text_higher"), F.sum((text > ids).cast("int")).alias("text_lower")]
    return frame.agg(*figures).first().asDict()     # one row


def sign_test(higher: int, lower: int) -> float:
    """The two-sided sign test's p-value of ``higher`` wins against ``lower`` losses (ties left out)."""
    from math import comb

    n = higher + lower
    if not n:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(higher, lower) + 1))
    return min(1.0, 2 * tail / 2 ** n)


def placed(spark, cfg, lakes: dict, held, fds):
    """``held`` with two columns per model of ``lakes`` (model -> hold-out lake configuration):
    its ``rank`` under the model's name and its ``rank_out`` as ``<model>_out``."""
    from pyspark.sql import functions as F

    from schemas import columns as c

    frame = held
    for model, hcfg in lakes.items():
        frame = frame.join(ranks(spark, cfg, hcfg, held, fds).select(
            c.USER_ID, c.ITEM_ID, F.col("rank").alias(model), F.col("rank_out").alias(f"{model}_out")),
            [c.USER_ID, c.ITEM_ID], "left")
    return frame


def rows(shape: str, selections, catalogue: int) -> list[str]:
    """A table row (see HEADER) per (label, frame) of ``selections``."""
    lines = []
    for label, frame in selections:
        s = summary(frame, catalogue)
        if not s["events"]:
            lines.append(f"| {shape} | {label} | 0 | - | - | - |")
            continue
        cells = []
        for model in MODELS:
            cells.append(f"{s[f'{model}_median']:.0f} / {s[f'{model}_mrr']:.4f} / "
                         + " / ".join(f"{s[f'{model}_r{k}']:.3f}" for k in KS))
        same = s["events"] - s["text_higher"] - s["text_lower"]
        lines.append(f"| {shape} | {label} | {s['events']:,} | {cells[0]} | {cells[1]} | "
                     f"{s['text_higher']} / {s['text_lower']} / {same} "
                     f"(p = {sign_test(s['text_higher'], s['text_lower']):.2g}) |")
    return lines


def report(spark, shape: str, cfg, ds) -> list[str]:
    """The table rows of one shape's lake: its rare held-out items, then every held-out item."""
    from pyspark.sql import functions as F

    from jobs.common import delta_io
    from schemas import columns as c

    held, fds, rare_below = held_out(spark, cfg, ds)
    held = held.persist()
    catalogue = delta_io.read_table(spark, cfg, "items_clean").count()
    frame = placed(spark, cfg, model_lakes(cfg), held, fds).persist()
    out_only = frame.select(c.USER_ID, c.ITEM_ID, *[F.col(f"{m}_out").alias(m) for m in MODELS])
    lines = rows(shape, [(f"fewer than {rare_below} training events", frame.where(F.col("train_events") < rare_below)),
                         ("every held-out item", frame),
                         ("every held-out item, among the items out by then", out_only)], catalogue)
    frame.unpersist()
    held.unpersist()
    return lines


HEADER = ["| shape | held-out items | events | seqrec: median rank / MRR / R@10 / R@50 / R@100 | "
          "seqrec_no_text: the same | text ranks it higher / lower / equal (sign test) |",
          "| --- | --- | --- | --- | --- | --- |"]


def shape_lakes(root: str, shapes: list[str], overrides: list[str], needs: str):
    """``(shape, configuration, date)`` of each shape's lake that ``benchmarks/shapes.py --out
    root`` left (with its ``--set`` ``overrides``); exits naming the command to run first when a
    lake has no ``needs`` folder."""
    import datetime as dt
    import json

    from benchmarks.shapes import bench_cfg

    for shape in shapes:
        out = Path(root) / shape
        truth = out / "sample" / "ground_truth.json"
        if not (out / "lake" / needs).is_dir() or not truth.is_file():
            raise SystemExit(f"{out}: no benchmark lake with {needs} here; run "
                             f"benchmarks/shapes.py --out {root} --shapes {shape} first")
        ds = dt.date.fromisoformat(json.loads(truth.read_text())["end_date"])
        yield shape, bench_cfg(out, out / "sample" / "recjobs.yaml", [PROTOCOL], overrides), ds


def main(argv: list[str] | None = None) -> int:
    from benchmarks.shapes import SIZES

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the folder benchmarks/shapes.py wrote (one sub-folder per shape)")
    parser.add_argument("--shapes", nargs="+", default=["ratings", "reviews"], choices=list(SIZES))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="the --set benchmarks/shapes.py was given (repeatable)")
    args = parser.parse_args(argv)

    from conf import CONF_DIR
    from jobs.common.config import load_config
    from jobs.common.session import get_spark

    spark = get_spark(load_config([CONF_DIR / "local.yaml"]), app_name="recjobs-bench-rare-items")
    lines = list(HEADER)
    for shape, cfg, ds in shape_lakes(args.out, args.shapes, args.overrides, "_holdout"):
        lines += report(spark, shape, cfg, ds)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
