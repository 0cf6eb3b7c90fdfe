"""Items made cold on purpose: what the text input does for items with almost no history, on every shape.

    .venv/bin/python benchmarks/cold_items.py --out DIR [--shapes shop ratings reviews] [--share 0.2]
        [--keep last|first] [--seed 3] [--set KEY=VALUE ...]

Under leave-last-out the samples, like the public sets they imitate, hold few held-out items with
fewer than ``eval.rare_item_events`` (5) training events: about one in a hundred events on a
rating site, none in a shop whose small catalogue is viewed every day. ``benchmarks/rare_items.py``
ranks those few. This benchmark makes many: it takes the leave-last-out split of a lake that
``benchmarks/shapes.py --out DIR`` left (the split of ``recjobs eval``) and picks a seeded share
(``--share``) of the items held out for some user. Of each picked item's training events it keeps
0 to 4 (how many is seeded per item) and drops the rest from the training events: the users who
met it otherwise never did. ``--keep last`` (the default) keeps its last events before the
cut-off, as if it had just come out (the cold start of a new arrival); ``--keep first`` keeps its
first, as if it had been out all along and hardly anyone chose it (the long tail). The sequence
model is trained on these events twice, with the shape's settings, once with its language-model
input and once with ID embeddings only (the evaluation's ``seqrec`` and ``seqrec_no_text``), each
in a hold-out lake of its own (``<lake>/_holdout/leave_last_out-cold`` and ``-cold-no_text``),
and each ranks every held-out event's item among the whole catalogue, less what the user's lists
leave out (as ``benchmarks/rare_items.py`` does, with its columns): the cold items with no
training event left, those with 1 to 4, and the other held-out items, with the sign test of the
text model ranking it higher. Without text, an item with no training event keeps the ID vector
it started with. A lake already trained from the same split, share, seed, ``--keep`` and settings
is ranked as it is. ``--set``: the settings ``benchmarks/shapes.py`` was given, or a training
setting to compare (``--set seqrec.patience=60 --set seqrec.epochs=45`` trains 45 epochs without
the early stop).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.rare_items import HEADER, MODELS, PROTOCOL  # noqa: E402

# the lakes of the two trainings, under the split's hold-out lake name, with the settings that
# tell them apart (those of the evaluation's seqrec_no_text)
COLD = {"seqrec": ("-cold", {}),
        "seqrec_no_text": ("-cold-no_text", {"seqrec.use_text": False, "seqrec.id_embeddings": True})}
STAGES = ("build_sequences", "train_seqrec")
assert list(COLD) == list(MODELS)      # the ranks go in the columns of benchmarks/rare_items.py


def thin(train, held, share: float, below: int, seed: int, which: str = "last"):
    """(``train`` with only ``keep`` events of each cold item, the cold items with ``keep``). The
    cold items are a share of the distinct items of ``held`` by a seeded hash of the id; ``keep``
    is 0 to ``below - 1`` by another; the events kept are the item's last (``which="last"``) or
    first (``"first"``) by time, the event id breaking ties."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from schemas import columns as c

    if not 0.0 < share <= 1.0:
        raise ValueError(f"--share must be in (0, 1], got {share}")
    if which not in ("last", "first"):
        raise ValueError(f"--keep must be last or first, got {which!r}")
    if below < 1:
        raise ValueError(f"eval.rare_item_events must be at least 1, got {below}")
    scale = 1_000_000
    cold = (held.select(c.ITEM_ID).distinct()
            .where(F.pmod(F.xxhash64(c.ITEM_ID, F.lit(seed)), F.lit(scale)) < F.lit(int(round(share * scale))))
            .withColumn("keep", F.pmod(F.xxhash64(c.ITEM_ID, F.lit(seed + 1)), F.lit(below)).cast("int")))
    cold = F.broadcast(cold)     # a share of the held-out items: at most the catalogue
    order = [c.EVENT_TS, c.EVENT_ID] if which == "first" else [F.col(c.EVENT_TS).desc(), F.col(c.EVENT_ID).desc()]
    kept = (train.join(cold, c.ITEM_ID).withColumn("_n", F.row_number().over(Window.partitionBy(c.ITEM_ID)
                                                                             .orderBy(*order)))
            .where(F.col("_n") <= F.col("keep")).drop("keep", "_n"))
    return train.join(cold, c.ITEM_ID, "left_anti").unionByName(kept), cold


def build(spark, cfg, ds, share: float, seed: int, which: str = "last", run_id: str = "bench-cold-items"):
    """Split the lake's events, thin them (:func:`thin`) and train both models on them.
    Returns (held-out events with ``train_events`` counted in the thinned training events and
    ``keep`` (null for an item not made cold), checkpointed; the date the models are of, model ->
    lake configuration)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from jobs.common import delta_io
    from jobs.common.settings import EvalSettings
    from jobs.evaluation.holdout import (build_features, events_source, history_days, holdout_cfg, holdout_name,
                                         split_source)
    from jobs.evaluation.splits import split, with_training_events
    from schemas import columns as c

    ev = EvalSettings.from_config(cfg)
    train, test, fds = split(delta_io.read_table(spark, cfg, "events_clean"), PROTOCOL, ds, ev.relevant_types,
                             ev.random_ratio, ev.seed)
    # the split once: the span, the thinning for both lakes and the held-out rows read it
    train = train.persist(StorageLevel.MEMORY_AND_DISK)
    test = test.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        thinned, cold = thin(train, test, share, ev.rare_item_events, seed, which)
        source = split_source(events_source(spark, cfg), PROTOCOL, ds, ev.relevant_types, cold_share=share,
                              cold_seed=seed, cold_below=ev.rare_item_events, cold_keep=which)
        span = history_days(train, fds)
        lakes = {}
        for model, (suffix, values) in COLD.items():
            lakes[model] = holdout_cfg(cfg, holdout_name(PROTOCOL, suffix), values, span)
            build_features(spark, cfg, lakes[model], thinned, fds, run_id, STAGES, source=source)
        held = (with_training_events(test, delta_io.read_table(spark, lakes["seqrec"], "events_clean"))
                .join(cold, c.ITEM_ID, "left")
                .select(c.USER_ID, c.ITEM_ID, "train_events", "keep", F.col(c.EVENT_TS).alias("held_ts"))
                .localCheckpoint())
    finally:
        train.unpersist()
        test.unpersist()
    return held, fds, lakes


def report(spark, shape: str, cfg, ds, share: float, seed: int, which: str = "last") -> list[str]:
    """The table rows of one shape's lake (HEADER's columns): the cold items with none of their
    training events left, with 1 to 4, and the other held-out items."""
    from pyspark.sql import functions as F

    from benchmarks.rare_items import placed, rows
    from jobs.common import delta_io
    from jobs.common.settings import EvalSettings

    held, fds, lakes = build(spark, cfg, ds, share, seed, which)
    catalogue = delta_io.read_table(spark, cfg, "items_clean").count()
    frame = placed(spark, cfg, lakes, held, fds).persist()
    below = EvalSettings.from_config(cfg).rare_item_events
    lines = rows(shape, [("cold, no training event left", frame.where(F.col("keep") == 0)),
                         (f"cold, 1 to {below - 1} training events left", frame.where(F.col("keep") > 0)),
                         ("not made cold", frame.where(F.col("keep").isNull()))], catalogue)
    frame.unpersist()
    return lines


def main(argv: list[str] | None = None) -> int:
    from benchmarks.rare_items import shape_lakes
    from benchmarks.shapes import SIZES

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the folder benchmarks/shapes.py wrote (one sub-folder per shape)")
    parser.add_argument("--shapes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--share", type=float, default=0.2, help="share of the held-out items made cold (0 to 1)")
    parser.add_argument("--keep", choices=["last", "first"], default="last",
                        help="which of a cold item's training events are kept: its last (new) or first (long tail)")
    parser.add_argument("--seed", type=int, default=3, help="seed of the choice of cold items and of their events kept")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="the --set benchmarks/shapes.py was given (repeatable)")
    args = parser.parse_args(argv)

    from conf import CONF_DIR
    from jobs.common.config import load_config
    from jobs.common.session import get_spark

    spark = get_spark(load_config([CONF_DIR / "local.yaml"]), app_name="recjobs-bench-cold-items")
    lines = list(HEADER)
    for shape, cfg, ds in shape_lakes(args.out, args.shapes, args.overrides, "events_clean"):
        lines += report(spark, shape, cfg, ds, args.share, args.seed, args.keep)
        print(f"{shape}: trained and ranked", flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
