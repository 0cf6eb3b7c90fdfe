"""Encoding throughput, measured side by side in one run.

    python benchmarks/encode.py [--texts 2000] [--cores N] [--catalogue 40000] [--changed 0.01]
                                [--runtimes torch torch-int8 onnx] [--no-incremental]

(a) plain transformers in one process, torch using all N cores, batches of 64 in input order;
(b) the same texts through the Spark encoder UDF on local[N] (one task per core, one torch
    thread per task, batches sorted by token length);
both after a warm-up, so model loading is excluded from both. Prints texts/s and b/a.

The CPU runtimes (``encoder.runtime``): for each, texts/s through the Spark encoder UDF on the
same texts, and how close its vectors are to float32 torch's on them: the mean cosine between
the two vectors of each text, and the top-10 retrieval overlap (each text's 10 nearest texts
under the runtime's vectors against under float32's, the share in common, averaged). A runtime
qualifies at a cosine of at least 0.99 and an overlap of at least 0.95; the fastest that does
is printed as the CPU default.

Then encode_items on a catalogue: a full encode, 1% of the items changed, an incremental
encode. Prints the items encoded and the time ratio full / incremental.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.sample_data import SampleSpec, generate  # noqa: E402


def item_texts(n: int, seed: int = 1) -> list[str]:
    """n realistic item texts (the generator's catalogue through the default template)."""
    from jobs.sample_data import FaultRates, generator

    gen = generator(SampleSpec(users=1, items=n, days=1, seed=seed, faults=FaultRates.none()))
    gen.make_items()
    return [f"{it['title']}. Category: {it['category']}. Brand: {it['brand']}. "
            f"Tags: {it['tags'].replace('|', ', ')}. {it['description']}" for it in gen.items]


def plain_transformers(texts: list[str], cores: int, batch: int = 64) -> float:
    """texts/s of a straightforward transformers loop (mean pooling, L2 norm)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from udfs.models import resolve_model

    torch.set_num_threads(cores)
    folder, _ = resolve_model("packaged:all-MiniLM-L6-v2")
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

    def run(items: list[str]) -> None:
        with torch.inference_mode():
            for i in range(0, len(items), batch):
                enc = tok(items[i:i + batch], padding=True, truncation=True, max_length=128, return_tensors="pt")
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).float()
                torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()

    run(texts[:batch])  # warm-up
    t0 = time.perf_counter()
    run(texts)
    return len(texts) / (time.perf_counter() - t0)


def spark_udf(spark, texts: list[str], cores: int) -> float:
    """texts/s through encoder_udf on local[cores] (warm workers)."""
    from pyspark.sql import functions as F

    from udfs.text_encoder import EncoderSettings, encoder_udf

    udf = encoder_udf(EncoderSettings())
    df = spark.createDataFrame([(t,) for t in texts], "text string").repartition(cores).cache()
    df.count()

    def run(frame) -> None:
        frame.select(F.sum(F.size(udf("text")))).collect()

    run(spark.createDataFrame([(t,) for t in texts[:cores * 64]], "text string").repartition(cores))  # warm-up
    t0 = time.perf_counter()
    run(df)
    return len(texts) / (time.perf_counter() - t0)


MIN_COSINE, MIN_OVERLAP = 0.99, 0.95


def runtime_vectors(spark, texts: list[str], cores: int, runtime: str) -> tuple[np.ndarray, float]:
    """The texts' vectors through the Spark encoder UDF with ``runtime`` (input order) and texts/s."""
    from pyspark.sql import functions as F

    from udfs.text_encoder import EncoderSettings, encoder_udf

    udf = encoder_udf(EncoderSettings(runtime=runtime, device="cpu"))
    df = spark.createDataFrame(list(enumerate(texts)), "i int, text string").repartition(cores).cache()
    df.count()
    warm = spark.createDataFrame([(t,) for t in texts[:cores * 64]], "text string").repartition(cores)
    warm.select(F.sum(F.size(udf("text")))).collect()                   # loads (and exports) the model
    t0 = time.perf_counter()
    rows = df.select("i", udf("text").alias("v")).collect()             # the benchmark's own 2,000 texts
    rate = len(texts) / (time.perf_counter() - t0)
    df.unpersist()
    out = np.zeros((len(texts), len(rows[0]["v"])), dtype=np.float32)
    for r in rows:
        out[r["i"]] = r["v"]
    return out, rate


def closeness(ref: np.ndarray, got: np.ndarray, k: int = 10) -> tuple[float, float]:
    """(mean cosine of each text's two vectors, mean top-k overlap of each text's neighbours)."""
    cos = float(np.mean(np.sum(ref * got, axis=1)))

    def neighbours(v):
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1, kind="stable")[:, :k]

    a, b = neighbours(ref), neighbours(got)
    overlap = float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)]))
    return cos, overlap


def runtimes(spark, texts: list[str], cores: int, names: list[str]) -> list[dict]:
    """Every runtime against float32 torch on the same texts."""
    import importlib.util

    ref, ref_rate = runtime_vectors(spark, texts, cores, "torch")
    out = [{"runtime": "torch", "texts_per_s": round(ref_rate, 1), "speedup": 1.0, "cosine": 1.0,
            "overlap_at_10": 1.0, "qualifies": True}]
    for name in names:
        if name == "torch":
            continue
        if name == "onnx" and importlib.util.find_spec("onnxruntime") is None:
            out.append({"runtime": name, "skipped": "onnxruntime is not installed (pip install 'recjobs[onnx]')"})
            continue
        got, rate = runtime_vectors(spark, texts, cores, name)
        cos, overlap = closeness(ref, got)
        out.append({"runtime": name, "texts_per_s": round(rate, 1), "speedup": round(rate / ref_rate, 2),
                    "cosine": round(cos, 5), "overlap_at_10": round(overlap, 4),
                    "qualifies": cos >= MIN_COSINE and overlap >= MIN_OVERLAP})
    return out


def incremental(spark, cfg_values: dict, root: Path, catalogue: int, changed: float) -> dict:
    """Full encode_items, change a fraction of items, incremental encode_items."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from jobs.common import delta_io
    from jobs.common.config import load_config
    from jobs.common.runner import run_stage

    spec = SampleSpec(users=20, items=catalogue, days=1, seed=3)
    generate(root / "sample", spec)
    cfg = load_config(values={**cfg_values, "lake": {"root": str(root / "lake")},
                              "input": {"events_path": str(root / "sample" / "events"),
                                        "items_path": str(root / "sample" / "items")}})
    run_stage(spark, cfg, "clean", spec.end_date, "bench-clean")
    full_cfg = load_config(values={**cfg, "encoder": {**cfg["encoder"], "full_refresh": True}})
    t0 = time.perf_counter()
    full = run_stage(spark, full_cfg, "encode_items", spec.end_date, "bench-full")
    t_full = time.perf_counter() - t0
    items = delta_io.read_table(spark, cfg, "items_clean")
    n_change = max(1, int(round(changed * full["items"])))
    ids = [r["item_id"] for r in items.select("item_id").orderBy("item_id").limit(n_change).collect()]
    DeltaTable.forPath(spark, delta_io.table_path(cfg, "items_clean")).update(
        F.col("item_id").isin(ids), {"description": F.concat(F.col("description"), F.lit(" Now in new colours."))})
    t0 = time.perf_counter()
    inc = run_stage(spark, cfg, "encode_items", spec.end_date, "bench-inc")
    t_inc = time.perf_counter() - t0
    return {"catalogue": full["items"], "changed": n_change, "full_encoded": full["encoded"],
            "incremental_encoded": inc["encoded"], "full_s": round(t_full, 2), "incremental_s": round(t_inc, 2),
            "speedup": round(t_full / t_inc, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--catalogue", type=int, default=40000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--runtimes", nargs="*", default=["torch", "torch-int8", "onnx"])
    parser.add_argument("--no-incremental", action="store_true", help="skip the encode_items part")
    args = parser.parse_args(argv)

    from jobs.common.config import load_config
    from jobs.common.session import get_spark

    texts = item_texts(args.texts)
    values = {"spark": {"master": f"local[{args.cores}]", "conf": {
        "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": str(args.cores), "spark.default.parallelism": str(args.cores),
        "spark.databricks.delta.snapshotPartitions": "2", "spark.driver.memory": "4g"}}}
    plain = plain_transformers(texts, args.cores)
    spark = get_spark(load_config(values=values), app_name="bench-encode")
    udf = spark_udf(spark, texts, args.cores)
    compared = runtimes(spark, texts, args.cores, args.runtimes) if args.runtimes else []
    inc = None
    if not args.no_incremental:
        with tempfile.TemporaryDirectory() as tmp:
            inc = incremental(spark, values, Path(tmp), args.catalogue, args.changed)
    spark.stop()
    result = {"texts": len(texts), "cores": args.cores, "plain_texts_per_s": round(plain, 1),
              "spark_udf_texts_per_s": round(udf, 1), "ratio_spark_over_plain": round(udf / plain, 2),
              "runtimes": compared, "incremental": inc}
    print(f"encode {len(texts)} item texts on {args.cores} cores, all-MiniLM-L6-v2 (CPU):")
    print(f"  (a) plain transformers, one process : {plain:8.1f} texts/s")
    print(f"  (b) Spark encoder UDF, local[{args.cores}]   : {udf:8.1f} texts/s   ratio b/a = {udf / plain:.2f}")
    if compared:
        print(f"CPU runtimes through the encoder UDF, against float32 torch on the same {len(texts)} texts "
              f"(qualifies: cosine >= {MIN_COSINE}, top-10 overlap >= {MIN_OVERLAP}):")
        print("| runtime | texts/s | vs torch | mean cosine | top-10 overlap | qualifies |")
        print("| --- | --- | --- | --- | --- | --- |")
        for r in compared:
            if "skipped" in r:
                print(f"| {r['runtime']} | skipped: {r['skipped']} | | | | |")
                continue
            print(f"| {r['runtime']} | {r['texts_per_s']:.1f} | {r['speedup']:.2f}x | {r['cosine']:.5f} | "
                  f"{r['overlap_at_10']:.4f} | {'yes' if r['qualifies'] else 'no'} |")
        best = max((r for r in compared if r.get("qualifies")), key=lambda r: r["texts_per_s"])
        print(f"fastest qualifying runtime on this CPU: {best['runtime']}")
    if inc is not None:
        print(f"encode_items on {inc['catalogue']} items, {inc['changed']} changed:")
        print(f"  full        : {inc['full_encoded']:6d} encoded in {inc['full_s']:7.2f} s")
        print(f"  incremental : {inc['incremental_encoded']:6d} encoded in {inc['incremental_s']:7.2f} s"
              f"   full / incremental = {inc['speedup']:.1f}x")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
