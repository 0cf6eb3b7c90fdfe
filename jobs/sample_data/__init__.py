"""Seeded synthetic raw data in the shapes users bring, with planted structure and planted faults.

    recjobs sample-data --out DIR [--shape shop|ratings|reviews] --users N --items M --days D --seed S
                        [--format jsonl|csv|parquet]

Writes ``DIR/events/``, ``DIR/items/`` in the raw contract (schemas.tables.RAW_EVENTS / RAW_ITEMS)
and ``DIR/ground_truth.json``: what the shape planted (topics, preferences, series, pairs ...) and
every planted fault with its count and the ids involved. The same seed and arguments give
byte-identical files. The shapes (one module each):

- ``shop`` (``shop.py``): a web shop's sessions over days, a view -> click -> cart -> purchase
  funnel, returns to viewed items, co-purchases;
- ``ratings`` (``ratings.py``): a movie-rating site over months, bursts of ratings, no repeats,
  series watched in order;
- ``reviews`` (``reviews.py``): a 5-core review site over years, a rated review with text per
  event, rich item metadata, complements reviewed later.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from pathlib import Path

from jobs.common.config import nightly_command, write_run_conf
from jobs.sample_data.base import (EXPECTED_REASON, FAULT_KINDS_EVENTS, FAULT_KINDS_ITEMS, FaultRates, Generator,
                                   SampleSpec)
from jobs.sample_data.ratings import RatingsGenerator
from jobs.sample_data.reviews import ReviewsGenerator
from jobs.sample_data.shop import NEGATIVE_REVIEWS, POSITIVE_REVIEWS, TOPICS, ShopGenerator

log = logging.getLogger(__name__)

SHAPES: dict[str, type[Generator]] = {"shop": ShopGenerator, "ratings": RatingsGenerator, "reviews": ReviewsGenerator}
# Days of history when --days is not given: two weeks of a shop, seven months of ratings (like
# MovieLens-100k), three years of reviews.
DEFAULT_DAYS = {"shop": 14, "ratings": 210, "reviews": 1095}

__all__ = ["DEFAULT_DAYS", "EXPECTED_REASON", "FAULT_KINDS_EVENTS", "FAULT_KINDS_ITEMS", "FaultRates", "Generator",
           "NEGATIVE_REVIEWS", "POSITIVE_REVIEWS", "SHAPES", "SampleSpec", "TOPICS", "add_arguments", "generate",
           "generator", "main", "spec_from_args"]


def generator(spec: SampleSpec) -> Generator:
    """The shape's generator for ``spec`` (not built yet)."""
    if spec.shape not in SHAPES:
        raise ValueError(f"unknown sample shape {spec.shape!r}; shapes: {', '.join(SHAPES)}")
    return SHAPES[spec.shape](spec)


def generate(out: str | Path, spec: SampleSpec) -> dict:
    """Generate a sample into ``out`` and return its ground truth. Also writes ``out/recjobs.yaml``,
    the settings a nightly on it needs (``truth["conf"]``; ``truth["command"]`` runs it)."""
    out = Path(out)
    gen = generator(spec).build()
    truth = gen.write(out)
    settings = {"input.format": spec.fmt, "input.events_path": str((out / "events").resolve()),
                "input.items_path": str((out / "items").resolve()), "lake.root": str((out / "lake").resolve()),
                "dq.docs_dir": str((out / "reports" / "dq").resolve()), "report.dir": str((out / "reports").resolve()),
                "clean.window_days": spec.days, **gen.run_settings()}
    conf = write_run_conf(out / "recjobs.yaml", settings, f"recjobs settings for the {spec.shape} sample in {out}")
    # not in ground_truth.json, which stays the same bytes wherever it is written
    truth = {**truth, "run_settings": settings, "conf": str(conf),
             "command": nightly_command(spec.end_date.isoformat(), conf)}
    log.info("%s sample written to %s: %d raw events, %d raw items", spec.shape, out, truth["raw_event_rows"],
             truth["raw_item_rows"])
    return truth


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI arguments of ``recjobs sample-data``."""
    parser.add_argument("--out", required=True, help="folder to write events/, items/ and ground_truth.json to")
    parser.add_argument("--shape", choices=list(SHAPES), default="shop",
                        help="shop (sessions), ratings (a movie-rating site) or reviews (a 5-core review site)")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--days", type=int, default=None,
                        help="days of history (default: shop 14, ratings 210, reviews 1095)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--end-date", type=dt.date.fromisoformat, default=SampleSpec.end_date,
                        help="last day of the sample (YYYY-MM-DD)")
    parser.add_argument("--format", dest="fmt", choices=["jsonl", "csv", "parquet"], default="jsonl")
    parser.add_argument("--revisit-rate", type=float, default=SampleSpec.revisit_rate,
                        help="shop: share of item picks that go back to an engaged, unbought item (0 = none)")
    parser.add_argument("--no-faults", action="store_true", help="plant no faults")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND=RATE",
                        help="override one fault rate, e.g. --fault duplicate_event=0.05 (repeatable)")


def spec_from_args(args: argparse.Namespace) -> SampleSpec:
    """Build a :class:`SampleSpec` from parsed CLI arguments."""
    faults = FaultRates.none() if args.no_faults else FaultRates()
    for text in args.fault:
        faults.set(text)
    days = args.days if args.days is not None else DEFAULT_DAYS[args.shape]
    for name, value in (("users", args.users), ("items", args.items), ("days", days)):
        if value < 1:
            raise ValueError(f"--{name} must be at least 1")
    if not 0.0 <= args.revisit_rate < 1.0:
        raise ValueError(f"--revisit-rate must be in [0, 1), got {args.revisit_rate}")
    return SampleSpec(users=args.users, items=args.items, days=days, seed=args.seed, shape=args.shape,
                      end_date=args.end_date, fmt=args.fmt, revisit_rate=args.revisit_rate, faults=faults)


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.sample_data``: the same as ``recjobs sample-data``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    truth = generate(args.out, spec_from_args(args))
    print(json.dumps({"out": args.out, "events": truth["raw_event_rows"], "items": truth["raw_item_rows"]}))
    return 0
