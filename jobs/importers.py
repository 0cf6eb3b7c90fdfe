"""Importers: public recommendation datasets -> the raw contract the clean stage reads.

    recjobs import movielens SRC --out DIR      ml-100k, ml-1m, ml-latest, ml-latest-small
    recjobs import amazon SRC --out DIR [--meta FILE]

Output: ``DIR/events/part-NNNNN.jsonl`` and ``DIR/items/part-NNNNN.jsonl`` (fields of
``schemas.tables.RAW_EVENTS`` / ``RAW_ITEMS``) and ``DIR/import.json``: counts, the date range,
and the settings to run the nightly on it (``--date``, ``clean.window_days``,
``clean.rating_min``/``rating_max``, ``input.*_path``). The files are streamed line by line, so
memory does not grow with the dataset; the per-item tag counts of ml-latest (bounded by items x
distinct tags) are the only thing kept.

Mapping: a rating becomes a ``rate`` event (a review with text becomes a ``review`` event with
``review_text`` and the rating); MovieLens genres become the item's category (the first genre)
and tags, Amazon categories its category (the last, most specific one of the path) and tags;
ml-latest tags become ``review`` events (the tag is the user's
text) and the item's most frequent tags join its tags. Bad lines are not dropped silently: they
are written as they are into the events file, where the clean stage quarantines them with a
reason (``malformed_record`` and so on), and counted in ``import.json``.
"""
from __future__ import annotations

import argparse
import ast
import csv
import datetime as dt
import gzip
import io
import json
import logging
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import IO, Iterable

from jobs.common.config import nightly_command, write_run_conf
from jobs.common.errors import InputError

log = logging.getLogger(__name__)

ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western"]
TOP_TAGS_PER_ITEM = 10
# What the imported sets record is consumption: a rated or reviewed item is never recommended again.
CONSUMED_TYPES = ["rate", "review"]
LINES_PER_PART = 1_000_000


def open_text(path: Path, encoding: str = "utf-8") -> IO[str]:
    """Open a text file, gzipped or not (by magic bytes), decoding with ``encoding``."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    raw = gzip.open(path, "rb") if gz else open(path, "rb")
    return io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")


class JsonlWriter:
    """Writes records to ``folder/part-NNNNN.jsonl``, a new part every LINES_PER_PART lines."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("part-*.jsonl"):
            old.unlink()
        self.count, self.part, self.fh = 0, 0, None

    def write(self, record: dict | str) -> None:
        if self.fh is None or self.count and self.count % LINES_PER_PART == 0:
            self._next()
        self.fh.write(record if isinstance(record, str) else json.dumps(record, ensure_ascii=False))
        self.fh.write("\n")
        self.count += 1

    def _next(self) -> None:
        if self.fh:
            self.fh.close()
        self.fh = open(self.folder / f"part-{self.part:05d}.jsonl", "w", encoding="utf-8")
        self.part += 1

    def close(self) -> None:
        if self.fh is None:
            self._next()   # an empty part, so the folder is a readable (empty) input
        self.fh.close()


class Stats:
    """Counts and the time range of what was imported."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.min_ts: int | None = None
        self.max_ts: int | None = None
        self.min_rating: float | None = None
        self.max_rating: float | None = None

    def event(self, kind: str, ts: int, rating: float | None) -> None:
        self.counts[kind] += 1
        self.min_ts = ts if self.min_ts is None else min(self.min_ts, ts)
        self.max_ts = ts if self.max_ts is None else max(self.max_ts, ts)
        if rating is not None:
            self.min_rating = rating if self.min_rating is None else min(self.min_rating, rating)
            self.max_rating = rating if self.max_rating is None else max(self.max_rating, rating)


def _rate(user: str, item: str, rating: float, ts: int, prefix: str = "r") -> dict:
    return {"event_id": f"{prefix}-{user}-{item}-{ts}", "user_id": user, "item_id": item, "event_type": "rate",
            "ts": str(ts), "rating": rating, "review_text": None}


def _item(item_id: str, title: str, category: str | None, tags: Iterable[str], description: str | None = None,
          brand: str | None = None, price: float | None = None) -> dict:
    tags = [t.replace("|", "/").strip() for t in tags if t and t.strip()]
    return {"item_id": item_id, "title": title, "category": category, "brand": brand, "price": price,
            "description": description, "tags": "|".join(dict.fromkeys(tags)), "updated_at": None}


def _bad(writer: JsonlWriter, stats: Stats, source: str, line: str) -> None:
    """Keep an unparseable line for the clean stage to quarantine (malformed_record)."""
    stats.counts[f"bad_lines_{source}"] += 1
    writer.write(line.rstrip("\r\n"))


# ------------------------------------------------------------------------------ MovieLens
def detect_movielens(src: Path) -> str:
    """Which MovieLens layout ``src`` holds: ml-100k, ml-1m or ml-latest."""
    if (src / "u.data").is_file():
        return "ml-100k"
    if (src / "ratings.dat").is_file():
        return "ml-1m"
    if (src / "ratings.csv").is_file():
        return "ml-latest"
    raise InputError(f"{src} holds no MovieLens ratings file (u.data, ratings.dat or ratings.csv); "
                     f"pass the folder of an unzipped ml-100k, ml-1m, ml-latest or ml-latest-small")


def _split_title_year(title: str) -> tuple[str, str | None]:
    m = re.match(r"^(.*?)\s*\((\d{4})\)\s*$", title)
    return (m.group(1), m.group(2)) if m else (title, None)


def _movie(item_id: str, title: str, genres: list[str], extra_tags: Iterable[str] = ()) -> dict:
    name, year = _split_title_year(title.strip())
    genres = [g for g in genres if g and g != "(no genres listed)"]
    desc = f"{'A ' + ', '.join(genres).lower() + ' film' if genres else 'A film'}" + (f" from {year}." if year else ".")
    return _item(item_id, title.strip() or name, genres[0] if genres else None, [*genres, *extra_tags], desc)


def import_movielens(src: Path, out: Path) -> dict:
    """Convert a MovieLens folder; returns the manifest written to ``out/import.json``."""
    kind = detect_movielens(src)
    events, items, stats = JsonlWriter(out / "events"), JsonlWriter(out / "items"), Stats()
    try:
        if kind == "ml-100k":
            _ml100k(src, events, items, stats)
        elif kind == "ml-1m":
            _ml1m(src, events, items, stats)
        else:
            _mllatest(src, events, items, stats)
    finally:
        events.close()
        items.close()
    return _manifest(out, f"movielens/{kind}", src, stats, events.count, items.count)


def _delimited_ratings(path: Path, sep: str, events: JsonlWriter, stats: Stats) -> None:
    """``user<sep>item<sep>rating<sep>timestamp`` lines (latin-1) to ``rate`` events."""
    with open_text(path, "latin-1") as fh:
        for line in fh:
            parts = line.rstrip("\r\n").split(sep)
            try:
                user, item, rating, ts = parts[0].strip(), parts[1].strip(), float(parts[2]), int(parts[3])
            except (IndexError, ValueError):
                _bad(events, stats, path.name, line)
                continue
            events.write(_rate(user, item, rating, ts))
            stats.event("rate", ts, rating)


def _ml100k(src: Path, events: JsonlWriter, items: JsonlWriter, stats: Stats) -> None:
    genres = ML100K_GENRES
    if (src / "u.genre").is_file():
        with open_text(src / "u.genre", "latin-1") as fh:
            pairs = [line.strip().split("|") for line in fh if line.strip()]
        genres = [name for name, _ in sorted(pairs, key=lambda p: int(p[1]))]
    _delimited_ratings(src / "u.data", "\t", events, stats)
    if (src / "u.item").is_file():
        with open_text(src / "u.item", "latin-1") as fh:
            for line in fh:
                parts = line.rstrip("\r\n").split("|")
                if len(parts) < 5 + len(genres):
                    _bad(items, stats, "u.item", line)
                    continue
                flags = parts[5:5 + len(genres)]
                items.write(_movie(parts[0], parts[1], [g for g, f in zip(genres, flags) if f.strip() == "1"]))


def _ml1m(src: Path, events: JsonlWriter, items: JsonlWriter, stats: Stats) -> None:
    _delimited_ratings(src / "ratings.dat", "::", events, stats)
    if (src / "movies.dat").is_file():
        with open_text(src / "movies.dat", "latin-1") as fh:
            for line in fh:
                parts = line.rstrip("\r\n").split("::")
                if len(parts) != 3:
                    _bad(items, stats, "movies.dat", line)
                    continue
                items.write(_movie(parts[0], parts[1], parts[2].split("|")))
    if (src / "users.dat").is_file():   # demographics: not part of the contract, counted only
        with open_text(src / "users.dat", "latin-1") as fh:
            stats.counts["users_listed"] = sum(1 for line in fh if line.strip())


def _mllatest(src: Path, events: JsonlWriter, items: JsonlWriter, stats: Stats) -> None:
    with open_text(src / "ratings.csv") as fh:
        for row in csv.DictReader(fh):
            try:
                user, item, rating, ts = row["userId"], row["movieId"], float(row["rating"]), int(row["timestamp"])
            except (KeyError, TypeError, ValueError):
                _bad(events, stats, "ratings.csv", json.dumps(row))
                continue
            events.write(_rate(user, item, rating, ts))
            stats.event("rate", ts, rating)
    item_tags: dict[str, Counter] = defaultdict(Counter)
    if (src / "tags.csv").is_file():
        with open_text(src / "tags.csv") as fh:
            for n, row in enumerate(csv.DictReader(fh)):
                try:
                    user, item, tag, ts = row["userId"], row["movieId"], (row["tag"] or "").strip(), int(row["timestamp"])
                except (KeyError, TypeError, ValueError, AttributeError):
                    _bad(events, stats, "tags.csv", json.dumps(row))
                    continue
                if not tag:
                    stats.counts["empty_tags_skipped"] += 1
                    continue
                events.write({"event_id": f"t-{user}-{item}-{ts}-{n}", "user_id": user, "item_id": item,
                              "event_type": "review", "ts": str(ts), "rating": None, "review_text": tag})
                stats.event("tag", ts, None)
                item_tags[item][tag.lower()] += 1
    if (src / "movies.csv").is_file():
        with open_text(src / "movies.csv") as fh:
            for row in csv.DictReader(fh):
                item = row.get("movieId")
                top = [t for t, _ in item_tags.get(item, Counter()).most_common(TOP_TAGS_PER_ITEM)]
                items.write(_movie(item or "", row.get("title") or "", (row.get("genres") or "").split("|"), top))


# --------------------------------------------------------------------------------- Amazon
def _loads(line: str) -> dict | None:
    """A metadata/review line: strict JSON, or the older Python-literal style (single quotes)."""
    try:
        value = json.loads(line)
    except ValueError:
        try:
            value = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    return value if isinstance(value, dict) else None


def _flatten_categories(meta: dict) -> list[str]:
    cats = meta.get("category") or meta.get("categories") or []
    if isinstance(cats, str):
        return [cats]
    flat: list[str] = []
    for c in cats:
        flat.extend(c if isinstance(c, list) else [c])
    return [str(c).strip() for c in flat if str(c).strip()]


def _price(value) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    m = re.search(r"\d+(?:[.,]\d+)?", str(value or "").replace(",", ""))
    return float(m.group(0)) if m else None


def import_amazon(src: Path, out: Path, meta: Path | None = None) -> dict:
    """Convert Amazon review lines (and optional metadata); returns the manifest."""
    if not src.is_file():
        raise InputError(f"{src} is not a file; pass the Amazon reviews file (JSON lines, optionally .gz)")
    if meta is not None and not meta.is_file():
        raise InputError(f"--meta {meta} is not a file; pass the metadata file (JSON lines, optionally .gz)")
    events, items, stats = JsonlWriter(out / "events"), JsonlWriter(out / "items"), Stats()
    seen_items: set[str] = set()
    try:
        with open_text(src) as fh:
            for line in fh:
                if not line.strip():
                    continue
                r = _loads(line)
                try:
                    user, asin, ts = str(r["reviewerID"]), str(r["asin"]), int(r["unixReviewTime"])
                    rating = float(r["overall"]) if r.get("overall") is not None else None
                except (KeyError, TypeError, ValueError):
                    _bad(events, stats, "reviews", line)
                    continue
                text = ". ".join(p.strip() for p in (r.get("summary") or "", r.get("reviewText") or "") if p.strip())
                kind = "review" if text else "rate"
                events.write({"event_id": f"a-{user}-{asin}-{ts}", "user_id": user, "item_id": asin,
                              "event_type": kind, "ts": str(ts), "rating": rating, "review_text": text or None})
                stats.event(kind, ts, rating)
                if meta is None:
                    seen_items.add(asin)
        if meta is not None:
            with open_text(meta) as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    m = _loads(line)
                    if m is None or not m.get("asin"):
                        _bad(items, stats, "meta", line)
                        continue
                    cats = _flatten_categories(m)
                    desc = m.get("description")
                    desc = " ".join(map(str, desc)) if isinstance(desc, list) else desc
                    items.write(_item(str(m["asin"]), str(m.get("title") or m["asin"]), cats[-1] if cats else None,
                                      cats, desc, m.get("brand"), _price(m.get("price"))))
        else:   # no metadata: the asin is the title, so that no review is lost as unknown_item
            for asin in sorted(seen_items):
                items.write(_item(asin, asin, None, []))
    finally:
        events.close()
        items.close()
    return _manifest(out, "amazon", src, stats, events.count, items.count)


# ------------------------------------------------------------------------------- manifest
def suggested_settings(out: Path, stats: Stats, consumed: list[str]) -> dict:
    """The settings a nightly on the imported folder needs (dotted keys): where the files and the
    lake are, a clean window and sequence, popularity and rule windows that cover the data's span,
    the rating bounds, ``consumed`` event types excluded from lists, and no bot rules (public
    research sets are people: rating hundreds of films in one sitting is how they were collected)."""
    day = lambda ts: dt.datetime.fromtimestamp(ts, dt.timezone.utc).date()  # noqa: E731
    settings: dict = {"input.format": "jsonl", "input.events_path": str((out / "events").resolve()),
                      "input.items_path": str((out / "items").resolve()), "lake.root": str((out / "lake").resolve()),
                      "dq.docs_dir": str((out / "reports" / "dq").resolve()), "report.dir": str((out / "reports").resolve()),
                      "rank.exclude_types": consumed, "clean.bot_event_types": [], "clean.bot_relative_factor": None}
    if stats.min_ts is not None:
        span = (day(stats.max_ts) - day(stats.min_ts)).days + 1
        settings.update({"clean.window_days": span, "sequences.lookback_days": max(365, span),
                         # the item neighbours (EASE) learn from the same history as the sequences
                         "neighbours.lookback_days": max(365, span),
                         "rank.popularity_lookback_days": span, "rules.lookback_days": span,
                         # decay over the data's own time scale (a quarter of its span), not a shop's week
                         "rank.popularity_half_life_days": float(max(7, span // 4))})
    if stats.min_rating is not None:
        settings["clean.rating_min"] = min(1.0, stats.min_rating)
        settings["clean.rating_max"] = max(5.0, stats.max_rating)
    return settings


def _manifest(out: Path, source: str, src: Path, stats: Stats, n_events: int, n_items: int) -> dict:
    day = lambda ts: dt.datetime.fromtimestamp(ts, dt.timezone.utc).date()  # noqa: E731
    first, last = (day(stats.min_ts), day(stats.max_ts)) if stats.min_ts is not None else (None, None)
    settings = suggested_settings(out, stats, CONSUMED_TYPES)
    conf = write_run_conf(out / "recjobs.yaml", settings,
                          f"recjobs settings for {source} imported from {src}; layered over conf/local.yaml by:")
    manifest = {"source": source, "from": str(src), "events_written": n_events, "items_written": n_items,
                "counts": dict(stats.counts), "first_date": first and first.isoformat(),
                "last_date": last and last.isoformat(), "run_date": last and last.isoformat(), "settings": settings,
                "conf": str(conf), "command": nightly_command(last.isoformat(), conf) if last else None}
    (out / "import.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``recjobs import`` arguments."""
    parser.add_argument("dataset", choices=("movielens", "amazon"))
    parser.add_argument("src", type=Path, help="MovieLens folder, or the Amazon reviews file")
    parser.add_argument("--out", type=Path, required=True, help="output folder (events/, items/, import.json)")
    parser.add_argument("--meta", type=Path, default=None, help="amazon: the metadata file (optional)")


def run_import(args: argparse.Namespace) -> dict:
    """Run the importer the arguments name."""
    if args.dataset == "movielens":
        if not args.src.is_dir():
            raise InputError(f"{args.src} is not a folder; pass the unzipped MovieLens folder")
        return import_movielens(args.src, args.out)
    return import_amazon(args.src, args.out, args.meta)


def suggested_command(manifest: dict) -> str:
    """The nightly command for the imported data (also ``import.json``'s ``command``)."""
    if not manifest["command"]:
        raise InputError(f"{manifest['from']}: no event could be imported, so there is no date to run the nightly for")
    return manifest["command"]
