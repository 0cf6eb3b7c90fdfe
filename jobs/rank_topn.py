"""rank_topn: candidates -> blended score -> exclusions, diversity -> per-user top-N with reasons.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 \\
        jobs/rank_topn.py --date 2026-06-30 --conf conf/cluster.yaml

Candidates: (a) blocked top-K of user vectors against the item matrix (``udfs/topk.py``; the
matrix goes to executors whole up to ``rank.broadcast_max_items`` rows, in shards beyond that,
merged with a second top-K), (b) association rules fired by the user's newest items, (c) decayed
popularity (all a cold user gets), (d) the items of the user's sequence. Features per (user,
candidate): semantic cosine, topic affinity, item sentiment, rule confidence, popularity, and the
user's time-decayed interest in the item itself (engagement) and in its category; each
standardised over all candidates and blended with ``rank.weights``. Purchased items and items
the user reviewed negatively are excluded, near neighbours of the latter demoted; at most
``rank.max_per_category`` items per category and, when set, ``rank.max_engaged`` items the user
already engaged with. Ties break on item id. Writes the ds partition of ``recommendations_staging``; the
publish stage copies it into ``recommendations``.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Callable, Mapping

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.build_sequences import age_days, lookup
from jobs.common import delta_io
from jobs.common.config import ConfigError
from jobs.common.runlog import StageRecord
from schemas import columns as c
from udfs.topk import shard_value, topk_batches

log = logging.getLogger(__name__)

STAGE = "rank_topn"
COMPONENTS = ("semantic", "topic", "sentiment", "rule", "popularity", "engagement", "category_affinity")


def dot(a: Column, b: Column) -> Column:
    """Inner product of two equal-length array columns (NULL if either is NULL)."""
    return F.aggregate(F.zip_with(a, b, lambda x, y: x * y), F.lit(0.0).cast("double"), lambda acc, x: acc + x)


def retrieve(user_vectors: DataFrame, item_vectors: DataFrame, k: int, shard_rows: int, block_rows: int) -> DataFrame:
    """``(user_id, item_id, cosine)``: each user's ``k`` nearest items by inner product.

    The item matrix (the catalogue, not the users) is collected as Arrow shard by shard (each
    at most ``shard_rows`` rows, so the driver never holds more), broadcast, and multiplied
    block-wise inside ``mapInArrow``; more than one shard is merged with a second top-K.
    """
    spark = user_vectors.sparkSession
    items = item_vectors.select(c.ITEM_ID, "embedding")
    head = items.limit(shard_rows + 1).toArrow()          # the whole catalogue when it fits one shard
    sharded = head.num_rows > shard_rows
    if not sharded:
        tables = [head]
    else:
        head = None
        numbered = items.withColumn("_shard", F.floor((F.row_number().over(Window.orderBy(c.ITEM_ID)) - 1)
                                                      / F.lit(shard_rows)).cast("int")).persist(StorageLevel.MEMORY_AND_DISK)
        n_shards = int(numbered.agg(F.max("_shard")).first()[0]) + 1
        tables = (numbered.where(F.col("_shard") == s).drop("_shard").toArrow() for s in range(n_shards))
    parts = []
    for table in tables:
        if table.num_rows == 0:
            continue
        bc = spark.sparkContext.broadcast(shard_value(table))

        def body(batches, _bc=bc):
            value = _bc.value
            return topk_batches(batches, value["ids"], value["matrix"], k, block_rows)

        parts.append(user_vectors.select(c.USER_ID, "embedding").mapInArrow(
            body, "user_id string, item_id string, cosine double"))
    if sharded:
        numbered.unpersist()
    if not parts:
        return spark.createDataFrame([], "user_id string, item_id string, cosine double")
    union = parts[0]
    for p in parts[1:]:
        union = union.unionByName(p)
    if len(parts) == 1:
        return union
    best = Window.partitionBy(c.USER_ID).orderBy(F.col("cosine").desc(), F.col(c.ITEM_ID))
    return union.withColumn("_r", F.row_number().over(best)).where(F.col("_r") <= k).drop("_r")


def decayed_popularity(events: DataFrame, end: dt.datetime, half_life_days: float,
                       type_weights: Mapping[str, float]) -> DataFrame:
    """``(item_id, popularity)`` = log(1 + sum of type weight * 2^(-age / half-life))."""
    tw = lookup({k: float(v) for k, v in type_weights.items()}, F.col(c.EVENT_TYPE))
    w = F.coalesce(tw, F.lit(1.0)) * F.pow(F.lit(2.0), -age_days(end, F.col(c.EVENT_TS)) / half_life_days)
    return events.groupBy(c.ITEM_ID).agg(F.log1p(F.sum(w)).alias("popularity"))


def fired_rules(seqs: DataFrame, rules: DataFrame, recent_items: int) -> DataFrame:
    """``(user_id, item_id, rule, rule_from)``: consequents of rules whose whole antecedent is among
    the user's newest items; the best confidence wins."""
    recent = seqs.select(c.USER_ID, F.slice(F.transform("events", lambda e: e[c.ITEM_ID]), 1, recent_items)
                         .alias("_recent"))
    anchored = recent.select(c.USER_ID, "_recent", F.explode(F.array_distinct("_recent")).alias("_first"))
    joined = anchored.join(rules.withColumn("_first", F.col("antecedent")[0]), "_first")
    fired = joined.where(F.forall("antecedent", lambda a: F.array_contains(F.col("_recent"), a)))
    best = Window.partitionBy(c.USER_ID, "consequent").orderBy(F.col("confidence").desc(), F.col("_first"))
    return (fired.withColumn("_r", F.row_number().over(best)).where("_r = 1")
            .select(c.USER_ID, F.col("consequent").alias(c.ITEM_ID), F.col("confidence").alias("rule"),
                    F.col("_first").alias("rule_from")))


def engagement(seqs: DataFrame, items: DataFrame, end: dt.datetime,
               half_life_days: float) -> tuple[DataFrame, DataFrame]:
    """The user's time-decayed interest at two granularities, from the sequence:

    - ``(user_id, item_id, engagement, engaged_type)``: how recently the user last touched the
      item, ``2^(-days since their newest event on it / half_life_days)`` (1 = at ``end``), and
      the type of that event. Recency rather than a sum of event weights: a shopper comes back to
      what they looked at yesterday more than to what they looked at often last week;
    - ``(user_id, category, category_affinity)``: the user's share of sequence weight
      (``sequences.type_weights`` x per-type decay) in each category.
    """
    ev = (seqs.select(c.USER_ID, F.posexplode("events").alias("_p", "_e"))
          .select(c.USER_ID, "_p", F.col(f"_e.{c.ITEM_ID}").alias(c.ITEM_ID),
                  F.col(f"_e.{c.EVENT_TYPE}").alias("_type"), F.col(f"_e.{c.EVENT_TS}").alias("_ts"),
                  F.col("_e.weight").alias("_w")))
    per_item = (ev.groupBy(c.USER_ID, c.ITEM_ID)
                .agg(F.max("_ts").alias("_last"), F.min_by("_type", "_p").alias("engaged_type"))
                .select(c.USER_ID, c.ITEM_ID, F.pow(F.lit(2.0), -age_days(end, F.col("_last")) / half_life_days).alias("engagement"),
                        "engaged_type"))
    per_cat = (ev.join(items.select(c.ITEM_ID, c.CATEGORY), c.ITEM_ID)
               .groupBy(c.USER_ID, c.CATEGORY).agg(F.sum("_w").alias("_cw")))
    total = Window.partitionBy(c.USER_ID)
    per_cat = per_cat.select(c.USER_ID, c.CATEGORY, (F.col("_cw") / F.sum("_cw").over(total)).alias("category_affinity"))
    return per_item, per_cat


# What the blend sees of each component. Topic and category affinity enter as logs, like
# popularity, so that the additive blend acts as affinity x popularity: an item popular in a topic
# the user never touches does not outrank the favourites of the user's own topics. Engagement
# (recency in [0, 1]) enters as log(1 + recency), which narrows the gap between an hour ago and
# yesterday relative to the gap between yesterday and last week.
def _log_affinity(col: Column) -> Column:
    return F.log(col + F.lit(1e-3))


BLEND_INPUT = {
    "topic": _log_affinity,
    "category_affinity": _log_affinity,
    "engagement": F.log1p,
}


def standardise_and_blend(features: DataFrame, weights: Mapping[str, float]) -> DataFrame:
    """Add ``z_<component>`` (z-score over all rows; missing -> 0) and ``score`` = sum of w * z."""
    inputs = {n: BLEND_INPUT.get(n, lambda col: col)(F.col(n)) for n in COMPONENTS}
    stats = features.agg(*[F.avg(inputs[n]).alias(f"m_{n}") for n in COMPONENTS],
                         *[F.stddev_pop(inputs[n]).alias(f"s_{n}") for n in COMPONENTS]).first()  # one row
    out = features
    for n in COMPONENTS:
        mean, std = stats[f"m_{n}"], stats[f"s_{n}"]
        z = F.lit(0.0) if mean is None or not std else (inputs[n] - F.lit(mean)) / F.lit(std)
        out = out.withColumn(f"z_{n}", F.coalesce(z, F.lit(0.0)))
    score = sum((F.lit(float(weights[n])) * F.col(f"z_{n}") for n in COMPONENTS), F.lit(0.0))
    return out.withColumn("score", score)


def top_n(scored: DataFrame, n: int, max_per_category: int, max_engaged: int | None = None) -> DataFrame:
    """At most ``max_per_category`` per category and, of what remains, at most ``max_engaged``
    items the user already engaged with (``engaged_type`` set; None: no limit), then ranks 1..n by
    score desc, item id asc."""
    best = (F.col("score").desc(), F.col(c.ITEM_ID))
    per_cat = Window.partitionBy(c.USER_ID, c.CATEGORY).orderBy(*best)
    out = scored.withColumn("_c", F.row_number().over(per_cat)).where(F.col("_c") <= max_per_category)
    if max_engaged is not None:
        engaged = F.col("engaged_type").isNotNull()
        per_kind = Window.partitionBy(c.USER_ID, engaged).orderBy(*best)
        out = out.withColumn("_e", F.row_number().over(per_kind)).where(~engaged | (F.col("_e") <= max_engaged)).drop("_e")
    order = Window.partitionBy(c.USER_ID).orderBy(*best)
    return out.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= n).drop("_c")


def reasons(ranked: DataFrame, weights: Mapping[str, float]) -> DataFrame:
    """A short reason from the strongest weighted component."""
    contrib = F.array(*[F.struct((F.lit(float(weights[n])) * F.col(f"z_{n}")).alias("v"), F.lit(n).alias("n"))
                        for n in COMPONENTS])
    strongest = F.array_max(contrib)["n"]
    anchor = F.coalesce(F.col("anchor_title"), F.lit("an item"))
    return ranked.withColumn("reason", F.when(strongest == "semantic",
                                              F.format_string("similar to %s you %s", anchor, F.col("anchor_verb")))
                             .when((strongest == "rule") & F.col("rule_title").isNotNull(),
                                   F.format_string("often bought after %s", F.col("rule_title")))
                             .when(strongest == "topic",
                                   F.format_string("matches your interest in %s", F.col("user_terms")))
                             .when(strongest == "sentiment", F.lit("highly rated by reviewers"))
                             .when(strongest == "engagement",
                                   F.format_string("recently %s by you", F.col("engaged_verb")))
                             .when(strongest == "category_affinity", F.format_string("you often browse %s", F.col(c.CATEGORY)))
                             .otherwise(F.format_string("popular in %s", F.coalesce(F.col("item_terms"),
                                                                                      F.col(c.CATEGORY)))))


def negative_reviews(read: Callable[[str], DataFrame], cfg: Mapping, ds: dt.date) -> DataFrame:
    """(user_id, item_id) of items the user reviewed at or below ``sentiment.negative_threshold``."""
    return (read("user_item_sentiment")
            .where((F.col(c.DS) == F.lit(ds)) & (F.col("score") <= cfg["sentiment"]["negative_threshold"]))
            .select(c.USER_ID, c.ITEM_ID))


def excluded_pairs(read: Callable[[str], DataFrame], cfg: Mapping, ds: dt.date) -> DataFrame:
    """(user_id, item_id) pairs that must never be recommended on ds: bought (when
    ``rank.exclude_purchased``) or reviewed negatively. The validate stage checks the same set."""
    excluded = negative_reviews(read, cfg, ds)
    if cfg["rank"]["exclude_purchased"]:
        bought = (read("events_clean")
                  .where((F.col(c.EVENT_DATE) <= F.lit(ds)) & (F.col(c.EVENT_TYPE) == "purchase"))
                  .select(c.USER_ID, c.ITEM_ID))
        excluded = excluded.unionByName(bought)
    return excluded.distinct()


def candidate_features(spark: SparkSession, cfg: Mapping, ds: dt.date) -> tuple[DataFrame, dict]:
    """Every (user, candidate) of ds with its raw components, ``_neg_sim`` (similarity to the
    user's negatively reviewed items), the item's title and category, and the columns reasons
    need. Also returns the frames the caller should unpersist and reuse ("seqs", "ivec",
    "items", "users", "popularity")."""
    rk = cfg["rank"]
    end = dt.datetime.combine(ds + dt.timedelta(days=1), dt.time())
    on_ds = F.col(c.DS) == F.lit(ds)
    read = lambda name: delta_io.read_table(spark, cfg, name)  # noqa: E731
    items = read("items_clean").select(c.ITEM_ID, c.TITLE, c.CATEGORY)
    seqs = read("user_sequences").where(on_ds).select(c.USER_ID, "events").persist(StorageLevel.MEMORY_AND_DISK)
    users = seqs.select(c.USER_ID)
    user_vec = read("user_embeddings").where(on_ds).select(c.USER_ID, "embedding")
    item_vec = read("item_embeddings").join(items.select(c.ITEM_ID), c.ITEM_ID).select(c.ITEM_ID, "embedding")
    history = read("events_clean").where(F.col(c.EVENT_DATE) <= F.lit(ds))

    # (a) retrieval, (b) rules, (c) popularity
    retrieved = retrieve(user_vec, item_vec, int(rk["candidates_k"]), int(rk["broadcast_max_items"]),
                         int(rk["block_rows"]))
    rules = fired_rules(seqs, read("item_rules").where(on_ds), int(rk["recent_items"]))
    pop_events = history.where(F.col(c.EVENT_DATE) > F.lit(ds - dt.timedelta(days=int(rk["popularity_lookback_days"]))))
    popularity = decayed_popularity(pop_events, end, float(rk["popularity_half_life_days"]),
                                    cfg["sequences"]["type_weights"]).persist(StorageLevel.MEMORY_AND_DISK)
    popular = popularity.orderBy(F.col("popularity").desc(), F.col(c.ITEM_ID)).limit(int(rk["popular_k"]))
    engaged, category_share = engagement(seqs, items, end, engagement_half_life(rk))
    candidates = (retrieved.select(c.USER_ID, c.ITEM_ID)
                  .unionByName(rules.select(c.USER_ID, c.ITEM_ID))
                  .unionByName(engaged.select(c.USER_ID, c.ITEM_ID))           # at most sequences.max_len per user
                  .unionByName(users.crossJoin(popular.select(c.ITEM_ID)))   # users x popular_k, bounded
                  .distinct())

    # exclusions
    candidates = candidates.join(excluded_pairs(read, cfg, ds), [c.USER_ID, c.ITEM_ID], "left_anti")
    negative = negative_reviews(read, cfg, ds).withColumnRenamed(c.ITEM_ID, "neg_item")

    # features
    ivec = item_vec.withColumnRenamed("embedding", "_iv")
    user_topics = read("user_topics").where(on_ds).select(c.USER_ID, F.col("distribution").alias("_ut"),
                                                          F.col("top_topic").alias("_utop"))
    item_topics = read("item_topics").where(on_ds).select(c.ITEM_ID, F.col("distribution").alias("_it"),
                                                          F.col("top_topic").alias("_itop"))
    item_sent = read("item_sentiment").where(on_ds).select(c.ITEM_ID, F.col("smoothed_score").alias("sentiment"))
    feats = (candidates
             .join(user_vec.withColumnRenamed("embedding", "_uv"), c.USER_ID, "left")
             .join(ivec, c.ITEM_ID, "left")
             .join(user_topics, c.USER_ID, "left").join(item_topics, c.ITEM_ID, "left")
             .join(item_sent, c.ITEM_ID, "left")
             .join(rules, [c.USER_ID, c.ITEM_ID], "left")
             .join(popularity, c.ITEM_ID, "left")
             .join(engaged, [c.USER_ID, c.ITEM_ID], "left")
             .withColumn("engagement", F.coalesce(F.col("engagement"), F.lit(0.0)))
             .withColumn("engaged_verb", lookup(cfg["sequences"]["verbs"], F.col("engaged_type")))
             .withColumn("semantic", dot(F.col("_uv"), F.col("_iv")))
             .withColumn("topic", dot(F.col("_ut"), F.col("_it"))))
    # similarity to negatively reviewed items (their near neighbours are demoted)
    neg_vec = negative.join(ivec.withColumnRenamed(c.ITEM_ID, "neg_item").withColumnRenamed("_iv", "_nv"), "neg_item")
    near = (feats.select(c.USER_ID, c.ITEM_ID, "_iv").join(neg_vec, c.USER_ID)
            .groupBy(c.USER_ID, c.ITEM_ID).agg(F.max(dot(F.col("_iv"), F.col("_nv"))).alias("_neg_sim")))
    feats = (feats.join(near, [c.USER_ID, c.ITEM_ID], "left").join(items, c.ITEM_ID)
             .join(category_share, [c.USER_ID, c.CATEGORY], "left")
             .withColumn("category_affinity", F.coalesce(F.col("category_affinity"), F.lit(0.0))))
    return feats, {"seqs": seqs, "ivec": ivec, "items": items, "users": users, "popularity": popularity}


def blend_rank(feats: DataFrame, cfg: Mapping, weights: Mapping[str, float] | None = None) -> DataFrame:
    """Standardise and blend the components (``rank.weights`` unless ``weights``), demote near
    neighbours of negatively reviewed items, apply the category cap and keep the top N."""
    rk = cfg["rank"]
    weights = dict(rk["weights"]) if weights is None else weights
    scored = standardise_and_blend(feats, weights)
    penalty = F.when(F.col("_neg_sim") >= rk["negative_neighbour_threshold"],
                     F.lit(float(rk["negative_neighbour_penalty"])) * F.col("_neg_sim")).otherwise(0.0)
    scored = scored.withColumn("score", F.col("score") - F.coalesce(penalty, F.lit(0.0)))
    return top_n(scored, int(rk["top_n"]), int(rk["max_per_category"]), max_engaged(rk))


def engagement_half_life(rk: Mapping) -> float:
    """``rank.engagement_half_life_days``: a number > 0."""
    value = rk.get("engagement_half_life_days")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"rank.engagement_half_life_days must be a number of days > 0, got {value!r}")
    return float(value)


def max_engaged(rk: Mapping) -> int | None:
    """``rank.max_engaged``: None (no limit) or a count >= 0."""
    value = rk.get("max_engaged")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ConfigError(f"rank.max_engaged must be null (no limit) or an integer >= 0, got {value!r}")
    return value


def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None) -> dict:
    """Write the ds partition of ``recommendations_staging``."""
    rec = rec or StageRecord()
    rk = cfg["rank"]
    on_ds = F.col(c.DS) == F.lit(ds)
    read = lambda name: delta_io.read_table(spark, cfg, name)  # noqa: E731
    feats, parts = candidate_features(spark, cfg, ds)
    seqs, ivec, items, users, popularity = (parts[k] for k in ("seqs", "ivec", "items", "users", "popularity"))
    ranked = blend_rank(feats, cfg)

    # reasons
    # the anchor of "similar to X you purchased": the user's recent item most similar to the pick
    recent = (seqs.select(c.USER_ID, F.posexplode("events").alias("_p", "_e"))
              .where(F.col("_p") < 2 * int(rk["recent_items"]))
              .select(c.USER_ID, F.col(f"_e.{c.ITEM_ID}").alias("_anchor"), F.col(f"_e.{c.EVENT_TYPE}").alias("_at")))
    avec = ivec.withColumnRenamed(c.ITEM_ID, "_anchor").withColumnRenamed("_iv", "_av")
    by_sim = Window.partitionBy(c.USER_ID, c.ITEM_ID).orderBy(F.col("_sim").desc(), F.col("_anchor"))
    anchor = (ranked.select(c.USER_ID, c.ITEM_ID, "_iv").join(recent, c.USER_ID).join(avec, "_anchor")
              .where(F.col("_anchor") != F.col(c.ITEM_ID)).withColumn("_sim", dot(F.col("_iv"), F.col("_av")))
              .withColumn("_r", F.row_number().over(by_sim)).where("_r = 1")
              .select(c.USER_ID, c.ITEM_ID, "_anchor", lookup(cfg["sequences"]["verbs"], F.col("_at")).alias("anchor_verb")))
    titles = items.select(F.col(c.ITEM_ID).alias("_tid"), F.col(c.TITLE).alias("_title"))
    terms = read("topic_terms").where(on_ds).select("topic", F.array_join(F.slice("terms", 1, 3), ", ").alias("_terms"))
    ranked = (ranked.join(anchor, [c.USER_ID, c.ITEM_ID], "left")
              .join(titles.withColumnRenamed("_tid", "_anchor").withColumnRenamed("_title", "anchor_title"),
                    "_anchor", "left")
              .join(titles.withColumnRenamed("_tid", "rule_from").withColumnRenamed("_title", "rule_title"),
                    "rule_from", "left")
              .join(terms.withColumnRenamed("topic", "_utop").withColumnRenamed("_terms", "user_terms"), "_utop", "left")
              .join(terms.withColumnRenamed("topic", "_itop").withColumnRenamed("_terms", "item_terms"), "_itop", "left"))
    out = reasons(ranked, rk["weights"]).select(
        F.lit(ds).alias(c.DS), c.USER_ID, F.col("rank").cast("int"), c.ITEM_ID, "score",
        F.struct(*[F.col(n).cast("double").alias(n) for n in COMPONENTS]).alias("components"), "reason",
        F.lit(rk["model_version"]).alias("model_version"), F.lit(run_id).alias(c.RUN_ID))
    delta_io.replace_where(out, cfg, "recommendations_staging", f"ds = DATE'{ds.isoformat()}'")
    seqs.unpersist()
    popularity.unpersist()
    written = read("recommendations_staging").where(on_ds)
    per_user = written.groupBy(c.USER_ID).count()
    n_users = users.count()
    stats = per_user.agg(F.count("*").alias("users"), F.sum("count").alias("rows"),
                         F.sum((F.col("count") < int(rk["top_n"])).cast("int")).alias("short")).first()
    summary = {"users": n_users, "users_with_recs": stats["users"], "rows": int(stats["rows"] or 0),
               "users_short_of_n": int(stats["short"] or 0) + (n_users - stats["users"]),
               "top_n": int(rk["top_n"]), "path": delta_io.table_path(cfg, "recommendations_staging")}
    return rec.finish(STAGE, summary, rows_in=n_users, rows_out=summary["rows"])


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
