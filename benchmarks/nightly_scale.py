"""The whole nightly's cost as the data grows: seconds per stage at three sizes, and a near-empty night.

    .venv/bin/python benchmarks/nightly_scale.py --out DIR [--users 150 600 2400] [--items 300] [--keep]
                                                 [--shape shop] [--empty-users 20] [--conf F ...] [--set key=value ...]
                                                 [--profile]

For each size it generates a sample of the shape (``--users`` users, ``--items`` items, the
shape's default days), runs the nightly on a fresh lake with ``conf/local.yaml`` and the
shape's suggested settings (what ``recjobs demo`` runs, less ``conf/demo.yaml``: Spark compiles
its queries, as on real data), and reads every stage's seconds and
rows in and out from the ``runs`` table. The *near-empty night* is the same nightly on a sample
of ``--empty-users`` users (20) with the same catalogue and thresholds low enough
(``rank.min_labels``, ``seqrec.min_users``) that every stage still does all of its steps (a
hold-out to learn the blend from, a sequence model, an evaluation) on next to no data: its
seconds are the stage's fixed part.

Every night runs in a process of its own (a fresh JVM and Python workers, as each scheduled
``spark-submit`` gets), so no night inherits another's caches or warm-up.

It prints one table (seconds per stage at each size, the growth ratio between consecutive
sizes, the near-empty night's seconds), the evaluation's cost next to the rest of the nightly, a fit of
``seconds = fixed + per_event * events`` per stage and, from those per-event costs, a
projection of a 1M-user, 100k-item night on a 16-core and a 64-core cluster (its assumptions
are printed with it). It writes ``scale.json`` and ``scale.png`` (seconds per stage against
events, log-log) into ``--out``.

With ``--profile`` each night also samples its driver's stack (``benchmarks/profiler.py``) and
writes ``profile.txt``: seconds per stage, and within each stage the project lines and calls
(a Spark action, a Delta commit, a GX checkpoint) the driver waited on. On the near-empty night
that is where the fixed part goes.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# stages whose work grows with the catalogue, not with the events (the benchmark keeps the
# catalogue fixed, so their growth is measured on items by no size here)
ITEM_STAGES = ("encode_items",)
# the near-empty night's thresholds, so that it learns a blend and trains a sequence model on 20 users
NEAR_EMPTY = ("rank.min_labels=3", "seqrec.min_users=3")
GROWTH_LIMIT = 4.4           # the bound for 1x -> 4x events on a stage of at least 10 s
MIN_SECONDS = 10.0


def night(spark, out: Path, shape: str, users: int, items: int, seed: int, confs: list[str], sets: list[str]) -> dict:
    """One nightly on a fresh sample and lake."""
    from pyspark.sql import functions as F

    from conf import CONF_DIR
    from jobs.common import delta_io
    from jobs.common.config import load_config
    from jobs.nightly import run_nightly
    from jobs.sample_data import DEFAULT_DAYS, SampleSpec, generate

    spec = SampleSpec(shape=shape, users=users, items=items, days=DEFAULT_DAYS[shape], seed=seed)
    sample = out / "sample"
    truth = generate(sample, spec)
    ds = spec.end_date
    overrides = [f"lake.root={out / 'lake'}", f"dq.docs_dir={out / 'reports' / 'dq'}",
                 f"report.dir={out / 'reports'}"]
    cfg = load_config([CONF_DIR / "local.yaml", truth["conf"], *confs], [*overrides, *sets])
    t0 = time.monotonic()
    result = run_nightly(spark, cfg, ds, force=True, echo=lambda *a, **k: None)
    seconds = time.monotonic() - t0
    if result["exit_code"]:
        raise SystemExit(f"{shape} with {users} users: the nightly failed: {result['error']}")
    runs = (delta_io.read_table(spark, cfg, "runs").where(F.col("run_id") == result["plan"].run_id)
            .select("stage", "duration_s", "rows_in", "rows_out").collect())      # a row a stage
    stages = {r["stage"]: {"seconds": round(r["duration_s"], 2), "rows_in": r["rows_in"], "rows_out": r["rows_out"]}
              for r in runs}
    return {"users": users, "items": items, "ds": ds.isoformat(), "seconds": round(seconds, 1),
            "events": truth["raw_event_rows"], "stages": stages}


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares ``y = a + b x``; (a, b)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - b * mx, b


def project(stage_order: list[str], sizes: list[dict], empty: dict | None, target_users: int, target_items: int,
            cores: int, measured_cores: int) -> tuple[dict, list[str]]:
    """Seconds per stage of a ``target_users`` x ``target_items`` night on ``cores`` cores."""
    events_per_user = sum(s["events"] for s in sizes) / sum(s["users"] for s in sizes)
    target_events = events_per_user * target_users
    out = {}
    for stage in stage_order:
        xs = [s["items"] if stage in ITEM_STAGES else s["events"] for s in sizes]
        ys = [s["stages"].get(stage, {}).get("seconds", 0.0) for s in sizes]
        fixed, per_row = fit_line(xs, ys)
        fixed = empty["stages"].get(stage, {}).get("seconds", max(fixed, 0.0)) if empty else max(fixed, 0.0)
        rows = target_items if stage in ITEM_STAGES else target_events
        out[stage] = fixed + max(per_row, 0.0) * rows * measured_cores / cores
    assumptions = [
        f"events grow with users at the samples' {events_per_user:.0f} events per user "
        f"({target_events:,.0f} events for {target_users:,} users)",
        "each stage costs its near-empty night's seconds (fixed) plus its fitted seconds per event (per item for "
        f"{', '.join(ITEM_STAGES)}) times the rows",
        f"the per-row part divides by the core count ({measured_cores} measured here); the fixed part does not",
        "the language model runs on CPUs (a GPU divides encode_items and encode_users further)",
        "not covered: shuffles that spill, skewed users, EASE (capped by eval.ease_max_items) and "
        "co-occurrence grow faster than linearly in the catalogue; treat the figure as a lower bound",
    ]
    return out, assumptions


def plot(path: Path, stage_order: list[str], sizes: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    xs = [s["events"] for s in sizes]
    colours = plt.get_cmap("tab20").colors
    for i, stage in enumerate(stage_order):
        ys = [max(s["stages"].get(stage, {}).get("seconds", 0.0), 0.05) for s in sizes]
        ax.plot(xs, ys, marker="os^D"[i % 4], linestyle=("-", "--")[i % 2], color=colours[i % len(colours)],
                label=stage)
    ax.plot(xs, [sum(s["stages"][k]["seconds"] for k in s["stages"]) for s in sizes], marker="s", color="black",
            linewidth=2.5, label="whole night")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("raw events")
    ax.set_ylabel("seconds")
    ax.set_title("recjobs nightly: seconds per stage against events (2 cores)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(stage_order: list[str], sizes: list[dict], empty: dict | None) -> list[str]:
    lines = []
    head = ["stage"] + ([f"near-empty ({empty['users']} users) s"] if empty else [])
    head += [f"{s['users']} users ({s['events']:,} ev) s" for s in sizes]
    head += [f"growth {a['users']} -> {b['users']} users (x{b['events'] / a['events']:.1f} events)"
             for a, b in zip(sizes, sizes[1:])]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + " --- |" * len(head))
    for stage in stage_order + ["(whole night)"]:
        def sec(run, st=stage):
            if st == "(whole night)":
                return sum(v["seconds"] for v in run["stages"].values())
            return run["stages"].get(st, {}).get("seconds", 0.0)

        row = [stage] + ([f"{sec(empty):.1f}"] if empty else [])
        row += [f"{sec(s):.1f}" for s in sizes]
        for i in range(len(sizes) - 1):
            a, b = sec(sizes[i]), sec(sizes[i + 1])
            flag = " (over 4.4x)" if a >= MIN_SECONDS and b / a > GROWTH_LIMIT else ""
            row.append(f"{b / a:.2f}x{flag}" if a else "-")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("rows in -> out per stage:")
    for stage in stage_order:
        cells = [f"{s['stages'].get(stage, {}).get('rows_in')} -> {s['stages'].get(stage, {}).get('rows_out')}"
                 for s in sizes]
        lines.append(f"  {stage:16s} " + " | ".join(cells))
    lines.append("")
    for s in sizes:
        ev = s["stages"].get("evaluate", {}).get("seconds", 0.0)
        rest = sum(v["seconds"] for k, v in s["stages"].items() if k != "evaluate")
        lines.append(f"{s['users']} users: evaluate {ev:.1f} s, the rest of the nightly {rest:.1f} s "
                     f"(ratio {ev / rest:.2f})" if rest else "")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="working folder (samples, lakes, scale.json, scale.png)")
    parser.add_argument("--shape", default="shop")
    parser.add_argument("--users", type=int, nargs="+", default=[150, 600, 2400])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--empty-users", type=int, default=20, help="users of the near-empty night (0: none)")
    parser.add_argument("--conf", action="append", default=[], help="more configuration files")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="configuration overrides")
    parser.add_argument("--keep", action="store_true",
                        help="keep --out and reuse the figures of every size already measured there (night.json)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the driver's stack through each night (benchmarks/profiler.py): where its "
                             "seconds go, by stage and project line, in profile.txt and profile.json of the night")
    parser.add_argument("--one", metavar="DIR", help=argparse.SUPPRESS)     # the child: one night into DIR
    args = parser.parse_args(argv)

    from jobs.stages import STAGES

    if args.one:
        return one_night(args)
    out = Path(args.out)
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    sizes, empty = [], None
    if args.empty_users:
        print(f"near-empty nightly with {args.empty_users} users ...", flush=True)
        # thresholds low enough that every step still runs (a blend is learned, a model trained)
        empty = child(out / f"u{args.empty_users}", args, args.empty_users, [*NEAR_EMPTY, *args.set])
        print(f"  {empty['events']:,} raw events, {empty['seconds']} s", flush=True)
    failed = []
    for users in args.users:
        print(f"nightly with {users} users ...", flush=True)
        try:
            sizes.append(child(out / f"u{users}", args, users, args.set))
        except SystemExit as exc:          # the sizes done so far are still reported
            print(f"  {exc}", flush=True)
            failed.append(users)
            break
        print(f"  {sizes[-1]['events']:,} raw events, {sizes[-1]['seconds']} s", flush=True)
    stage_order = [s for s in STAGES if any(s in r["stages"] for r in sizes)]
    lines = report(stage_order, sizes, empty)
    print()
    print("\n".join(lines))
    projections = {}
    if len(sizes) >= 2:
        for cores in (16, 64):
            proj, assumptions = project(stage_order, sizes, empty, 1_000_000, 100_000, cores, 2)
            projections[cores] = proj
        print("\nprojection of a 1,000,000-user, 100,000-item night (seconds per stage):")
        print("| stage | 16 cores | 64 cores |\n| --- | --- | --- |")
        for stage in stage_order:
            print(f"| {stage} | {projections[16][stage]:,.0f} | {projections[64][stage]:,.0f} |")
        print(f"| (whole night) | {sum(projections[16].values()):,.0f} | {sum(projections[64].values()):,.0f} |")
        print("assumptions:")
        for a in assumptions:
            print(f"  - {a}")
        plot(out / "scale.png", stage_order, sizes)
        print(f"plot: {out / 'scale.png'}")
    (out / "scale.json").write_text(json.dumps({"sizes": sizes, "near_empty": empty, "projection": projections,
                                                "failed": failed},
                                               indent=1))
    print(f"figures: {out / 'scale.json'}")
    if failed:
        print(f"the night with {failed[0]} users failed; the sizes after it were not run")
        return 1
    return 0


def child(folder: Path, args, users: int, sets: list[str]) -> dict:
    """One night in a process of its own (a fresh JVM, as a scheduled spark-submit gets); with
    ``--keep``, the figures of a night already measured in ``folder``."""
    done_before = folder / "night.json"
    if args.keep and done_before.exists():
        print(f"  (measured before: {done_before})", flush=True)
        return json.loads(done_before.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(folder), "--out", str(folder),
           "--shape", args.shape, "--users", str(users), "--items", str(args.items), "--seed", str(args.seed)]
    for conf in args.conf:
        cmd += ["--conf", conf]
    for value in sets:
        cmd += ["--set", value]
    if args.profile:
        cmd.append("--profile")
    done = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1])
    if done.returncode:
        raise SystemExit(f"the night with {users} users failed (exit {done.returncode})")
    return json.loads((folder / "night.json").read_text())


def one_night(args) -> int:
    from conf import CONF_DIR
    from jobs.common.config import load_config
    from jobs.common.session import get_spark

    folder = Path(args.one)
    # the session gets the same overrides as the night (``--set spark.conf.spark.driver.memory=8g``)
    spark = get_spark(load_config([CONF_DIR / "local.yaml", *args.conf], args.set), app_name="recjobs-nightly-scale")
    from benchmarks.profiler import Sampler

    sampler = Sampler() if args.profile else None
    with sampler or contextlib.nullcontext():
        result = night(spark, folder, args.shape, args.users[0], args.items, args.seed, args.conf, args.set)
    if sampler is not None:
        (folder / "profile.json").write_text(json.dumps(sampler.to_json(), indent=1))
        (folder / "profile.txt").write_text("\n".join(sampler.report(top=12)) + "\n")
        print(f"  driver profile: {folder / 'profile.txt'}", flush=True)
    (folder / "night.json").write_text(json.dumps(result))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
