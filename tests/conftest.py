"""One SparkSession for the whole test run: local[2], few partitions, UTC, Delta on."""
from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

# `pytest -n 2` runs two test processes on the machine's two cores, each with its Spark session,
# Python workers and sequence-model training. A thread pool per process as wide as the machine
# (OpenMP in torch, OpenBLAS in numpy) oversubscribes the cores, and those threads spin while a
# preempted peer holds them up: two test nights side by side took 643 s of wall time so, 389 s
# with one such thread per process. Set before torch or numpy is loaded; a value set outside wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from jobs.common.config import Config, load_config, nested  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]


def cli_args(*args) -> list[str]:
    """``python -m jobs.cli ARGS`` with this interpreter: the command line of a CLI run in a
    process of its own (with :func:`cli_env`)."""
    return [sys.executable, "-m", "jobs.cli", *map(str, args)]


def cli_env() -> dict:
    """This process's environment with the checkout on PYTHONPATH, so that a child process
    imports ``jobs`` from it whatever its working directory."""
    return {**os.environ, "PYTHONPATH": str(PROJECT)}


# A test-scale sequence model (one block, 32 wide, the newest 20 items, at most 40 epochs): samples
# of tens of users need no more, and every night of the suite trains one in each of its lakes.
TEST_SEQREC = {"dim": 32, "layers": 1, "max_len": 20, "epochs": 40}
# One sweep of the blend's weight search (the default three): every fit of the suite still searches.
TEST_RANK = {"search_sweeps": 1}


def _test_values(warehouse: str) -> dict:
    return {
        "rank": dict(TEST_RANK),
        "spark": {
            "master": "local[2]",
            "app_name": "recjobs-tests",
            "conf": {
                "spark.sql.shuffle.partitions": "2",
                "spark.default.parallelism": "2",
                "spark.ui.enabled": "false",
                # the status store's history of queries (1,000 by default) is of no use to a test
                "spark.sql.ui.retainedExecutions": "50",
                "spark.ui.showConsoleProgress": "false",
                "spark.databricks.delta.snapshotPartitions": "1",
                "spark.sql.warehouse.dir": warehouse,
                "spark.driver.memory": "4g",
                # Test-size data: generating, compiling and JIT-compiling code for every query costs
                # more than it saves (a test night: 16% less CPU, the same tables), and the parallel
                # collector spends less CPU than G1's concurrent threads on a 2-core machine; one
                # collector thread per test JVM, as there are two of them (see OMP_NUM_THREADS above).
                "spark.sql.codegen.wholeStage": "false",
                "spark.sql.codegen.factoryMode": "NO_CODEGEN",
                "spark.driver.extraJavaOptions": "-XX:+UseParallelGC -XX:ParallelGCThreads=1",
                # Adaptive execution re-plans every query at each shuffle to coalesce partitions and
                # switch joins, which two partitions of test data never need: the shop night took
                # 243 s without it and 264 s with it, alone on the machine.
                "spark.sql.adaptive.enabled": "false",
                "spark.sql.execution.arrow.pyspark.enabled": "true",
            },
        },
    }


# The modules that use ``shape_night`` (a session fixture: each night is built once per process).
SHAPE_NIGHT_MODULES = ("test_learned.py", "test_nightly.py", "test_shapes.py")

try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:          # without pytest-xdist the suite runs in one process
    LoadScopeScheduling = None


# The groups of tests that take longest (a night each, or several), longest first; every other
# group follows in collection order. ``pytest -n 2`` hands groups to whichever worker is free in
# this order, so the long ones start early and the short ones fill in at the end: in-suite seconds
# of one full run (26 min), the shop night with the resumes run on copies of its lake 797, the
# imported nightly 517, rank 452, the reviews night 355, the ratings night 287, faults 171, the
# series night 104 (the rest: about 390 together, none over 76).
# Sorted by test count instead, the imported nightly came last and one worker ran it alone.
LONGEST_FIRST = ("night-shop", "test_importers.py", "test_rank.py", "night-reviews", "night-ratings",
                 "test_faults.py", "test_seqrec_night.py")


def scope_of(nodeid: str) -> str:
    """The group a test is scheduled with: its shape's night for the tests of SHAPE_NIGHT_MODULES
    (``night-<shape>``), else its module's file name."""
    name = Path(nodeid.split("::", 1)[0]).name
    return f"night-{night_of(nodeid)}" if name in SHAPE_NIGHT_MODULES else name


def pytest_collection_modifyitems(config, items):
    """A module that uses ``shape_night`` must be listed in SHAPE_NIGHT_MODULES, or under
    ``pytest -n`` a second worker would build the same nights again. The groups of LONGEST_FIRST
    are moved to the front, in its order (the order of tests within a group is kept)."""
    unlisted = sorted({item.path.name for item in items if "shape_night" in item.fixturenames
                       and item.path.name not in SHAPE_NIGHT_MODULES})
    if unlisted:
        raise pytest.UsageError(f"tests/conftest.py: add {', '.join(unlisted)} to SHAPE_NIGHT_MODULES "
                                "(they use the shape_night fixture)")
    rank = {scope: n for n, scope in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(scope_of(item.nodeid), len(rank)))


# The night a test of SHAPE_NIGHT_MODULES uses when its id names none (``[shop]`` and the like);
# any other such test uses the shop night (or none).
NIGHT_OF_TEST = {"test_a_rating_site_gets_no_weight_on_returning_to_what_was_seen": "ratings"}


def night_of(nodeid: str) -> str:
    """The shape whose night the test ``nodeid`` uses: its parameter, else NIGHT_OF_TEST, else shop."""
    name = nodeid.rsplit("::", 1)[-1]
    base, _, param = name.partition("[")
    return param[:-1] if param[:-1] in NIGHT_SPECS else NIGHT_OF_TEST.get(base, "shop")


if LoadScopeScheduling is not None:
    class _ModulesAndNights(LoadScopeScheduling):
        """Whole modules to a worker (their module-scoped lakes are built once), and the tests of
        each shape's night, from every module of the shape nights, to the same worker: the nights
        are built side by side, each once."""

        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    @pytest.hookimpl(optionalhook=True)      # -p no:xdist runs without the hook's plugin
    def pytest_xdist_make_scheduler(config, log):
        """``pytest -n N`` (``make test``): :class:`_ModulesAndNights`, the groups in collection
        order (LONGEST_FIRST, then the rest) rather than by their number of tests."""
        config.option.loadscopereorder = False
        return _ModulesAndNights(config, log)


@pytest.fixture(scope="session")
def spark():
    from jobs.common.session import get_spark

    warehouse = tempfile.mkdtemp(prefix="recjobs-warehouse-")
    session = get_spark(load_config(values=_test_values(warehouse)))
    yield session
    session.stop()
    shutil.rmtree(warehouse, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def released_after_each_module():
    """After each module, drop what the test JVM still holds of it: cached frames and Delta's cache
    of table logs and snapshots. A pytest worker's JVM lives for the whole suite; after test_rank.py
    alone it held about 780 MB of such data (long arrays) that this frees, and one worker's 4 GB heap
    ran out late in a run (a 21-million-character review in tests/test_faults.py). Frames a later
    test uses again are read afresh."""
    yield
    from pyspark.sql import SparkSession

    session = SparkSession._instantiatedSession      # a module that started no Spark leaves none
    if session is not None:
        from jobs.common.delta_io import release_logs

        session.catalog.clearCache()
        release_logs(session)
        gc.collect()                                  # Python's handles to JVM objects go first


@pytest.fixture
def lake_cfg(tmp_path):
    """A configuration whose lake lives in a fresh temporary folder."""
    return load_config(values={**_test_values(str(tmp_path / "wh")), "lake": {"root": str(tmp_path / "lake")}})


def deep_merge(base: dict, extra: dict) -> dict:
    """``extra`` layered over ``base``, mapping by mapping."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass
class Lake:
    """A generated sample and a configuration whose lake, input, DQ docs and reports live in ``root``."""

    cfg: Config
    root: Path
    truth: dict
    values: dict


@pytest.fixture(scope="session")
def make_lake(tmp_path_factory):
    """``make_lake(name, spec, values=None) -> Lake``: generate ``spec`` into a fresh folder and a
    configuration over it: the shape's suggested settings (clean window = the sample's days,
    exclusions, windows), the lake, DQ docs and reports in the folder, the suite's Spark settings,
    ``values`` on top."""
    from jobs.sample_data import generate

    def make(name: str, spec, values: dict | None = None) -> Lake:
        root = tmp_path_factory.mktemp(name)
        truth = generate(root / "sample", spec)
        # the shape's own suggested settings (exclusions, windows, bot rules), as a user would run it
        # and the suite's Spark settings, which a run of its conf.yaml in a process of its own
        # gets too (a session already running in this process keeps its own)
        base = deep_merge(nested(truth["run_settings"]),
                          {"lake": {"root": str(root / "lake")}, "dq": {"docs_dir": str(root / "dq")},
                           "report": {"dir": str(root / "reports")}, "seqrec": TEST_SEQREC,
                           "rank": TEST_RANK, "spark": _test_values(str(root / "wh"))["spark"]})
        merged = deep_merge(base, values or {})
        return Lake(load_config(values=merged), root, truth, merged)

    return make


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny, randomly initialised BERT encoder + tokenizer saved with save_pretrained."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    words = ("running shoes trail jogging sneakers kitchen knife stainless purchased viewed clicked "
             "category brand tags tent camping novel garden audio the a and of for with").split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", ":", ";", "(", ")", "!", "-"]
    vocab += sorted(set(words)) + list(letters) + [f"##{ch}" for ch in letters]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory, tiny_model_dir):
    """A tiny, randomly initialised BERT sequence classifier (NEGATIVE / POSITIVE)."""
    import shutil

    import torch
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-clf")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        src = os.path.join(tiny_model_dir, name)
        if os.path.exists(src):
            shutil.copy(src, folder / name)
    torch.manual_seed(1)
    config = BertConfig(vocab_size=sum(1 for _ in open(folder / "vocab.txt")), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128, num_labels=2,
                        id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    BertForSequenceClassification(config).save_pretrained(folder)
    return str(folder)


# One nightly per sample shape, shared by the tests that look at its outcome (tests/test_shapes.py,
# tests/test_nightly.py): small samples, the tiny encoder, a small LDA, a short evaluation.
NIGHT_SPECS = {
    "shop": dict(users=60, items=60, days=5, seed=5),
    "ratings": dict(users=60, items=120, days=150, seed=6),
    "reviews": dict(users=150, items=50, days=450, seed=7),
}


@dataclass
class Night:
    """A sample of one shape and the nightly's outcome on it."""

    lake: Lake
    ds: object
    out: dict

    @property
    def cfg(self) -> Config:
        return self.lake.cfg


@pytest.fixture(scope="session")
def shape_night(spark, make_lake, tiny_model_dir):
    """``shape_night(shape) -> Night``: the nightly run once per shape and test session."""
    import yaml

    from jobs.nightly import run_nightly
    from jobs.sample_data import SampleSpec

    nights: dict[str, Night] = {}

    def night(shape: str) -> Night:
        if shape not in nights:
            spec = SampleSpec(shape=shape, **NIGHT_SPECS[shape])
            made = make_lake(f"night-{shape}", spec, {
                "encoder": {"model": tiny_model_dir},
                "topics": {"k": 4, "max_iter": 20},
                # the blend learns from half of 60 users' held-out events (the evaluation scores the other half)
                "rank": {"min_labels": 15},
                # leave-last-out, the protocol of every shape (next-day: tests/test_rank.py)
                "eval": {"protocols": ["leave_last_out"], "ablations": [], "baselines": ["popularity", "ease", "seqrec"],
                         "ks": [10]},
            })
            (made.root / "conf.yaml").write_text(yaml.safe_dump(made.values))
            out = run_nightly(spark, made.cfg, spec.end_date, echo=lambda *a, **k: None)
            nights[shape] = Night(made, spec.end_date, out)
        return nights[shape]

    return night
