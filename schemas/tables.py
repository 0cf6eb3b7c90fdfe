"""StructType of every table. Tables are created from these, never inferred."""
from __future__ import annotations

from typing import Sequence

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DateType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from schemas import columns as c
from schemas.components import COMPONENTS as COMPONENT_TABLE
from schemas.components import Component


def _s(*fields: tuple) -> StructType:
    return StructType([StructField(name, dtype, nullable) for name, dtype, nullable in fields])


# The raw contract: what `recjobs sample-data` and the importers write and the clean stage
# reads. Timestamps stay strings here (ISO-8601 or epoch seconds/milliseconds); tags are one
# string separated by "|" so that every format (JSON, CSV, Parquet) carries them alike.
RAW_EVENTS = _s(
    (c.EVENT_ID, StringType(), True),
    (c.USER_ID, StringType(), True),
    (c.ITEM_ID, StringType(), True),
    (c.EVENT_TYPE, StringType(), True),
    (c.TS, StringType(), True),
    (c.RATING, DoubleType(), True),
    (c.REVIEW_TEXT, StringType(), True),
)

RAW_ITEMS = _s(
    (c.ITEM_ID, StringType(), True),
    (c.TITLE, StringType(), True),
    (c.CATEGORY, StringType(), True),
    (c.BRAND, StringType(), True),
    (c.PRICE, DoubleType(), True),
    (c.DESCRIPTION, StringType(), True),
    (c.TAGS, StringType(), True),
    (c.UPDATED_AT, StringType(), True),
)

EVENTS_CLEAN = _s(
    (c.EVENT_ID, StringType(), False),
    (c.USER_ID, StringType(), False),
    (c.ITEM_ID, StringType(), False),
    (c.EVENT_TYPE, StringType(), False),
    (c.EVENT_TS, TimestampType(), False),
    (c.RATING, DoubleType(), True),
    (c.REVIEW_TEXT, StringType(), True),
    (c.TEXT_TRUNCATED, BooleanType(), False),
    (c.SOURCE_FILE, StringType(), True),
    (c.RUN_ID, StringType(), False),
    (c.EVENT_DATE, DateType(), False),
)

ITEMS_CLEAN = _s(
    (c.ITEM_ID, StringType(), False),
    (c.TITLE, StringType(), False),
    (c.CATEGORY, StringType(), True),
    (c.BRAND, StringType(), True),
    (c.PRICE, DoubleType(), True),
    (c.DESCRIPTION, StringType(), True),
    (c.TAGS, ArrayType(StringType()), False),
    (c.UPDATED_AT, TimestampType(), False),
    (c.TEXT_TRUNCATED, BooleanType(), False),
    (c.SOURCE_FILE, StringType(), True),
    (c.RUN_ID, StringType(), False),
    (c.DS, DateType(), False),
)

QUARANTINE = _s(
    (c.DS, DateType(), False),
    (c.STAGE, StringType(), False),
    (c.SOURCE, StringType(), False),       # "events" | "items"
    (c.SOURCE_FILE, StringType(), True),
    (c.REASON, StringType(), False),       # a code of jobs.clean_events.EVENT_REASONS / ITEM_REASONS
    (c.RAW_RECORD, StringType(), True),    # valid UTF-8: bytes that were not are escaped as \xNN
    (c.RAW_BYTES, BinaryType(), True),     # the record's original bytes (null in rows of older releases)
    (c.RUN_ID, StringType(), False),
    (c.QUARANTINED_AT, TimestampType(), False),
)

RUNS = _s(
    (c.RUN_ID, StringType(), False),
    (c.DS, DateType(), False),
    (c.STAGE, StringType(), False),
    ("status", StringType(), False),       # succeeded | failed | inherited (a --from-stage run took it as done)
    ("started_at", TimestampType(), False),
    ("finished_at", TimestampType(), False),
    ("duration_s", DoubleType(), False),
    ("rows_in", LongType(), True),
    ("rows_out", LongType(), True),
    ("details", StringType(), True),       # JSON: counts, reconciliation, error message
)

# The per-date run lock: one row per date, taken with a conditional MERGE (jobs/common/lock.py).
RUN_LOCKS = _s(
    (c.DS, DateType(), False),
    (c.RUN_ID, StringType(), False),
    ("host", StringType(), False),
    ("pid", LongType(), False),
    ("acquired_at", TimestampType(), False),
    ("heartbeat_at", TimestampType(), False),
    ("released", BooleanType(), False),
)

# Delta does not enforce NOT NULL inside arrays or structs in arrays: nested fields are nullable.
SEQUENCE_EVENT = StructType([
    StructField(c.ITEM_ID, StringType(), True),
    StructField(c.EVENT_TYPE, StringType(), True),
    StructField(c.EVENT_TS, TimestampType(), True),
    StructField("weight", DoubleType(), True),
    StructField(c.SESSION_ID, StringType(), True),
])

USER_SEQUENCES = _s(
    (c.DS, DateType(), False),
    (c.USER_ID, StringType(), False),
    ("events", ArrayType(SEQUENCE_EVENT, True), False),   # newest first, at most sequences.max_len
    ("seq_text", StringType(), False),                     # "purchased: <title> (<category>); viewed: ..."
    ("n_events", IntegerType(), False),
    ("n_sessions", IntegerType(), False),
    ("last_event_ts", TimestampType(), False),
    (c.RUN_ID, StringType(), False),
    # the run date whose window this profile was built from: earlier than ds for a user with no
    # event in the window, whose last profile is carried forward (null in rows of older releases)
    ("profile_ds", DateType(), True),
)

ITEM_EMBEDDINGS = _s(
    (c.ITEM_ID, StringType(), False),
    ("text", StringType(), False),                         # the encoded item text (encoder.item_template)
    ("content_hash", StringType(), False),                 # sha256 of text + model id + revision
    ("embedding", ArrayType(FloatType(), True), False),   # unit length
    ("dim", IntegerType(), False),
    ("model_id", StringType(), False),
    ("model_revision", StringType(), False),
    ("encoded_ds", DateType(), False),
    (c.RUN_ID, StringType(), False),
)

USER_EMBEDDINGS = _s(
    (c.DS, DateType(), False),
    (c.USER_ID, StringType(), False),
    ("embedding", ArrayType(FloatType(), True), False),         # the mix; unit length
    ("seq_embedding", ArrayType(FloatType(), True), False),     # language-model encoding of seq_text
    ("pooled_embedding", ArrayType(FloatType(), True), True),   # decay-weighted mean of item vectors, unit length
    ("dim", IntegerType(), False),
    ("model_id", StringType(), False),
    ("model_revision", StringType(), False),
    ("n_events", IntegerType(), False),
    (c.RUN_ID, StringType(), False),
)

TOPIC_MODELS = _s(
    (c.DS, DateType(), False),                 # the date the model was fitted for
    ("path", StringType(), False),             # _models/lda/<ds>, relative to the lake root
    ("k", IntegerType(), False),
    ("vocab_size", IntegerType(), False),
    ("documents", LongType(), False),
    ("log_perplexity", DoubleType(), True),
    (c.RUN_ID, StringType(), False),
)

TOPIC_TERMS = _s(
    (c.DS, DateType(), False),
    ("topic", IntegerType(), False),
    ("terms", ArrayType(StringType(), True), False),
    ("weights", ArrayType(DoubleType(), True), False),
    ("model_ds", DateType(), False),
    (c.RUN_ID, StringType(), False),
)

ITEM_TOPICS = _s(
    (c.DS, DateType(), False),
    (c.ITEM_ID, StringType(), False),
    ("distribution", ArrayType(DoubleType(), True), False),   # sums to 1
    ("top_topic", IntegerType(), False),
    ("top_weight", DoubleType(), False),
    ("model_ds", DateType(), False),
    (c.RUN_ID, StringType(), False),
)

USER_TOPICS = _s(
    (c.DS, DateType(), False),
    (c.USER_ID, StringType(), False),
    ("distribution", ArrayType(DoubleType(), True), False),   # decay-weighted mean of item distributions
    ("top_topic", IntegerType(), False),
    (c.RUN_ID, StringType(), False),
)

REVIEW_SENTIMENT = _s(
    (c.EVENT_ID, StringType(), False),
    (c.USER_ID, StringType(), False),
    (c.ITEM_ID, StringType(), False),
    (c.EVENT_TS, TimestampType(), False),
    (c.RATING, DoubleType(), True),
    ("score", DoubleType(), False),             # [-1, 1]
    ("backend", StringType(), False),
    (c.RUN_ID, StringType(), False),
    (c.EVENT_DATE, DateType(), False),
)

ITEM_SENTIMENT = _s(
    (c.DS, DateType(), False),
    (c.ITEM_ID, StringType(), False),
    ("n_reviews", LongType(), False),
    ("mean_score", DoubleType(), False),
    ("smoothed_score", DoubleType(), False),    # Bayesian-smoothed towards prior_mean
    ("prior_mean", DoubleType(), False),
    (c.RUN_ID, StringType(), False),
)

USER_ITEM_SENTIMENT = _s(
    (c.DS, DateType(), False),
    (c.USER_ID, StringType(), False),
    (c.ITEM_ID, StringType(), False),
    ("score", DoubleType(), False),             # mean of the user's own reviews of the item
    ("n_reviews", LongType(), False),
    ("last_review_ts", TimestampType(), False),
    (c.RUN_ID, StringType(), False),
)

USER_KEYWORDS = _s(
    (c.DS, DateType(), False),
    (c.USER_ID, StringType(), False),
    ("keywords", ArrayType(StringType(), True), False),
    ("weights", ArrayType(DoubleType(), True), False),
    (c.RUN_ID, StringType(), False),
)

ITEM_RULES = _s(
    (c.DS, DateType(), False),
    ("antecedent", ArrayType(StringType(), True), False),
    ("consequent", StringType(), False),
    ("confidence", DoubleType(), False),
    ("lift", DoubleType(), False),
    ("support", DoubleType(), False),
    (c.RUN_ID, StringType(), False),
)

ITEM_NEIGHBOURS = _s(
    (c.DS, DateType(), False),
    (c.ITEM_ID, StringType(), False),
    ("neighbour_id", StringType(), False),
    ("weight", DoubleType(), False),          # EASE weight B[item, neighbour] (either sign) or cosine > 0
    ("method", StringType(), False),          # ease | cosine
    (c.RUN_ID, StringType(), False),
)


def components_struct(components: Sequence[Component] = COMPONENT_TABLE) -> StructType:
    """The ``components`` struct of the recommendation tables: one double per blend component."""
    return StructType([StructField(comp.name, DoubleType(), True)
                       for comp in components])


COMPONENTS = components_struct()

RECOMMENDATIONS = _s(
    (c.DS, DateType(), False),
    (c.USER_ID, StringType(), False),
    ("rank", IntegerType(), False),
    (c.ITEM_ID, StringType(), False),
    ("score", DoubleType(), False),
    ("components", COMPONENTS, False),
    ("reason", StringType(), False),
    ("reason_kind", StringType(), True),        # the component the reason comes from (null in rows of older releases)
    ("model_version", StringType(), False),
    (c.RUN_ID, StringType(), False),
)

# One row per fit of the learned blend (rank_topn): what it chose, and the figures it chose by.
RANKER_MODELS = _s(
    (c.DS, DateType(), False),                  # the night it was fitted for
    ("path", StringType(), True),               # _models/ranker/<ds>, relative to the lake root (null: nothing to save)
    ("learner", StringType(), False),           # logistic | gbt
    ("protocol", StringType(), False),          # the hold-out its labels came from
    ("cut_off", DateType(), True),              # the date its features were built for
    ("status", StringType(), False),            # learned | searched | fixed | single (what was chosen)
    ("chosen", StringType(), False),            # learned | searched | fixed | single:<component>
    ("weights", MapType(StringType(), DoubleType()), False),          # the weights ranked with
    ("learned_weights", MapType(StringType(), DoubleType()), False),  # the fitted model's (GBT: importances)
    ("half_lives", MapType(StringType(), DoubleType()), False),       # chosen from rank.half_life_grid
    ("training_rows", LongType(), False),
    ("positives", LongType(), False),
    ("users", LongType(), False),
    ("validation_users", LongType(), False),
    ("validation_auc", DoubleType(), True),
    ("validation_ndcg", DoubleType(), True),    # NDCG@10 of what was chosen, on the validation users
    ("fixed_ndcg", DoubleType(), True),         # the fixed weights' there
    ("best_single", StringType(), True),        # the best single component there ...
    ("best_single_ndcg", DoubleType(), True),   # ... and its NDCG@10
    ("details", StringType(), True),            # JSON: every candidate's and every half-life's NDCG
    ("seconds", DoubleType(), False),
    (c.RUN_ID, StringType(), False),
)

# One row per expectation per validation: what the validate stage checked and how it went.
DQ_RESULTS = _s(
    (c.DS, DateType(), False),
    (c.RUN_ID, StringType(), False),
    ("table_name", StringType(), False),
    ("table_version", LongType(), True),         # Delta version validated (null for raw input)
    ("expectation", StringType(), False),        # GX expectation type
    ("column_name", StringType(), True),
    ("level", StringType(), False),              # error | warn
    ("success", BooleanType(), False),
    ("element_count", LongType(), True),
    ("unexpected_count", LongType(), True),
    ("unexpected_percent", DoubleType(), True),
    ("observed", StringType(), True),            # observed value or a few unexpected values (JSON)
    ("description", StringType(), True),
    ("validated_at", TimestampType(), False),
)

# The evaluate stage's results: one row per (protocol, model, metric, K).
METRICS = _s(
    (c.DS, DateType(), False),
    ("protocol", StringType(), False),           # leave_last_out | next_day | random_split
    ("model", StringType(), False),              # blend, blend_no_lm, ..., popularity, cooccurrence, als
    ("metric", StringType(), False),             # recall, ndcg, hit_rate, mrr, map, coverage, diversity, novelty
    ("k", IntegerType(), False),
    ("value", DoubleType(), False),
    ("users", LongType(), False),                # users evaluated
    (c.RUN_ID, StringType(), False),
    # the eval.ci_level bootstrap interval over users (eval.bootstrap resamples); null for the
    # catalogue-level metrics (coverage, diversity, novelty) and when the bootstrap is off
    ("ci_low", DoubleType(), True),
    ("ci_high", DoubleType(), True),
)

# One row per trained sequence model (train_seqrec): how it was trained and how it validated.
SEQUENCE_MODELS = _s(
    (c.DS, DateType(), False),                  # the night it was trained for
    ("path", StringType(), False),              # _models/seqrec/<ds>, relative to the lake root
    ("mode", StringType(), False),              # full | warm (from base_ds's checkpoint, the new days only)
    ("base_ds", DateType(), True),              # the checkpoint a warm start resumed from
    ("use_text", BooleanType(), False),         # items enter as projected language-model vectors
    ("id_embeddings", BooleanType(), False),    # ... plus learned ID embeddings
    ("epochs", IntegerType(), False),
    ("best_epoch", IntegerType(), False),
    ("validation_users", LongType(), False),    # users whose last item was held out
    ("validation_ndcg", DoubleType(), True),    # NDCG@10 of that item, full catalogue ranking
    ("validation_recall", DoubleType(), True),  # Recall@10 there
    ("training_users", LongType(), False),
    ("training_positions", LongType(), False),  # next-item targets trained on
    ("items", LongType(), False),               # vocabulary size
    ("parameters", LongType(), False),
    ("processes", IntegerType(), False),        # TorchDistributor processes
    ("device", StringType(), False),            # cpu | cuda
    ("seconds", DoubleType(), False),
    ("details", StringType(), True),            # JSON: loss and validation per epoch, settings
    (c.RUN_ID, StringType(), False),
)

# The sequence model's user vectors of a date: what retrieval against the item output vectors serves.
SEQUENCE_USER_VECTORS = _s(
    (c.DS, DateType(), False),
    (c.USER_ID, StringType(), False),
    ("embedding", ArrayType(FloatType()), False),
    ("dim", IntegerType(), False),
    ("anchor_item", StringType(), True),        # the history item the newest position attends to most
    ("anchor_type", StringType(), True),        # the user's event type on it
    ("model_ds", DateType(), False),            # the sequence_models row that scored it
    (c.RUN_ID, StringType(), False),
)

# The sequence model's item output vectors of a date (the same space as its user vectors).
SEQUENCE_ITEM_VECTORS = _s(
    (c.DS, DateType(), False),
    (c.ITEM_ID, StringType(), False),
    ("embedding", ArrayType(FloatType()), False),
    ("dim", IntegerType(), False),
    ("model_ds", DateType(), False),
    (c.RUN_ID, StringType(), False),
)
