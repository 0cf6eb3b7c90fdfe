"""Ranking metrics against hand-computed values and MLlib's RankingEvaluator."""
import math

import pytest
from pyspark.ml.evaluation import RankingEvaluator

from jobs.common.metrics import accuracy, beyond_accuracy

# user a: predicted i1, i2, i3; relevant {i2, i4}.  user b: predicted i5; relevant {i5}.
# user c: relevant {i9}, no predictions (counts with zeros).
RECS = [("a", "i1", 1), ("a", "i2", 2), ("a", "i3", 3), ("b", "i5", 1)]
TRUTH = [("a", "i2"), ("a", "i4"), ("b", "i5"), ("c", "i9")]


@pytest.fixture(scope="module")
def frames(spark):
    recs = spark.createDataFrame(RECS, "user_id string, item_id string, rank int")
    truth = spark.createDataFrame(TRUTH, "user_id string, item_id string")
    return recs, truth


def test_diversity_is_the_mean_pairwise_distance_of_each_list(spark):
    """Random unit float vectors (as the item vectors are stored), lists of 1 to 12 items with
    gaps in their ranks: diversity@K against every pair counted out in numpy."""
    import numpy as np

    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(30, 8))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vectors = spark.createDataFrame([(f"i{n}", [float(x) for x in v]) for n, v in enumerate(vecs)],
                                    "item_id string, embedding array<float>")
    lists = {f"u{u}": list(rng.choice(30, size=int(rng.integers(1, 13)), replace=False)) for u in range(25)}
    rows = [(u, f"i{i}", 2 * r + 1) for u, items in lists.items() for r, i in enumerate(items)]
    recs = spark.createDataFrame(rows, "user_id string, item_id string, rank int")
    train = spark.createDataFrame([("u0", "i0")], "user_id string, item_id string")
    as32 = vecs.astype(np.float32).astype(np.float64)
    for k in (5, 11, 30):
        means = []
        for items in lists.values():
            top = [i for r, i in enumerate(items) if 2 * r + 1 <= k]
            pairs = [1.0 - as32[a] @ as32[b] for n, a in enumerate(top) for b in top[n + 1:]]
            if pairs:
                means.append(np.mean(pairs))
        assert beyond_accuracy(recs, vectors, train, 30, [k])[("diversity", k)] == pytest.approx(np.mean(means)), k


def test_accuracy_matches_hand_computed_values(frames):
    recs, truth = frames
    m = accuracy(recs, truth, [3, 1])
    ndcg_a = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert m[("users", 0)] == 3
    assert m[("recall", 3)] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m[("hit_rate", 3)] == pytest.approx(2 / 3)
    assert m[("ndcg", 3)] == pytest.approx((ndcg_a + 1 + 0) / 3)
    assert m[("mrr", 3)] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m[("map", 3)] == pytest.approx((0.5 / 2 + 1 + 0) / 3)
    # at K = 1 only b's first item hits
    assert m[("recall", 1)] == pytest.approx(1 / 3) and m[("ndcg", 1)] == pytest.approx(1 / 3)
    assert m[("map", 1)] == pytest.approx(1 / 3) and m[("mrr", 1)] == pytest.approx(1 / 3)


def test_accuracy_agrees_with_mllib_ranking_evaluator(spark, frames):
    recs, truth = frames
    ids = {f"i{n}": float(n) for n in range(10)}
    preds = {"a": ["i1", "i2", "i3"], "b": ["i5"], "c": []}
    rel = {"a": ["i2", "i4"], "b": ["i5"], "c": ["i9"]}
    df = spark.createDataFrame([([ids[i] for i in preds[u]], [ids[i] for i in rel[u]]) for u in "abc"],
                               "prediction array<double>, label array<double>")
    ours = accuracy(recs, truth, [3])
    for metric, name in (("ndcgAtK", "ndcg"), ("recallAtK", "recall"), ("meanAveragePrecisionAtK", "map")):
        theirs = RankingEvaluator(metricName=metric, k=3).evaluate(df)
        assert ours[(name, 3)] == pytest.approx(theirs), metric


def test_coverage_diversity_novelty(spark, frames):
    recs, _ = frames
    vectors = spark.createDataFrame([("i1", [1.0, 0.0]), ("i2", [0.0, 1.0]), ("i3", [1.0, 0.0]), ("i5", [1.0, 0.0])],
                                    "item_id string, embedding array<double>")
    train = spark.createDataFrame([("a", "i1"), ("b", "i1"), ("c", "i2")], "user_id string, item_id string")
    m = beyond_accuracy(recs, vectors, train, 10, [2, 3])
    assert m[("coverage", 3)] == pytest.approx(4 / 10)
    assert m[("coverage", 2)] == pytest.approx(3 / 10)                 # i1, i2 (a) and i5 (b)
    # a: pairs (i1,i2)=1, (i1,i3)=0, (i2,i3)=1 -> 2/3; b has one item and is skipped
    assert m[("diversity", 3)] == pytest.approx(2 / 3)
    assert m[("diversity", 2)] == pytest.approx(1.0)                   # a: (i1,i2) only
    info = lambda n: -math.log2((n + 1) / 4)  # noqa: E731  3 training users
    assert m[("novelty", 3)] == pytest.approx((info(2) + info(1) + info(0) + info(0)) / 4)
    assert m[("novelty", 2)] == pytest.approx((info(2) + info(1) + info(0)) / 3)


def test_random_split_holds_out_whole_user_item_pairs(spark):
    import datetime as dt

    from jobs.evaluation import split

    day = dt.date(2026, 6, 30)
    ts = dt.datetime(2026, 6, 30, 12)
    rows = [(f"e{u}{i}{t}", f"u{u}", f"i{i}", t, ts + dt.timedelta(minutes=i), day)
            for u in range(20) for i in range(6) for t in ("view", "purchase")]
    events = spark.createDataFrame(rows, "event_id string, user_id string, item_id string, event_type string, "
                                         "event_ts timestamp, event_date date")
    train, test, fds = split(events, "random_split", day, ["purchase"], random_ratio=0.5, seed=3)
    held = test.select("user_id", "item_id").distinct()
    assert fds == day and 0.3 < held.count() / 120 < 0.7
    assert train.join(held, ["user_id", "item_id"]).count() == 0            # not even the views
    assert train.count() + 2 * held.count() == events.count()
    again = split(events, "random_split", day, ["purchase"], random_ratio=0.5, seed=3)[1].select("user_id", "item_id").distinct()
    assert again.exceptAll(held).count() == 0                               # seeded: the same split


def test_several_models_scored_at_once_match_each_scored_alone(spark, frames):
    from pyspark.sql import functions as F

    from jobs.common.metrics import model_accuracy, model_beyond_accuracy

    recs, truth = frames
    other = spark.createDataFrame([("a", "i4", 1), ("c", "i9", 1), ("c", "i2", 2)], "user_id string, item_id string, rank int")
    both = recs.withColumn("model", F.lit("one")).unionByName(other.withColumn("model", F.lit("two")))
    got = model_accuracy(both, truth, [3, 1], ["one", "two", "none"])
    for name, alone in (("one", recs), ("two", other)):
        single = accuracy(alone, truth, [3, 1])
        assert {k: v[0] for k, v in got[name].items()} == pytest.approx(single)
    # a model without any ranking scores zeros for every user (and counts them)
    assert got["none"][("users", 0)][0] == 3 and got["none"][("ndcg", 3)][0] == 0.0
    vectors = spark.createDataFrame([(f"i{n}", [1.0, 0.0] if n % 2 else [0.0, 1.0]) for n in range(10)],
                                    "item_id string, embedding array<double>")
    beyond = model_beyond_accuracy(both, vectors, truth, 10, [3], ["one", "two"])
    assert beyond["two"] == pytest.approx(beyond_accuracy(other, vectors, truth, 10, [3]))
    assert beyond["one"] == pytest.approx(beyond_accuracy(recs, vectors, truth, 10, [3]))


def test_poisson_weights_are_a_function_of_the_user_alone():
    import numpy as np
    import pandas as pd

    from jobs.common.metrics import poisson_weights

    users = pd.Series([f"u{i}" for i in range(4000)])
    w = poisson_weights(users, 50, seed=3)
    assert w.shape == (4000, 50) and w.min() >= 0
    assert abs(w.mean() - 1.0) < 0.02 and abs(w.var() - 1.0) < 0.05           # Poisson(1)
    # the same user gets the same weights in any batch (partition), another seed others
    np.testing.assert_array_equal(poisson_weights(users.iloc[[7, 3]].reset_index(drop=True), 50, 3), w[[7, 3]])
    assert not np.array_equal(poisson_weights(users[:10], 50, 4), w[:10])


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_users(spark):
    import random

    from jobs.common.metrics import model_accuracy

    def run(n_users):
        rng = random.Random(5)
        recs = [(f"u{u}", f"i{rng.randrange(20)}", r + 1) for u in range(n_users) for r in range(5)]
        truth = [(f"u{u}", f"i{rng.randrange(20)}") for u in range(n_users)]
        r = spark.createDataFrame(recs, "user_id string, item_id string, rank int").repartition(3)
        t = spark.createDataFrame(truth, "user_id string, item_id string")
        from pyspark.sql import functions as F
        return model_accuracy(r.withColumn("model", F.lit("m")), t, [5], ["m"], replicates=200, seed=1)["m"]

    small, large = run(100), run(1600)
    for got in (small, large):
        mean, lo, hi = got[("recall", 5)]
        assert lo < mean < hi
    width = lambda g: g[("recall", 5)][2] - g[("recall", 5)][1]  # noqa: E731
    # the interval shrinks like 1/sqrt(users): 16x the users, about a quarter of the width
    assert 0.15 < width(large) / width(small) < 0.4
    assert run(100) == small                                              # seeded: the same interval again


def test_the_gap_to_the_product_has_a_paired_interval(spark):
    import random

    from pyspark.sql import functions as F

    from jobs.common.metrics import gap_text, model_accuracy

    rng = random.Random(9)
    users = 400
    truth = [(f"u{u}", f"i{rng.randrange(30)}") for u in range(users)]
    base = [(f"u{u}", f"i{rng.randrange(30)}", r + 1) for u in range(users) for r in range(5)]
    # "better" is "base" with the held-out item last in the list of every 20th user: a small, sure gain
    better = [(u, (dict(truth)[u] if r == 5 and int(u[1:]) % 20 == 0 else i), r) for u, i, r in base]
    frame = lambda rows, name: spark.createDataFrame(rows, "user_id string, item_id string, rank int") \
        .withColumn("model", F.lit(name)).repartition(3)  # noqa: E731
    recs = frame(better, "blend").unionByName(frame(base, "base")).unionByName(frame(base, "same"))
    t = spark.createDataFrame(truth, "user_id string, item_id string")
    got = model_accuracy(recs, t, [5], ["blend", "base", "same"], replicates=200, seed=2, reference="blend")
    gap, lo, hi = got["base"][("ndcg_gap", 5)]
    assert gap == pytest.approx(got["blend"][("ndcg", 5)][0] - got["base"][("ndcg", 5)][0])
    assert 0 < lo < gap < hi                                            # a sure gain: the interval excludes 0
    # the paired interval is far narrower than the two models' own intervals side by side
    own = lambda m: got[m][("ndcg", 5)][2] - got[m][("ndcg", 5)][1]  # noqa: E731
    assert hi - lo < 0.5 * min(own("blend"), own("base"))
    # the two intervals side by side overlap: read alone they would not tell the models apart
    assert got["blend"][("ndcg", 5)][1] < got["base"][("ndcg", 5)][2]
    assert got["same"][("ndcg_gap", 5)] == pytest.approx(got["base"][("ndcg_gap", 5)], abs=1e-12)
    assert ("ndcg_gap", 5) not in got["blend"]                          # the product has no gap to itself
    assert gap_text(0.01234, -0.002, 0.03) == "+0.0123 (-0.0020 to +0.0300)" and gap_text(-0.5, None, None) == "-0.5000"


def test_next_day_trains_before_the_day_and_tests_on_its_relevant_events(spark):
    import datetime as dt

    from pyspark.sql import functions as F

    from jobs.evaluation import split

    day = dt.date(2026, 6, 30)
    first = dt.date(2026, 6, 28)
    rows = [(f"e{u}{d}{t}", f"u{u}", f"i{(u + d) % 7}", t, dt.datetime(2026, 6, 28, 12) + dt.timedelta(days=d),
             first + dt.timedelta(days=d)) for u in range(5) for d in range(4) for t in ("view", "purchase")]
    events = spark.createDataFrame(rows, "event_id string, user_id string, item_id string, event_type string, "
                                         "event_ts timestamp, event_date date")
    train, test, fds = split(events, "next_day", day, ["purchase"])
    assert fds == day - dt.timedelta(days=1)
    assert train.agg(F.max("event_date")).first()[0] == fds and train.count() == 5 * 2 * 2
    assert {r["event_id"] for r in test.collect()} == {f"e{u}2purchase" for u in range(5)}   # ds's purchases only


def test_a_ranking_given_under_two_names_scores_as_two_equal_rankings(spark):
    """An ablation of a component the blend gives no weight is the product's very ranking (the
    same frame): scored once, it gets every metric row that ranking it twice gives, its gap to
    the product 0 with a (0, 0) interval."""
    import datetime as dt
    import random

    from jobs.common.config import load_config, with_values
    from jobs.common.settings import EvalSettings
    from jobs.evaluate import _score_models

    rng = random.Random(4)
    schema = "user_id string, item_id string, rank int"
    blend_rows = [(f"u{u}", f"i{rng.randrange(40)}", r + 1) for u in range(60) for r in range(6)]
    pop_rows = [(f"u{u}", f"i{r}", r + 1) for u in range(60) for r in range(6)]
    test = spark.createDataFrame([(f"u{u}", f"i{rng.randrange(40)}") for u in range(60)],
                                 "user_id string, item_id string")
    train = spark.createDataFrame([(f"u{u}", f"i{rng.randrange(40)}") for u in range(60) for _ in range(3)],
                                  "user_id string, item_id string")
    vectors = spark.createDataFrame([(f"i{i}", [float(rng.random()) for _ in range(4)]) for i in range(40)],
                                    "item_id string, embedding array<float>")
    rare = test.where("item_id < 'i2'")
    ev = EvalSettings.from_config(with_values(load_config(), {"eval.bootstrap": 50, "eval.ks": [3, 6]}))
    blend = spark.createDataFrame(blend_rows, schema)
    pop = spark.createDataFrame(pop_rows, schema)
    score = lambda models: {(r[2], r[3], r[4]): (r[5], r[6], r[8], r[9]) for r in _score_models(  # noqa: E731
        dt.date(2026, 6, 30), "leave_last_out", "r", models, test, train, [3, 6], 40, vectors, rare, ev)}
    once = score({"blend": blend, "blend_no_x": blend, "popularity": pop})
    twice = score({"blend": blend, "blend_no_x": spark.createDataFrame(blend_rows, schema), "popularity": pop})
    assert set(once) == set(twice) and ("blend_no_x", "ndcg_rare", 6) in once
    for key, (value, users, lo, hi) in twice.items():
        got = once[key]
        assert got[0] == pytest.approx(value, abs=1e-12) and got[1] == users, key
        assert (got[2] is None) == (lo is None) and (lo is None or got[2] == pytest.approx(lo, abs=1e-12)), key
        assert (got[3] is None) == (hi is None) and (hi is None or got[3] == pytest.approx(hi, abs=1e-12)), key
    assert once[("blend_no_x", "ndcg_gap", 3)] == (0.0, 60, 0.0, 0.0)
    assert once[("popularity", "ndcg_gap", 3)][0] != 0.0
