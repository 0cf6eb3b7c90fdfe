"""The stages of the nightly run, in order. Each maps to ``run(spark, cfg, ds, run_id, rec)``."""
from __future__ import annotations

import functools
import importlib
from typing import Callable

# name -> "module:function"; imported lazily so that `recjobs --help` stays fast.
STAGES: dict[str, str] = {
    "clean": "jobs.clean_events:run",
    "build_sequences": "jobs.build_sequences:run",
    "encode_items": "jobs.encode_items:run",
    "encode_users": "jobs.encode_users:run",
    "train_seqrec": "jobs.train_seqrec:run",
    "fit_topics": "jobs.fit_topics:run",
    "score_sentiment": "jobs.score_sentiment:run",
    "keywords": "jobs.user_keywords:run",
    "mine_rules": "jobs.mine_rules:run",
    "fit_neighbours": "jobs.fit_neighbours:run",
    "rank_topn": "jobs.rank_topn:run",
    "validate": "jobs.validate:run",
    "publish": "jobs.publish:run",
    "evaluate": "jobs.evaluate:run",
}


def stage_function(name: str) -> Callable:
    """The ``run`` function of a stage, which drops Delta's in-process log cache when the stage
    ends (:func:`jobs.common.delta_io.release_logs`): a stage's snapshots do not outlive it,
    whether the night or the hold-out rebuild runs it."""
    if name not in STAGES:
        raise KeyError(name)
    module, func = STAGES[name].split(":")
    run = getattr(importlib.import_module(module), func)

    @functools.wraps(run)
    def released(spark, *args, **kwargs):
        from jobs.common import delta_io

        try:
            return run(spark, *args, **kwargs)
        finally:
            delta_io.release_logs(spark)

    return released
