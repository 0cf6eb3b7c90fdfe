"""Hold-out lakes: the features of an earlier cut-off, rebuilt from the events before it alone.

A split of the events (``jobs.evaluation.splits``) gets a lake of its own,
``<lake>/_holdout/<protocol>``: the training events, the catalogue, the item vectors and, unless
topics come from reviews, the LDA fit (item text does not depend on events) go there, and the nightly's own stages rebuild every
event-derived input of the ranker (sequences, user vectors, topic profiles, sentiment, rules), so
that nothing held out reaches a feature. The learned blend is fitted on one every night, and the
evaluation measures every model on one; when both split the same events the same way (the
leave-last-out split of tonight's ``events_clean``), the lake built for the one serves the other
(``_built.json`` records what a lake was built from). On that split the nightly's blend learns
from the held-out events of half the users (``jobs.evaluation.splits.evaluation_half``) and the
evaluation scores the other half with it. On any other split the evaluation's own blend is
learned the way the nightly would learn it from the split's training events: on the hold-out
lake nested in the split's lake (``<lake>/_holdout/<protocol>/_holdout/<train_protocol>``).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.config import with_values
from jobs.common.runlog import StageRecord
from jobs.common.settings import LearnSettings, RankSettings
from jobs.evaluation.splits import evaluation_half, split
from jobs.ranking import candidate_features
from jobs.ranking.features import without_vectors
from jobs.ranking.learn import FittedBlend, fit_blend, label_rows
from jobs.stages import stage_function
from schemas import columns as c
from schemas import tables as t

log = logging.getLogger(__name__)

# The event-derived inputs of the ranker. encode_items is not among them (item text does not
# depend on events: the vectors are copied), nor keywords (used in explanations only).
FEATURE_STAGES = ("build_sequences", "encode_users", "train_seqrec", "fit_topics", "score_sentiment", "mine_rules",
                  "fit_neighbours")
# Without decay only these change. The variant's lake rebuilds them (its fit_topics reusing the
# LDA fit of the lake it varies) and its ranker reads the tables of the other feature stages,
# which do not decay, from that lake instead of copies.
DECAY_STAGES = ("build_sequences", "encode_users", "fit_topics")
DECAY_FREE_TABLES = ("item_sentiment", "user_item_sentiment", "item_rules", "item_neighbours",
                     "sequence_user_vectors", "sequence_item_vectors")
NO_DECAY_DAYS = 1e6
HOLDOUT = "_holdout"
BUILT = "_built.json"
# Settings sections that no feature stage reads (the rest decide what a hold-out lake holds).
NOT_FEATURES = ("rank", "eval", "report", "dq", "run", "logging", "spark", "lake", "input", "maintain")


def holdout_name(protocol: str, suffix: str = "") -> str:
    """The hold-out lake of a split, relative to the lake it splits."""
    return f"{HOLDOUT}/{protocol}{suffix}"


def events_source(spark: SparkSession, cfg: Mapping) -> str:
    """What a split of the lake's ``events_clean`` is a split of: the table and its version."""
    return f"{delta_io.table_path(cfg, 'events_clean')}@v{delta_io.current_version(spark, cfg, 'events_clean')}"


def split_source(source: str, protocol: str, ds: dt.date, relevant_types: Sequence[str], **params) -> str:
    """The identity of a split's training events: what was split, how and for which date."""
    return json.dumps({"of": source, "protocol": protocol, "ds": ds.isoformat(),
                       "relevant": sorted(relevant_types), **params}, sort_keys=True)


def _build_key(spark: SparkSession, cfg: Mapping, hcfg: Mapping, source: str, fds: dt.date,
               stages: Sequence[str], copy_from: Mapping | None) -> str:
    catalogue = {name: delta_io.current_version(spark, cfg, name) for name in ("items_clean", "item_embeddings",
                                                                             "topic_models")}
    settings = {k: v for k, v in hcfg.items() if k not in NOT_FEATURES}
    return hashlib.sha256(json.dumps(
        {"events": source, "fds": fds.isoformat(), "stages": list(stages), "catalogue": catalogue,
         "copy_from": delta_io.lake_root(copy_from) if copy_from is not None else None, "settings": settings},
        sort_keys=True, default=str).encode()).hexdigest()


def holdout_cfg(cfg: Mapping, name: str, extra: Mapping | None = None, history_days: int = 0) -> Mapping:
    """The configuration of the hold-out lake ``<lake>/<name>``; its sequence window covers
    ``history_days`` (the training events' span) when that is longer than the nightly's, so every
    user with training history has a profile, as carrying forward gives them nightly."""
    root = f"{delta_io.lake_root(cfg)}/{name}"
    lookback = max(int(cfg["sequences"]["lookback_days"]), history_days)
    # a hold-out lake's sequence model is trained afresh on its own training events every time
    values = {"lake.root": root, "sequences.lookback_days": lookback, "seqrec.refit_every_days": 1, **(extra or {})}
    if cfg["topics"]["use_reviews"]:   # review texts are events: refit on this split's training data
        values["topics.refit_every_days"] = 1
    return with_values(cfg, values)


def history_days(train: DataFrame, fds: dt.date) -> int:
    """Days from the first training event to ``fds`` (one number from the data)."""
    first = train.agg(F.min(c.EVENT_DATE)).first()[0]
    return (fds - first).days + 1 if first else 0


def build_features(spark: SparkSession, cfg: Mapping, hcfg: Mapping, train: DataFrame, fds: dt.date,
                   run_id: str, stages: Sequence[str] = FEATURE_STAGES, copy_from: Mapping | None = None,
                   source: str | None = None) -> bool:
    """Write the training events, the catalogue and the item vectors into the hold-out lake and run
    the event-derived feature stages there for ``fds``. ``copy_from``: a hold-out lake this one
    varies (built from the same events); a fit_topics among ``stages`` reuses its LDA fit.

    ``source`` (:func:`split_source`) names what ``train`` is; a lake already built from the same
    source, catalogue and feature settings is kept as it is. Returns whether it was built.
    """
    key = _build_key(spark, cfg, hcfg, source, fds, stages, copy_from) if source is not None else None
    marker = f"{delta_io.lake_root(hcfg)}/{BUILT}"
    if key is not None and _built_key(spark, marker) == key:
        log.info("hold-out lake %s was built from the same split: reused", delta_io.lake_root(hcfg))
        return False
    delta_io.delete_path(spark, marker)   # a build cut short leaves no marker
    delta_io.overwrite(train, hcfg, "events_clean")
    for name in ("items_clean", "item_embeddings"):
        delta_io.overwrite(delta_io.read_table(spark, cfg, name), hcfg, name)
    # the profiles come from the training events alone: no sequence of an earlier hold-out is
    # carried forward (the window covers the whole training history instead, see holdout_cfg)
    delta_io.overwrite(spark.createDataFrame([], t.USER_SEQUENCES), hcfg, "user_sequences")
    if "fit_topics" in stages and (copy_from is not None or not hcfg["topics"]["use_reviews"]):
        # a variant reuses the LDA fit of the lake it varies; otherwise item texts do not depend on
        # events and the lake's own fit of a date up to fds serves (fit_topics reuses it within its
        # cadence instead of fitting the same model again)
        _copy_models(spark, copy_from if copy_from is not None else cfg, hcfg, fds)
    for stage in stages:
        stage_function(stage)(spark, hcfg, fds, run_id, StageRecord())
    if key is not None:
        delta_io.write_text(spark, marker, json.dumps({"key": key, "fds": fds.isoformat(), "run_id": run_id}))
    return True


def _copy_models(spark: SparkSession, source: Mapping, target: Mapping, fds: dt.date) -> None:
    """The ``topic_models`` row of the ``source`` lake that fit_topics reuses for ``fds`` (the newest
    fitted for a date up to it) into the ``target`` lake, with the model folder it names (its path
    is lake-relative); none leaves the target's as it is."""
    newest = (delta_io.read_table(spark, source, "topic_models").where(F.col(c.DS) <= F.lit(fds))
              .orderBy(F.col(c.DS).desc()).limit(1))
    fits = newest.collect()                                                   # one row or none
    if fits:
        delta_io.overwrite(spark.createDataFrame(fits, newest.schema), target, "topic_models")
    for row in fits:
        delta_io.copy_tree(spark, delta_io.in_lake(source, row["path"]), delta_io.in_lake(target, row["path"]))


def _built_key(spark: SparkSession, marker: str) -> str | None:
    text = delta_io.read_text(spark, marker)
    try:
        return json.loads(text)["key"] if text else None
    except (ValueError, KeyError, TypeError):
        return None


def no_decay_values(cfg: Mapping) -> dict:
    """Settings that turn every decay off (half-lives of 10^6 days)."""
    return {"sequences.half_life_days": {k: NO_DECAY_DAYS for k in cfg["sequences"]["half_life_days"]},
            "rank.popularity_half_life_days": NO_DECAY_DAYS, "rank.engagement_half_life_days": NO_DECAY_DAYS}


@contextmanager
def ranker_features(spark: SparkSession, cfg: Mapping, hcfg: Mapping, train: DataFrame, users: DataFrame | None,
                    fds: dt.date, run_id: str, stages: Sequence[str] = FEATURE_STAGES,
                    copy_from: Mapping | None = None, half_life_grid: Mapping | None = None,
                    source: str | None = None, build: bool = True) -> Iterator[DataFrame]:
    """Build a hold-out lake's features (see :func:`build_features`; ``build=False``: the caller
    just did) and yield the ranker's candidate features (of ``users`` when given) without their
    vector columns (nothing here writes reasons), written once into the hold-out lake and read back
    (``delta_io.materialized``); the cached frames and the files are released on exit.
    With ``copy_from`` (the no-decay variant of that lake, ``stages`` = ``DECAY_STAGES``) the
    ``DECAY_FREE_TABLES`` are read from ``copy_from``."""
    if build:
        build_features(spark, cfg, hcfg, train, fds, run_id, stages, copy_from, source)
    read = delta_io.reader(spark, hcfg)
    if copy_from is not None:
        if set(stages) != set(DECAY_STAGES):
            raise ValueError(f"a lake rebuilt in part is ranked with the decay-free tables of the lake it varies: "
                             f"stages {list(stages)} are not {list(DECAY_STAGES)}")
        own, varied = read, delta_io.reader(spark, copy_from)
        read = lambda name: varied(name) if name in DECAY_FREE_TABLES else own(name)  # noqa: E731
    with candidate_features(read, fds, RankSettings.from_config(hcfg), half_life_grid) as data:
        feats = without_vectors(data.features)
        feats = feats if users is None else feats.join(users, c.USER_ID)
        with delta_io.materialized(feats, hcfg, "ranker_features") as written:
            yield written


@dataclass
class Learned:
    """The outcome of fitting the blend on a hold-out: the fit, or why there is none."""

    fitted: FittedBlend | None
    protocol: str
    cut_off: dt.date | None
    labels: int
    reason: str = ""
    info: dict = field(default_factory=dict)


def learn_from_holdout(spark: SparkSession, cfg: Mapping, events: DataFrame, ds: dt.date, run_id: str,
                       relevant_types: Sequence[str], source: str | None = None,
                       evaluation_seed: int | None = None) -> Learned:
    """Fit the blend on the hold-out ``events`` provide for ds: split them by
    ``rank.train_protocol`` (leave-last-out: each user's last relevant event; next-day: ds's
    events), rebuild the features of the cut-off in ``<lake>/_holdout/<protocol>`` from the events
    before it, label the candidates with what the users did after it and fit (``jobs.ranking.learn``).
    ``source`` names what ``events`` are (:func:`events_source`, :func:`split_source`), so that a
    hold-out lake built from the same split is used as it is. With ``evaluation_seed`` the users of
    :func:`jobs.evaluation.splits.evaluation_half` are left out of the labels (the evaluation scores
    them with this fit on the same lake); ``info["reserved"]`` and ``info["split"]`` say so.

    Returns a :class:`Learned` without a fit when the hold-out has fewer than ``rank.min_labels``
    labelled users.
    """
    ls = LearnSettings.from_config(cfg)
    rs = RankSettings.from_config(cfg)
    train, held, fds = split(events, ls.train_protocol, ds, relevant_types)
    reserved = evaluation_half(evaluation_seed) if evaluation_seed is not None else None
    if reserved is not None:
        held = held.where(~reserved)
    train = train.persist(StorageLevel.MEMORY_AND_DISK)
    held = held.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        labels = held.select(c.USER_ID).distinct().count()
        if labels < ls.min_labels:
            return Learned(None, ls.train_protocol, fds, labels,
                           f"{labels} users with a held-out event, fewer than rank.min_labels = {ls.min_labels}")
        hcfg = holdout_cfg(cfg, holdout_name(ls.train_protocol), {}, history_days(train, fds))
        split_of = split_source(source, ls.train_protocol, ds, relevant_types) if source is not None else None
        fixed_half_lives = rs.half_lives
        grid = {k: sorted({*map(float, ls.half_life_grid.get(k) or []), fixed_half_lives[k]}) for k in fixed_half_lives}
        with ranker_features(spark, cfg, hcfg, train, None, fds, run_id, half_life_grid=grid,
                             source=split_of) as feats:
            rows = label_rows(feats if reserved is None else feats.where(~reserved), held)
            covered = rows.where("label = 1").select(c.USER_ID).distinct().count()
            if covered < ls.min_labels:
                return Learned(None, ls.train_protocol, fds, covered,
                               f"{covered} users whose held-out item is among their candidates, fewer than "
                               f"rank.min_labels = {ls.min_labels}")
            fitted = fit_blend(rows, held, rs.weights, grid, fixed_half_lives, ls.learner,
                               ls.negatives_per_user, ls.validation_share, ls.reg_param, ls.seed,
                               search_sweeps=ls.search_sweeps, search_steps=ls.search_steps)
        info = {"held_out_users": labels, "split": split_of,
                "reserved": None if evaluation_seed is None else {"evaluation_half_seed": evaluation_seed}}
        return Learned(fitted, ls.train_protocol, fds, covered, info=info)
    finally:
        train.unpersist()
        held.unpersist()
