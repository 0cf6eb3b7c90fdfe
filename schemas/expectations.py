"""great-expectations suites (1.x API) for every table the nightly run reads or writes.

A suite is a list of :class:`Check` s, each marked ``error`` (a failure blocks publishing, the
validate stage exits 3) or ``warn`` (reported, the run goes on), plus an optional ``derive``
step that adds helper columns the built-in expectations can test: a vector's length and norm,
a distribution's sum, a user's row count, whether a recommended item exists in the catalogue or
is excluded for the user. Helper columns start with ``_``.

Which rows a suite sees is its ``scope``: ``ds`` (the run date's partition), ``window`` (the
clean window of event dates), ``all`` (unpartitioned tables), ``raw`` (the raw input files) or
``run`` (one row of the date's newest clean record in ``runs``: its reconciliation and bot counts).
``jobs/validate.py`` runs the suites through GX Checkpoints.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from schemas import columns as c
from schemas.components import COMPONENTS

ERROR = "error"
WARN = "warn"
LEVELS = (ERROR, WARN)
# our levels -> GX 1.x FailureSeverity values
GX_SEVERITY = {ERROR: "critical", WARN: "warning"}


@dataclass(frozen=True)
class Check:
    """One expectation: GX class name (``great_expectations.expectations``), its arguments, level."""

    level: str
    expectation: str
    kwargs: dict
    description: str

    def build(self):
        """The GX Expectation object, with our level in ``meta`` and as GX severity."""
        import great_expectations as gx

        cls = getattr(gx.expectations, self.expectation)
        return cls(**self.kwargs, severity=GX_SEVERITY[self.level], description=self.description,
                   meta={"level": self.level})


@dataclass(frozen=True)
class SuiteContext:
    """What the suites need to know about the run: its date and window, the limits the checks hold
    the tables to (plain values from the stages' settings), and a reader for the other tables
    (joins for referential checks)."""

    ds: dt.date
    window_start: dt.date
    read: Callable[[str], DataFrame]
    event_types: tuple[str, ...] = ()
    rating_min: float = 1.0
    rating_max: float = 5.0
    max_len: int = 50
    topics_k: int = 2
    top_n: int = 10
    norm_tolerance: float = 0.01
    distribution_tolerance: float = 0.01
    full_list_share: float = 0.9
    max_bot_share: float = 0.02
    model_dim: int | None = None
    model_id: str | None = None
    excluded: Callable[[], DataFrame] | None = None

    @property
    def day_after(self) -> dt.datetime:
        return dt.datetime.combine(self.ds + dt.timedelta(days=1), dt.time())


@dataclass(frozen=True)
class Suite:
    """The expectations of one table (``source``: a registered table or ``raw_events``/``raw_items``)."""

    name: str
    source: str
    scope: str
    checks: Callable[[SuiteContext], list[Check]]
    derive: Callable[[DataFrame, SuiteContext], DataFrame] = lambda df, ctx: df
    tags: tuple = field(default=())


# ----------------------------------------------------------------------------- check helpers
def not_null(col: str, level: str = ERROR) -> Check:
    return Check(level, "ExpectColumnValuesToNotBeNull", {"column": col}, f"{col} is never null")


def unique(col: str, level: str = ERROR, description: str | None = None) -> Check:
    return Check(level, "ExpectColumnValuesToBeUnique", {"column": col}, description or f"{col} is unique")


def in_set(col: str, values, level: str = ERROR, description: str | None = None, mostly: float | None = None) -> Check:
    kwargs: dict[str, Any] = {"column": col, "value_set": list(values)}
    if mostly is not None:
        kwargs["mostly"] = mostly
    return Check(level, "ExpectColumnValuesToBeInSet", kwargs, description or f"{col} in {list(values)}")


def between(col: str, lo=None, hi=None, level: str = ERROR, description: str | None = None,
            strict_min: bool = False) -> Check:
    kwargs: dict[str, Any] = {"column": col, "min_value": lo, "max_value": hi}
    if strict_min:
        kwargs["strict_min"] = True
    return Check(level, "ExpectColumnValuesToBeBetween", kwargs,
                 description or f"{col} within [{lo}, {hi}]")


def true(col: str, description: str, level: str = ERROR) -> Check:
    return in_set(col, [True], level, description)


# ---------------------------------------------------------------------------- derived columns
def _norm(col: str) -> Column:
    return F.sqrt(F.aggregate(F.col(col), F.lit(0.0).cast("double"), lambda acc, x: acc + x * x))


def _sum(col: str) -> Column:
    return F.aggregate(F.col(col), F.lit(0.0).cast("double"), lambda acc, x: acc + x)


def _with_vector_checks(df: DataFrame, ctx: SuiteContext) -> DataFrame:
    return (df.withColumn("_norm", _norm("embedding"))
            .withColumn("_length_matches_dim", F.size("embedding") == F.col("dim")))


def _vector_checks(ctx: SuiteContext, key: str) -> list[Check]:
    tol = ctx.norm_tolerance
    checks = [not_null(key), unique(key),
              true("_length_matches_dim", "embedding length equals the dim column"),
              between("_norm", 1 - tol, 1 + tol, description=f"embedding has unit L2 norm (+/- {tol})")]
    if ctx.model_dim is not None:
        checks.append(in_set("dim", [ctx.model_dim], description=f"dim equals the model dimension {ctx.model_dim}"))
    if ctx.model_id is not None:
        checks.append(in_set("model_id", [ctx.model_id], WARN, f"encoded with the configured model {ctx.model_id}"))
    return checks


def _with_model_vector_checks(df: DataFrame, ctx: SuiteContext) -> DataFrame:
    finite = F.forall("embedding", lambda x: ~F.isnan(x) & (F.abs(x) < F.lit(float("inf"))))
    return (df.withColumn("_length_matches_dim", F.size("embedding") == F.col("dim"))
            .withColumn("_finite", F.coalesce(finite, F.lit(False))))


def _model_vector_checks(key: str) -> list[Check]:
    """A trained model's vectors: not unit length (scores are inner products), but whole and finite."""
    return [not_null(key), unique(key), true("_length_matches_dim", "embedding length equals the dim column"),
            true("_finite", "every embedding value is finite")]


def _distribution_checks(ctx: SuiteContext, key: str) -> list[Check]:
    tol, k = ctx.distribution_tolerance, ctx.topics_k
    return [not_null(key), unique(key),
            between("_sum", 1 - tol, 1 + tol, description=f"topic distribution sums to 1 (+/- {tol})"),
            in_set("_k", [k], description=f"distribution has k = {k} entries")]


def _with_distribution(df: DataFrame, ctx: SuiteContext) -> DataFrame:
    return df.withColumn("_sum", _sum("distribution")).withColumn("_k", F.size("distribution"))


def _in_window(col: str, ctx: SuiteContext) -> Column:
    start = dt.datetime.combine(ctx.window_start, dt.time())
    return F.coalesce((F.col(col) >= F.lit(start)) & (F.col(col) < F.lit(ctx.day_after)), F.lit(False))


def _raw_events(df: DataFrame, ctx: SuiteContext) -> DataFrame:
    # ``_ts``: the raw ts as the clean stage parses it (the validate stage adds it when reading)
    return df.withColumn("_ts_in_window", _in_window("_ts", ctx))


def _events_clean(df: DataFrame, ctx: SuiteContext) -> DataFrame:
    return df.withColumn("_ts_in_window", _in_window(c.EVENT_TS, ctx))


def _items_clean(df: DataFrame, ctx: SuiteContext) -> DataFrame:
    return df.withColumn("_title_trimmed", F.trim(F.col(c.TITLE)))


def _user_sequences(df: DataFrame, ctx: SuiteContext) -> DataFrame:
    return df.withColumn("_events_len", F.size("events"))


def _in_bounds(col: str, bounds: tuple[float, float]) -> Column:
    """``col`` lies within ``bounds`` (NULL passes: rows written before the component existed)."""
    lo, hi = bounds
    return F.coalesce(F.col(col).between(lo - 1e-9, hi + 1e-9), F.lit(True))


def _bounded_components() -> list:
    return [comp for comp in COMPONENTS if comp.bounds is not None]


def _recommendations(df: DataFrame, ctx: SuiteContext) -> DataFrame:
    per_user = Window.partitionBy(c.USER_ID)
    known = ctx.read("items_clean").select(c.ITEM_ID, F.lit(True).alias("_item_known"))
    out = (df.withColumn("_rows_for_user", F.count(F.lit(1)).over(per_user))
           .withColumn("_user_rank", F.concat_ws("#", c.USER_ID, F.col("rank").cast("string")))
           .withColumn("_user_item", F.concat_ws("#", c.USER_ID, c.ITEM_ID))
           .withColumn("_score_finite", ~(F.isnan("score") | F.col("score").isin(float("inf"), float("-inf"))))
           .withColumns({f"_in_range_{comp.name}": _in_bounds(f"components.{comp.name}", comp.bounds)
                         for comp in _bounded_components()})
           .join(known, c.ITEM_ID, "left")
           .withColumn("_item_known", F.coalesce("_item_known", F.lit(False))))
    if ctx.excluded is not None:
        flagged = ctx.excluded().select(c.USER_ID, c.ITEM_ID, F.lit(True).alias("_excluded"))
        out = out.join(flagged, [c.USER_ID, c.ITEM_ID], "left")
    else:
        out = out.withColumn("_excluded", F.lit(None).cast("boolean"))
    return out.withColumn("_excluded", F.coalesce("_excluded", F.lit(False)))


def _neighbour_weights(df: DataFrame, ctx: SuiteContext) -> DataFrame:
    ok = F.when(F.col("method") == "cosine", F.col("weight") > 0).otherwise(F.col("weight") != 0)
    return df.withColumn("_weight_ok", F.coalesce(ok & ~F.isnan("weight"), F.lit(False)))


# ------------------------------------------------------------------------------------- suites
def _raw_events_checks(ctx: SuiteContext) -> list[Check]:
    types = list(ctx.event_types)
    # event_id is optional in the raw contract: unique where given, not required
    return [not_null(c.USER_ID, WARN), not_null(c.ITEM_ID, WARN),
            in_set(c.EVENT_TYPE, types, WARN, f"event_type in clean.event_types {types}"),
            true("_ts_in_window", "ts parses and lies inside the run window", WARN),
            unique(c.EVENT_ID, WARN)]


def _events_clean_checks(ctx: SuiteContext) -> list[Check]:
    return [not_null(c.EVENT_ID), not_null(c.USER_ID), not_null(c.ITEM_ID), not_null(c.EVENT_TS),
            in_set(c.EVENT_TYPE, list(ctx.event_types), description="event_type in clean.event_types"),
            true("_ts_in_window", "event_ts inside the run window"),
            unique(c.EVENT_ID),
            between(c.RATING, ctx.rating_min, ctx.rating_max,
                    description="rating within clean.rating_min .. clean.rating_max")]


def _recommendation_checks(ctx: SuiteContext) -> list[Check]:
    n = ctx.top_n
    return [not_null(c.USER_ID), not_null(c.ITEM_ID),
            between("_rows_for_user", 1, n, description=f"at most rank.top_n = {n} rows per user"),
            between("rank", 1, n, description=f"rank within 1 .. {n}"),
            unique("_user_rank", description="rank unique per user"),
            unique("_user_item", description="an item at most once per user"),
            true("_item_known", "recommended item exists in items_clean"),
            true("_score_finite", "score is finite (not NaN or infinite)"),
            *[true(f"_in_range_{comp.name}", f"components.{comp.name} ({comp.description}) within "
                   f"[{comp.bounds[0]}, {comp.bounds[1]}]") for comp in _bounded_components()],
            in_set("_excluded", [False], description="no excluded item (purchased or negatively reviewed)"),
            in_set("_rows_for_user", [n], WARN, f"users get a full list of {n}",
                   mostly=ctx.full_list_share),
            Check(WARN, "ExpectColumnValueLengthsToBeBetween", {"column": "reason", "min_value": 1},
                  "every row carries a reason")]


def _clean_run_checks(ctx: SuiteContext) -> list[Check]:
    share = ctx.max_bot_share
    return [true("events_identity_holds", "events: raw = clean + quarantined + duplicates removed"),
            true("items_identity_holds", "items: raw = clean + quarantined + duplicates removed"),
            between("bot_event_share", 0.0, share, WARN,
                    f"the bot rules took at most dq.max_bot_share = {share} of the raw events")]


SUITES: dict[str, Suite] = {s.name: s for s in (
    Suite("clean_run", "runs", "run", _clean_run_checks),
    Suite("raw_events", "raw_events", "raw", _raw_events_checks, _raw_events),
    Suite("raw_items", "raw_items", "raw", lambda ctx: [
        not_null(c.ITEM_ID, WARN), not_null(c.TITLE, WARN),
        between(c.PRICE, 0, None, WARN, "price >= 0")]),
    Suite("events_clean", "events_clean", "window", _events_clean_checks, _events_clean),
    Suite("items_clean", "items_clean", "all", lambda ctx: [
        not_null(c.ITEM_ID), unique(c.ITEM_ID), between(c.PRICE, 0, None, description="price >= 0"),
        Check(ERROR, "ExpectColumnValueLengthsToBeBetween", {"column": "_title_trimmed", "min_value": 1},
              "title is not empty"),
        not_null(c.UPDATED_AT)], _items_clean),
    Suite("quarantine", "quarantine", "ds", lambda ctx: [
        not_null(c.REASON), not_null(c.SOURCE),
        in_set(c.SOURCE, ["events", "items"], description="source is events or items")]),
    Suite("user_sequences", "user_sequences", "ds", lambda ctx: [
        not_null(c.USER_ID), unique(c.USER_ID),
        between("n_events", 1, ctx.max_len,
                description="1 .. sequences.max_len events per user"),
        between("_events_len", 1, ctx.max_len,
                description="events array within 1 .. sequences.max_len")], _user_sequences),
    Suite("item_embeddings", "item_embeddings", "all",
          lambda ctx: _vector_checks(ctx, c.ITEM_ID), _with_vector_checks),
    Suite("user_embeddings", "user_embeddings", "ds",
          lambda ctx: _vector_checks(ctx, c.USER_ID), _with_vector_checks),
    Suite("sequence_user_vectors", "sequence_user_vectors", "ds",
          lambda ctx: _model_vector_checks(c.USER_ID), _with_model_vector_checks),
    Suite("sequence_item_vectors", "sequence_item_vectors", "ds",
          lambda ctx: _model_vector_checks(c.ITEM_ID), _with_model_vector_checks),
    Suite("item_topics", "item_topics", "ds", lambda ctx: _distribution_checks(ctx, c.ITEM_ID), _with_distribution),
    Suite("user_topics", "user_topics", "ds", lambda ctx: _distribution_checks(ctx, c.USER_ID), _with_distribution),
    Suite("topic_terms", "topic_terms", "ds", lambda ctx: [
        unique("topic"), between("topic", 0, ctx.topics_k - 1, description="topic within 0 .. k-1")]),
    Suite("review_sentiment", "review_sentiment", "window", lambda ctx: [
        not_null(c.EVENT_ID), unique(c.EVENT_ID), between("score", -1.0, 1.0, description="sentiment in [-1, 1]")]),
    Suite("item_sentiment", "item_sentiment", "ds", lambda ctx: [
        unique(c.ITEM_ID), between("smoothed_score", -1.0, 1.0, description="smoothed sentiment in [-1, 1]"),
        between("mean_score", -1.0, 1.0, description="mean sentiment in [-1, 1]"),
        between("n_reviews", 1, None, description="at least one review")]),
    Suite("user_item_sentiment", "user_item_sentiment", "ds", lambda ctx: [
        between("score", -1.0, 1.0, description="sentiment in [-1, 1]")]),
    Suite("user_keywords", "user_keywords", "ds", lambda ctx: [not_null(c.USER_ID), unique(c.USER_ID)]),
    Suite("item_rules", "item_rules", "ds", lambda ctx: [
        between("confidence", 0.0, 1.0, description="confidence in [0, 1]"),
        between("support", 0.0, 1.0, description="support in [0, 1]"),
        between("lift", 0.0, None, description="lift > 0", strict_min=True)]),
    Suite("item_neighbours", "item_neighbours", "ds", lambda ctx: [
        not_null(c.ITEM_ID), not_null("neighbour_id"),
        true("_weight_ok", "weights are non-zero EASE weights, or cosines > 0"),
        in_set("method", ["ease", "cosine"])], _neighbour_weights),
    Suite("recommendations", "recommendations_staging", "ds", _recommendation_checks, _recommendations),
)}
