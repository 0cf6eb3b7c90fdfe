"""Blocked top-K, ranking and publishing on generated data with the packaged MiniLM."""
import datetime as dt

import numpy as np
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.common import delta_io
from jobs.common.config import with_values
from jobs.common.runner import run_stage
from jobs.ranking import retrieve
from jobs.sample_data import SampleSpec
from udfs.topk import block_topk, group_size, select_topk, vectors

SPEC = SampleSpec(users=150, items=150, days=9, seed=41)
DS = SPEC.end_date - dt.timedelta(days=1)          # the last day is held out
STAGES = ("build_sequences", "encode_items", "encode_users", "fit_topics", "score_sentiment", "keywords",
          "mine_rules", "fit_neighbours", "rank_topn", "validate", "publish")
N = 10


@pytest.mark.parametrize("n_items,k", [(101, 7), (3001, 20), (5000, 1)])
def test_block_topk_matches_brute_force(n_items, k):
    rng = np.random.default_rng(n_items)
    users, items = rng.normal(size=(37, 16)).astype(np.float32), rng.normal(size=(n_items, 16)).astype(np.float32)
    scores, index = block_topk(users, items, k=k, block_rows=8, device="cpu")
    full = users @ items.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(index, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), rtol=1e-5)
    _, loose = block_topk(users, items, k=k, block_rows=8, device="cpu", ordered=False)
    np.testing.assert_array_equal(np.sort(loose, axis=1), np.sort(expected, axis=1))


def test_two_stage_selection_is_used_and_exact_at_group_edges():
    import torch

    assert group_size(30, 7) == 1                           # too few columns: one plain top-K
    g = group_size(3001, 20)
    assert g == 12 and -(-3001 // g) >= 2 * 20
    # every score of one row sits in a single strided group: the two-stage pass must still find them
    scores = torch.full((2, 120 * 10), -1.0)
    hot = torch.arange(10) * 120 + 7                        # all members of group 7 (G = 120, g = 10)
    scores[0, hot] = torch.arange(10, dtype=torch.float32)
    scores[1, :30] = torch.linspace(1.0, 2.0, 30)          # consecutive columns: 30 different groups
    for host in (True, False):                              # numpy's argpartition, torch.topk
        values, index = select_topk(scores, 10, 10, host=host)
        assert index[0].tolist() == hot.flip(0).tolist()
        assert index[1].tolist() == list(range(29, 19, -1))
        assert values[1, 0].item() == 2.0


@pytest.mark.parametrize("g,host", [(1, True), (10, True), (1, False), (10, False)])
def test_selection_orders_equal_scores_by_column_and_unordered_keeps_the_same_set(g, host):
    import torch

    scores = np.zeros((3, 400), dtype=np.float32)
    scores[0, [390, 5, 200]] = 1.0                       # three equal winners: columns ascending
    scores[1] = np.linspace(0.0, 1.0, 400, dtype=np.float32)
    scores[2] = -np.arange(400, dtype=np.float32)        # best column first
    values, index = select_topk(torch.from_numpy(scores), 5, g, host=host)
    assert index[0, :3].tolist() == [5, 200, 390] and values[0, :3].tolist() == [1.0, 1.0, 1.0]
    assert index[1].tolist() == [399, 398, 397, 396, 395]
    assert index[2].tolist() == [0, 1, 2, 3, 4]
    loose_values, loose = select_topk(torch.from_numpy(scores), 5, g, ordered=False, host=host)
    assert [sorted(r) for r in loose[1:].tolist()] == [sorted(r) for r in index[1:].tolist()]
    assert torch.equal(loose_values.gather(1, torch.argsort(loose, 1)), values.gather(1, torch.argsort(index, 1)))


def test_vectors_reject_ragged_or_null_embeddings():
    import pyarrow as pa

    ok = vectors(pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float32())))
    assert ok.shape == (2, 2) and ok.dtype == np.float32
    with pytest.raises(ValueError, match="different lengths"):
        vectors(pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float32())))
    with pytest.raises(ValueError, match="NULL vector"):
        vectors(pa.array([[1.0, 2.0], None], pa.list_(pa.float32())))


def test_sharded_retrieval_equals_whole_matrix(spark):
    rng = np.random.default_rng(1)
    users = spark.createDataFrame([(f"u{i}", rng.normal(size=8).astype(float).tolist()) for i in range(9)],
                                  "user_id string, embedding array<float>")
    items = spark.createDataFrame([(f"i{i:03d}", rng.normal(size=8).astype(float).tolist()) for i in range(40)],
                                  "item_id string, embedding array<float>")
    whole = retrieve(users, items, k=5, shard_rows=1000, block_rows=4)
    sharded = retrieve(users, items, k=5, shard_rows=7, block_rows=4)          # 6 shards, merged
    assert whole.count() == 9 * 5
    assertDataFrameEqual(sharded.select("user_id", "item_id"), whole.select("user_id", "item_id"),
                         checkRowOrder=False)


@pytest.fixture(scope="module")
def lake(spark, make_lake):
    # the fixed blend: these tests hold its figures (the learned one is tests/test_learned.py's)
    made = make_lake("rank", SPEC, {"rank": {"top_n": N, "model": "fixed"}, "dq": {"validate_raw": False}})
    cfg, truth = made.cfg, made.truth
    run_stage(spark, cfg, "clean", SPEC.end_date, "run-clean")       # all days, incl. the held-out one
    results = {s: run_stage(spark, cfg, s, DS, "run-1") for s in STAGES}
    return cfg, truth, results


def _recs(spark, cfg):
    return delta_io.read_table(spark, cfg, "recommendations").where(F.col("ds") == DS)


def test_top_n_shape_ranks_and_exclusions(spark, lake):
    cfg, _, results = lake
    recs = _recs(spark, cfg).cache()
    per_user = {r["user_id"]: r["n"] for r in recs.groupBy("user_id").agg(F.count("*").alias("n")).collect()}
    assert per_user.pop("__default__") == N == results["rank_topn"]["default_list"]   # the list for strangers
    assert per_user and max(per_user.values()) <= N
    short = sum(1 for n in per_user.values() if n < N)
    assert short == results["rank_topn"]["users_short_of_n"] - (results["rank_topn"]["users"] - len(per_user))
    assert short <= 0.05 * len(per_user)
    ranks = recs.groupBy("user_id").agg(F.sort_array(F.collect_list("rank")).alias("r"), F.count("*").alias("n"))
    assert ranks.where(F.col("r") != F.sequence(F.lit(1), F.col("n"))).count() == 0          # 1..n, unique
    bought = delta_io.read_table(spark, cfg, "events_clean").where(
        (F.col("event_type") == "purchase") & (F.col("event_date") <= DS)).select("user_id", "item_id")
    assert recs.join(bought, ["user_id", "item_id"]).count() == 0
    negative = delta_io.read_table(spark, cfg, "user_item_sentiment").where(
        (F.col("ds") == DS) & (F.col("score") <= cfg["sentiment"]["negative_threshold"]))
    assert negative.count() > 0
    assert recs.join(negative.select("user_id", "item_id"), ["user_id", "item_id"]).count() == 0
    items = delta_io.read_table(spark, cfg, "items_clean")
    per_cat = recs.join(items, "item_id").groupBy("user_id", "category").count()
    assert per_cat.where(F.col("count") > cfg["rank"]["max_per_category"]).count() == 0
    # engagement = 2^(-days since the user's newest event on the item / half-life); 0 when none
    end = dt.datetime.combine(DS + dt.timedelta(days=1), dt.time())
    half_life = cfg["rank"]["engagement_half_life_days"]
    seq = (delta_io.read_table(spark, cfg, "user_sequences").where(F.col("ds") == DS)
           .select("user_id", F.explode("events").alias("e"))
           .groupBy("user_id", F.col("e.item_id").alias("item_id")).agg(F.max("e.event_ts").alias("last")))
    both = recs.join(seq, ["user_id", "item_id"], "left").select(
        "last", F.col("components.engagement").alias("e"),
        F.coalesce(F.pow(F.lit(2.0), -(F.lit(end).cast("long") - F.col("last").cast("long")) / 86400.0 / half_life),
                   F.lit(0.0)).alias("want"))
    assert both.where(F.abs(F.col("want") - F.col("e")) > 1e-9).count() == 0
    assert both.where("last IS NOT NULL AND e > 0.5").count() > 0          # some were touched within a half-life
    assert recs.where(F.col("reason").rlike("^recently (viewed|clicked|added to cart) by you$")).count() > 0
    assert recs.where("reason IS NULL OR reason = '' OR NOT isnotnull(score) OR isnan(score)").count() == 0


def test_max_engaged_limits_the_items_a_user_already_engaged_with(spark, lake):
    from jobs.common.config import ConfigError
    from jobs.common.settings import RankSettings
    from jobs.ranking import blend_rank, candidate_features

    cfg, _, _ = lake
    settings = RankSettings.from_config(cfg)
    with candidate_features(delta_io.reader(spark, cfg), DS, settings) as data:
        free = blend_rank(data.features, settings).cache()
        capped = blend_rank(data.features, RankSettings.from_config(with_values(cfg, {"rank.max_engaged": 2}))).cache()
        count = lambda df: dict(df.where("engagement > 0").groupBy("user_id").count().collect())  # noqa: E731
        assert max(count(free).values()) > 2                         # without a limit lists hold more
        assert max(count(capped).values()) == 2
        # the freed places go to other candidates: list lengths do not change
        assert capped.groupBy("user_id").count().exceptAll(free.groupBy("user_id").count()).count() == 0
        for df in (free, capped):
            df.unpersist()
    with pytest.raises(ConfigError, match="rank.max_engaged"):
        RankSettings.from_config(with_values(cfg, {"rank.max_engaged": -1}))
    with pytest.raises(ConfigError, match="rank.engagement_half_life_days"):
        RankSettings.from_config(with_values(cfg, {"rank.engagement_half_life_days": 0}))


def test_disliked_is_the_similarity_to_the_nearest_negatively_reviewed_item(spark, lake):
    import dataclasses

    from jobs.common.settings import RankSettings
    from jobs.ranking import candidate_features

    cfg, _, _ = lake
    negative = delta_io.read_table(spark, cfg, "user_item_sentiment").where(
        (F.col("ds") == DS) & (F.col("score") <= cfg["sentiment"]["negative_threshold"])).select("user_id", "item_id")
    disliked: dict[str, list[str]] = {}
    for r in negative.collect():                                      # a handful of reviews
        disliked.setdefault(r["user_id"], []).append(r["item_id"])
    vectors = {r["item_id"]: np.asarray(r["embedding"])
               for r in delta_io.read_table(spark, cfg, "item_embeddings").collect()}   # 150 items
    # a low threshold, so that both sides of it occur among this small catalogue's candidates
    settings = dataclasses.replace(RankSettings.from_config(cfg), negative_neighbour_threshold=0.3)
    with candidate_features(delta_io.reader(spark, cfg), DS, settings) as data:
        rows = (data.features.where(F.col("user_id").isin(list(disliked)))
                .select("user_id", "item_id", "disliked").collect())
        others = data.features.where(~F.col("user_id").isin(list(disliked))).agg(F.max("disliked")).first()[0]
    assert others == 0.0                                              # no negative review: nothing to demote
    near = far = 0
    for r in rows:
        best = max(float(vectors[r["item_id"]] @ vectors[n]) for n in disliked[r["user_id"]])
        expected = best if best >= 0.3 else 0.0
        assert r["disliked"] == pytest.approx(expected, abs=1e-5)
        near, far = near + (expected > 0), far + (expected == 0)
    assert near > 0 and far > 0


def _recall_at_10(recs: dict, truth: dict) -> float:
    hits = [len(set(recs.get(u, [])[:10]) & items) / len(items) for u, items in truth.items() if items]
    return float(np.mean(hits))


def _oracle_recs(spark, cfg, truth: dict, users) -> dict:
    """Top 10 by the behaviour model itself: P(item) = (1 - r) x end preference of the item's topic
    x the item's share of its topic + r x the chance of revisiting it (engaged, not bought,
    2^(-age / half-life) since the last view), purchased items excluded. No recommender can expect
    to do better."""
    names = [t["name"] for t in truth["topics"]]
    rate, half_life = truth["revisit"]["rate"], truth["revisit"]["half_life_days"]
    noon = dt.datetime.combine(SPEC.end_date, dt.time(12), tzinfo=dt.timezone.utc).timestamp()
    bought, last_view = {}, {}
    for r in (delta_io.read_table(spark, cfg, "events_clean").where(F.col("event_date") <= DS)
              .groupBy("user_id", "item_id")
              .agg(F.max((F.col("event_type") == "purchase").cast("int")).alias("bought"),
                   F.max(F.when(F.col("event_type") == "view", F.unix_timestamp("event_ts"))).alias("seen"))
              .collect()):
        if r["bought"]:
            bought.setdefault(r["user_id"], set()).add(r["item_id"])
        elif r["seen"] is not None:
            last_view.setdefault(r["user_id"], {})[r["item_id"]] = r["seen"]
    recs = {}
    for u in users:
        pref = truth["users"][u]["end_pref"]
        back = {i: 2.0 ** (-(noon - ts) / 86400 / half_life) for i, ts in last_view.get(u, {}).items()}
        norm = sum(back.values()) or 1.0
        p = {i: (1 - rate) * pref[names.index(truth["item_topics"][i])] * share + rate * back.get(i, 0.0) / norm
             for i, share in truth["item_topic_share"].items() if i not in bought.get(u, ())}
        recs[u] = sorted(p, key=lambda i: (-p[i], i))[:10]
    return recs


def test_recall_against_popularity_and_the_planted_ceiling_on_next_day_events(spark, lake):
    cfg, truth, _ = lake
    nxt = (delta_io.read_table(spark, cfg, "events_clean").where(F.col("event_date") == SPEC.end_date)
           .groupBy("user_id").agg(F.collect_set("item_id").alias("items")).collect())
    future = {r["user_id"]: set(r["items"]) for r in nxt}
    recs = {}
    for r in _recs(spark, cfg).orderBy("user_id", "rank").collect():
        recs.setdefault(r["user_id"], []).append(r["item_id"])
    future = {u: items for u, items in future.items() if u in recs}
    assert len(future) >= 50
    popular = [r["item_id"] for r in delta_io.read_table(spark, cfg, "events_clean")
               .where(F.col("event_date") <= DS).groupBy("item_id").count()
               .orderBy(F.col("count").desc(), "item_id").limit(10).collect()]
    model = _recall_at_10(recs, future)
    baseline = _recall_at_10({u: popular for u in future}, future)
    ceiling = _recall_at_10(_oracle_recs(spark, cfg, truth, future), future)
    print(f"next-day Recall@10 on {len(future)} users: fixed blend {model:.3f}, popularity {baseline:.3f}, "
          f"planted ceiling {ceiling:.3f}")
    # measured on 67 users with the deterministic LDA fit: blend 0.336, popularity 0.177 (1.90x),
    # the planted behaviour model itself 0.411 (2.32x; the blend reaches 82% of it). Before the item
    # neighbours entered the fixed blend it read 0.346 (1.95x); the 0.367 of earlier releases came
    # from an LDA fit that changed with the lake's file listing.
    assert ceiling > model >= 1.8 * baseline, (model, baseline, ceiling)
    assert model >= 0.8 * ceiling, (model, ceiling)


def test_a_service_reads_the_table_without_spark(spark, lake):
    cfg, _, results = lake
    # the README's snippet
    from deltalake import DeltaTable

    table = DeltaTable(delta_io.table_path(cfg, "recommendations"))
    df = table.to_pandas(filters=[("ds", "=", DS)])
    assert len(df) == results["rank_topn"]["rows"] + results["rank_topn"]["default_list"]
    one = df[df["user_id"] == df["user_id"].min()].sort_values("rank")
    assert list(one["rank"]) == list(range(1, len(one) + 1))


def test_maintain_compacts_and_keeps_the_data(spark, lake):
    from jobs.common.delta_io import maintain

    cfg, _, _ = lake
    before = _recs(spark, cfg).count()
    done = {row["table"] for row in maintain(spark, cfg)}
    assert {"recommendations", "events_clean", "runs"} <= done
    assert _recs(spark, cfg).count() == before
    ops = [r["operation"] for r in delta_io.history(spark, cfg, "recommendations").collect()]
    assert "OPTIMIZE" in ops and "VACUUM END" in ops


def test_sql_command_sees_every_table(spark, lake, capsys):
    from jobs.cli import main

    cfg, _, _ = lake
    assert main(["sql", "SELECT count(*) AS n FROM recommendations", "--set", f"lake.root={cfg['lake']['root']}"]) == 0
    assert str(_recs(spark, cfg).count()) in capsys.readouterr().out


@pytest.fixture(scope="module")
def evaluated(spark, lake):
    cfg, _, _ = lake
    relevant_users = _relevant_users(spark, cfg)
    # eval.max_users below the evaluation half of the held-out users: leave-last-out scores a sample of it
    ecfg = with_values(cfg, {"eval.protocols": ["leave_last_out"], "eval.ablations": ["no_lm", "no_decay"],
                             "eval.baselines": ["popularity", "cooccurrence", "als", "ease"], "eval.ks": [10],
                             "eval.max_users": relevant_users // 2 - 15, "eval.bootstrap": 100})
    return ecfg, run_stage(spark, ecfg, "evaluate", DS, "run-eval")


def _relevant_users(spark, cfg) -> int:
    events = delta_io.read_table(spark, cfg, "events_clean")
    return (events.where((F.col("event_date") <= DS) & F.col("event_type").isin(cfg["eval"]["relevant_types"]))
            .select("user_id").distinct().count())


def test_the_evaluation_scores_a_seeded_sample_of_users_with_intervals(spark, evaluated):
    from jobs.evaluate import sample_users

    cfg, summary = evaluated
    llo = summary["protocols"]["leave_last_out"]
    assert llo["held_out_users"] == _relevant_users(spark, cfg) and llo["users"] == cfg["eval"]["max_users"]
    rows = (delta_io.read_table(spark, cfg, "metrics").where((F.col("ds") == DS) & (F.col("protocol") == "leave_last_out"))
            .collect())
    assert {r["users"] for r in rows} == {cfg["eval"]["max_users"]}
    for r in rows:
        if r["metric"] in ("coverage", "diversity", "novelty"):
            assert r["ci_low"] is None and r["ci_high"] is None
        else:
            assert r["ci_low"] <= r["value"] <= r["ci_high"], r
    wide = [r for r in rows if r["metric"] == "ndcg" and r["model"] in ("blend", "popularity")]
    assert all(r["ci_high"] > r["ci_low"] for r in wide)
    # every model ranked in the product's pass has its gap to the product (no_decay is rebuilt apart)
    values = {(r["model"], r["metric"]): r["value"] for r in rows if r["k"] == 10}
    gaps = {m: v for (m, metric), v in values.items() if metric == "ndcg_gap"}
    assert set(gaps) == {"blend_fixed", "blend_no_lm", "popularity", "cooccurrence", "als", "ease"}
    for model, gap in gaps.items():
        assert gap == pytest.approx(values[("blend", "ndcg")] - values[(model, "ndcg")], abs=1e-9)
    users = delta_io.read_table(spark, cfg, "events_clean").select("user_id").distinct()
    first = {r["user_id"] for r in sample_users(users, 40, 17).collect()}
    assert len(first) == 40 and first == {r["user_id"] for r in sample_users(users.repartition(5), 40, 17).collect()}
    assert first != {r["user_id"] for r in sample_users(users, 40, 18).collect()}


def test_blend_beats_popularity_and_cooccurrence_under_leave_last_out(spark, evaluated):
    cfg, summary = evaluated
    ndcg = {r["model"]: r["value"] for r in delta_io.read_table(spark, cfg, "metrics")
            .where((F.col("ds") == DS) & (F.col("protocol") == "leave_last_out") & (F.col("metric") == "ndcg")
                   & (F.col("k") == 10)).collect()}
    assert set(ndcg) == {"blend", "blend_fixed", "blend_no_lm", "blend_no_decay", "popularity", "cooccurrence", "als",
                         "ease"}
    assert ndcg["blend"] > ndcg["popularity"] and ndcg["blend"] > ndcg["cooccurrence"], ndcg
    assert summary["protocols"]["leave_last_out"]["table"]["blend.ndcg@10"] == pytest.approx(ndcg["blend"], abs=1e-4)


def test_leave_last_out_holds_out_one_event_per_user_and_never_trains_on_it(spark, evaluated):
    from jobs.evaluation.holdout import holdout_cfg, holdout_name
    from jobs.evaluation import split

    cfg, _ = evaluated
    events = delta_io.read_table(spark, cfg, "events_clean")
    _, test, fds = split(events, "leave_last_out", DS, cfg["eval"]["relevant_types"])
    relevant_users = _relevant_users(spark, cfg)
    per_user = test.groupBy("user_id").count()
    assert per_user.count() == relevant_users and per_user.where("count != 1").count() == 0 and fds == DS
    held = test.select("user_id", F.col("event_id").alias("held_id"), F.col("event_ts").alias("held_ts"))
    for suffix in ("", "-no_decay"):
        ecfg = holdout_cfg(cfg, holdout_name("leave_last_out", suffix))
        train = delta_io.read_table(spark, ecfg, "events_clean")     # what every feature is built from
        assert train.count() > 0
        assert train.join(held, train.event_id == held.held_id).count() == 0
        assert train.join(held, "user_id").where(F.col("event_ts") >= F.col("held_ts")).count() == 0
        seqs = delta_io.read_table(spark, ecfg, "user_sequences").where(F.col("ds") == DS)
        seq_events = seqs.select("user_id", F.explode("events").alias("e")).select("user_id", "e.event_ts")
        assert seq_events.join(held, "user_id").where(F.col("event_ts") >= F.col("held_ts")).count() == 0
        users = delta_io.read_table(spark, ecfg, "user_embeddings").where(F.col("ds") == DS)
        assert users.join(seqs, "user_id").where(users.n_events != seqs.n_events).count() == 0
