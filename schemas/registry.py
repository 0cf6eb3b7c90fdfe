"""The table registry: name -> path under the lake root, schema, partitioning, properties."""
from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql.types import StructType

from schemas import columns as c
from schemas import tables as t


@dataclass(frozen=True)
class TableSpec:
    """How one Delta table is laid out."""

    name: str
    schema: StructType
    partition_by: tuple[str, ...] = ()
    properties: dict = field(default_factory=dict)
    description: str = ""

    def path(self, lake_root: str) -> str:
        """Location of the table under ``lake_root``."""
        return f"{lake_root.rstrip('/')}/{self.name}"


_COMMON = {"delta.appendOnly": "false", "delta.checkpointInterval": "10"}

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec("events_clean", t.EVENTS_CLEAN, (c.EVENT_DATE,), _COMMON,
                  "Validated, deduplicated events; one clean run replaces its window of dates."),
        TableSpec("items_clean", t.ITEMS_CLEAN, (), _COMMON,
                  "Latest version of every item (MERGE on item_id, newest updated_at wins)."),
        TableSpec("quarantine", t.QUARANTINE, (c.DS,), _COMMON,
                  "Every rejected raw row with its source file and reason code."),
        TableSpec("user_sequences", t.USER_SEQUENCES, (c.DS,), _COMMON,
                  "Per user and run date: the last events with decay weights and sessions, and their text."),
        TableSpec("item_embeddings", t.ITEM_EMBEDDINGS, (), _COMMON,
                  "Language-model vector of every item's text; re-encoded only when the content hash changes."),
        TableSpec("user_embeddings", t.USER_EMBEDDINGS, (c.DS,), _COMMON,
                  "Per user and run date: sequence-text vector, pooled item vector and their mix."),
        TableSpec("sequence_models", t.SEQUENCE_MODELS, (), _COMMON,
                  "Every trained sequence model: mode (full or warm start), epochs, validation NDCG@10, size, time."),
        TableSpec("sequence_user_vectors", t.SEQUENCE_USER_VECTORS, (c.DS,), _COMMON,
                  "Per user and run date: the sequence model's user vector and its attention anchor."),
        TableSpec("sequence_item_vectors", t.SEQUENCE_ITEM_VECTORS, (c.DS,), _COMMON,
                  "Per item and run date: the sequence model's item output vector."),
        TableSpec("topic_models", t.TOPIC_MODELS, (), _COMMON,
                  "Every fitted LDA pipeline: the date it was fitted for and where it is saved."),
        TableSpec("topic_terms", t.TOPIC_TERMS, (c.DS,), _COMMON, "Top terms and weights per LDA topic."),
        TableSpec("item_topics", t.ITEM_TOPICS, (c.DS,), _COMMON, "LDA topic distribution of every item."),
        TableSpec("user_topics", t.USER_TOPICS, (c.DS,), _COMMON,
                  "Decay-weighted mean topic distribution of the items in each user's sequence."),
        TableSpec("review_sentiment", t.REVIEW_SENTIMENT, (c.EVENT_DATE,), _COMMON,
                  "Sentiment in [-1, 1] of every review text."),
        TableSpec("item_sentiment", t.ITEM_SENTIMENT, (c.DS,), _COMMON,
                  "Per item: review count, mean and Bayesian-smoothed sentiment."),
        TableSpec("user_item_sentiment", t.USER_ITEM_SENTIMENT, (c.DS,), _COMMON,
                  "A user's own sentiment about each item they reviewed."),
        TableSpec("user_keywords", t.USER_KEYWORDS, (c.DS,), _COMMON,
                  "Top decay-weighted TF-IDF terms of the items each user engaged with."),
        TableSpec("item_rules", t.ITEM_RULES, (c.DS,), _COMMON,
                  "FPGrowth association rules over baskets: antecedent -> consequent."),
        TableSpec("item_neighbours", t.ITEM_NEIGHBOURS, (c.DS,), _COMMON,
                  "Each item's strongest behaviour neighbours: EASE weights, or cosine above neighbours.max_items."),
        TableSpec("recommendations_staging", t.RECOMMENDATIONS, (c.DS,), _COMMON,
                  "rank_topn's output before validation; publish copies a date from here."),
        TableSpec("recommendations", t.RECOMMENDATIONS, (c.DS,),
                  {**_COMMON, "delta.enableChangeDataFeed": "true"},
                  "The published per-user top-N, one atomic replaceWhere commit per date."),
        TableSpec("ranker_models", t.RANKER_MODELS, (), _COMMON,
                  "Every fit of the learned blend: its weights, half-lives, labels and validation figures."),
        TableSpec("dq_results", t.DQ_RESULTS, (c.DS,), _COMMON,
                  "One row per expectation per validation: table, version, level, outcome, counts."),
        TableSpec("metrics", t.METRICS, (c.DS,), _COMMON,
                  "Offline evaluation: per run date, protocol, model, metric and K, the value."),
        TableSpec("runs", t.RUNS, (), {**_COMMON, "delta.appendOnly": "true"},
                  "One row per stage run: status, timings, row counts, details."),
        TableSpec("run_locks", t.RUN_LOCKS, (), _COMMON,
                  "Who runs each date now: one row per date, taken and released by the runs themselves."),
    )
}


def table(name: str) -> TableSpec:
    """Look a table up by name."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}") from None
