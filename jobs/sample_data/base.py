"""What every sample shape shares: the spec, the planted faults, the writer of the raw files.

A shape (``shop``, ``ratings``, ``reviews``) is a :class:`Generator` subclass that makes the
catalogue and the behaviour (``make_items``, ``make_pools``, ``make_users``) and says what it
planted (``shape_truth``); the faults, bots and file formats are planted and written here, the same
for every shape.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

EMOJI = ["😀", "🔥", "👍", "🏃", "⛺", "🎧", "📚", "🌱", "💯"]

# New arrivals (Generator.plan_arrivals): the extra attention a release draws, and its half-life.
NOVELTY = 4.0
NOVELTY_HALF_LIFE_DAYS = 14.0

FAULT_KINDS_EVENTS = (
    "duplicate_event", "duplicate_no_event_id", "null_user_id", "blank_user_id", "null_item_id",
    "unknown_item", "unparseable_timestamp", "future_timestamp", "invalid_event_type",
    "malformed_json", "invalid_utf8", "emoji_text", "long_text",
)
FAULT_KINDS_ITEMS = ("negative_price", "missing_title", "malformed_json", "invalid_utf8", "emoji_text",
                     "long_text", "item_update")
# What the clean stage is expected to do with each planted fault.
EXPECTED_REASON = {
    "null_user_id": "missing_user_id", "blank_user_id": "missing_user_id", "null_item_id": "missing_item_id",
    "unknown_item": "unknown_item", "unparseable_timestamp": "unparseable_timestamp",
    "future_timestamp": "future_timestamp", "invalid_event_type": "invalid_event_type",
    "malformed_json": "malformed_record", "invalid_utf8": "invalid_utf8", "bot_user": "bot_user",
    "negative_price": "negative_price", "missing_title": "missing_title",
}


@dataclass
class FaultRates:
    """Per-kind rates of planted faults (fractions of normal events or items; bots are a count)."""

    duplicate_event: float = 0.02
    duplicate_no_event_id: float = 0.005
    null_user_id: float = 0.002
    blank_user_id: float = 0.002
    null_item_id: float = 0.002
    unknown_item: float = 0.003
    unparseable_timestamp: float = 0.003
    future_timestamp: float = 0.002
    invalid_event_type: float = 0.002
    malformed_json: float = 0.002
    invalid_utf8: float = 0.001
    emoji_text: float = 0.01
    long_text: float = 0.002
    missing_event_id: float = 0.05       # legitimate: events without an id (dedup falls back)
    bot_users: int = 2
    bot_events_per_hour: int = 400
    item_negative_price: float = 0.02
    item_missing_title: float = 0.01
    item_malformed_json: float = 0.01
    item_invalid_utf8: float = 0.005
    item_emoji_text: float = 0.02
    item_long_text: float = 0.01
    item_update: float = 0.05            # items with a second, newer version (MERGE latest wins)

    @classmethod
    def none(cls) -> "FaultRates":
        """No planted faults at all (clean data)."""
        return cls(**{k: 0 for k in asdict(cls())})

    def set(self, text: str) -> None:
        """Apply ``kind=rate`` (from ``--fault``)."""
        key, _, value = text.partition("=")
        if not hasattr(self, key):
            raise ValueError(f"unknown fault kind {key!r}; known: {', '.join(asdict(self))}")
        setattr(self, key, type(getattr(self, key))(value))


@dataclass
class SampleSpec:
    """Size and shape of a generated sample.

    ``shape``: ``shop`` (sessions, a funnel, returns to viewed items), ``ratings`` (a movie-rating
    site over months) or ``reviews`` (a 5-core review site over years). The shop knobs below
    (sessions, revisits, co-purchases) apply to the ``shop`` shape.
    """

    users: int = 500
    items: int = 300
    days: int = 14
    seed: int = 42
    shape: str = "shop"
    end_date: dt.date = dt.date(2026, 6, 30)
    fmt: str = "jsonl"
    sessions_per_user_day: float = 0.6
    # Zipf exponent of item popularity within a topic (0 = flat).
    popularity_skew: float = 0.5
    # Dirichlet concentration of users' topic preferences (smaller = more focused users).
    preference_alpha: float = 0.15
    co_purchase_pairs_per_topic: int = 3
    # Share of item picks that go back to an item the user engaged with but has not bought
    # (comparison shopping: re-viewing, back to the cart), the newest most likely.
    revisit_rate: float = 0.3
    # Half-life (days) of how likely an item is revisited, counted from its last engagement.
    revisit_half_life_days: float = 2.0
    faults: FaultRates = field(default_factory=FaultRates)


def attention(released: np.ndarray, ts: float) -> np.ndarray:
    """Per item at ``ts`` (``released``: :meth:`Generator.release_times`): 0 before its release,
    1 + NOVELTY * 2^(-days since release / NOVELTY_HALF_LIFE_DAYS) after it (a new release draws
    attention that fades), 1 for the items that were there from the start."""
    with np.errstate(invalid="ignore", over="ignore"):
        fresh = 1.0 + NOVELTY * np.exp2(-(ts - released) / 86400.0 / NOVELTY_HALF_LIFE_DAYS)
    return np.where(ts < released, 0.0, fresh)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _format_ts(rng: np.random.Generator, ts: float):
    """Write a timestamp the way real feeds do: mostly ISO-8601, some offsets and epochs."""
    kind = rng.random()
    if kind < 0.7:
        return _iso(ts)
    if kind < 0.8:
        local = dt.datetime.fromtimestamp(ts, dt.timezone(dt.timedelta(hours=2)))
        return local.isoformat(timespec="seconds")
    if kind < 0.9:
        return int(ts)                       # epoch seconds (a JSON number)
    return str(int(ts * 1000))               # epoch milliseconds (a string)


class Generator:
    """Builds the sample in memory; :meth:`write` puts it on disk."""

    def __init__(self, spec: SampleSpec) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        self.start = dt.datetime.combine(spec.end_date - dt.timedelta(days=spec.days - 1), dt.time(),
                                         tzinfo=dt.timezone.utc)
        self.items: list[dict] = []
        self.item_topic: dict[str, int] = {}
        self.item_quality: dict[str, float] = {}
        self.events: list[dict] = []
        self.truth: dict = {"faults": {"events": {}, "items": {}}, "fault_ids": {}}
        self.released: dict[str, float] = {}     # new arrivals: item -> release time (plan_arrivals)
        self._eid = 0

    def plan_arrivals(self, candidates: list[str], share: float, first: float = 0.3, last: float = 0.95) -> None:
        """Make ``share`` of ``candidates`` new arrivals: each is released at a time drawn uniformly
        between ``first`` and ``last`` of the span (nobody touches it before) and draws extra
        attention while new (:func:`attention`). Real catalogues grow while they are used: new
        films, new products; such items have little history when a user reaches them, which is
        where an item's text is most of what is known. A generator of its own draws them, so the
        catalogue stays what the shape's own draws make it."""
        rng = np.random.default_rng([self.spec.seed, 17])
        span = 86400.0 * self.spec.days
        n = int(round(share * len(candidates)))
        chosen = sorted(rng.choice(len(candidates), size=n, replace=False).tolist()) if n else []
        self.released = {candidates[j]: self.start.timestamp() + span * float(rng.uniform(first, last))
                         for j in chosen}

    def release_times(self, ids: list[str]) -> np.ndarray:
        """The release time of each of ``ids`` (-inf: there from the start), for :func:`attention`."""
        return np.array([self.released.get(iid, -np.inf) for iid in ids])

    def arrivals_truth(self) -> dict:
        """The planted arrivals for ``ground_truth.json``: item -> release time (ISO)."""
        return {"released": {iid: _iso(ts) for iid, ts in sorted(self.released.items())},
                "novelty": NOVELTY, "novelty_half_life_days": NOVELTY_HALF_LIFE_DAYS}

    def _event(self, user: str, item: str, etype: str, ts: float, **extra) -> dict:
        self._eid += 1
        ev = {"event_id": f"e{self._eid:08d}", "user_id": user, "item_id": item, "event_type": etype,
              "ts": float(int(ts)), "rating": None, "review_text": None}
        ev.update(extra)
        return ev

    def _pick(self, pool: list[int], rate: float, taken: set[int]) -> list[int]:
        n = int(round(rate * len(pool)))
        free = [i for i in pool if i not in taken]
        if n == 0 or not free:
            return []
        chosen = [free[int(j)] for j in self.rng.choice(len(free), size=min(n, len(free)), replace=False)]
        taken.update(chosen)
        return sorted(chosen)

    def plant_event_faults(self) -> None:
        rng, f, fmt = self.rng, self.spec.faults, self.spec.fmt
        normal = list(range(len(self.events)))
        taken: set[int] = set()
        counts, ids = self.truth["faults"]["events"], self.truth["fault_ids"]

        def note(kind: str, rows: list[int]) -> None:
            if rows:
                counts[kind] = counts.get(kind, 0) + len(rows)
                ids.setdefault(f"events.{kind}", []).extend(
                    str(self.events[r]["event_id"]) for r in rows)

        def mark(kind: str, rows: list[int]) -> None:
            for r in rows:
                self.events[r]["_fault"] = kind
            note(kind, rows)

        for kind, fn in (
            ("null_user_id", lambda e: e.update(user_id=None)),
            ("blank_user_id", lambda e: e.update(user_id="   ")),
            ("null_item_id", lambda e: e.update(item_id=None)),
            ("unknown_item", lambda e: e.update(item_id=f"zz{rng.integers(10**6):06d}")),
            ("unparseable_timestamp", lambda e: e.update(
                ts=["not-a-date", "2026-13-45T99:00:00", "yesterday", "31/02/2026 25:61"][rng.integers(4)])),
            ("future_timestamp", lambda e: e.update(
                ts=e["ts"] + 86400 * float(rng.integers(2, 3000)))),
            ("invalid_event_type", lambda e: e.update(event_type=["wishlist", "VIEWED", "", "share"][rng.integers(4)])),
        ):
            rows = self._pick(normal, getattr(f, kind), taken)
            for r in rows:
                fn(self.events[r])
            mark(kind, rows)
        line_faults = ("malformed_json", "invalid_utf8") if fmt in ("jsonl", "csv") else ()
        for kind in line_faults:
            mark(kind, self._pick(normal, getattr(f, kind), taken))
        # valid but awkward text: kept by the clean stage (long texts are cut and flagged)
        for kind in ("emoji_text", "long_text"):
            rows = self._pick(normal, getattr(f, kind), taken)
            for r in rows:
                ev = self.events[r]
                base = ev["review_text"] or "Quick note on this one"
                if kind == "emoji_text":
                    ev["review_text"] = f"{base} {EMOJI[rng.integers(len(EMOJI))]}{EMOJI[rng.integers(len(EMOJI))]}"
                else:
                    ev["review_text"] = (base + " ") * (1 + 6000 // (len(base) + 1))
            note(kind, rows)
        # events without an id are legitimate; dedup then keys on user/item/type/timestamp
        for r in self._pick(normal, f.missing_event_id, taken):
            self.events[r]["event_id"] = None
        for ev in self.events:
            if not isinstance(ev["ts"], str):
                ev["ts"] = _format_ts(rng, float(ev["ts"]))
        clean_rows = [i for i in normal if self.events[i].get("_fault") is None]
        with_id = [i for i in clean_rows if self.events[i]["event_id"] is not None]
        without_id = [i for i in clean_rows if self.events[i]["event_id"] is None]
        dup_rows = self._pick(with_id, f.duplicate_event, set())
        dup_rows_noid = self._pick(without_id, f.duplicate_no_event_id * len(normal) / max(len(without_id), 1), set())
        for kind, rows in (("duplicate_event", dup_rows), ("duplicate_no_event_id", dup_rows_noid)):
            counts[kind] = len(rows)
            self.events.extend(dict(self.events[r]) for r in rows)   # byte-identical copies
        # bots: hundreds of events an hour (what kind of event is the shape's own)
        bots = []
        for b in range(int(f.bot_users)):
            bot = f"bot{b:03d}"
            bots.append(bot)
            t0 = self.start.timestamp() + 86400 * int(rng.integers(self.spec.days)) + 3600
            n = int(f.bot_events_per_hour)
            for j in range(n):
                item = self.usable[int(rng.integers(len(self.usable)))]
                ev = self.bot_event(bot, item, t0 + j * 3600.0 / n)
                ev["ts"] = _iso(ev["ts"])
                ev["_fault"] = "bot_user"
                self.events.append(ev)
        if bots:
            counts["bot_user"] = int(f.bot_users) * int(f.bot_events_per_hour)
            ids["bot_users"] = bots
        order = rng.permutation(len(self.events))
        self.events = [self.events[i] for i in order]

    def plant_item_faults(self) -> None:
        rng, f, fmt = self.rng, self.spec.faults, self.spec.fmt
        counts, ids = self.truth["faults"]["items"], self.truth["fault_ids"]
        pool = list(range(len(self.items)))
        taken: set[int] = set()
        for kind, fn in (
            ("negative_price", lambda it: it.update(price=-abs(it["price"] or 0.0) - 1.0)),
            ("missing_title", lambda it: it.update(title=["", "   ", None][rng.integers(3)])),
        ):
            rows = self._pick(pool, getattr(f, f"item_{kind}"), taken)
            for r in rows:
                fn(self.items[r])
                self.items[r]["_fault"] = kind
            counts[kind] = len(rows)
            ids[f"items.{kind}"] = [self.items[r]["item_id"] for r in rows]
        for kind in (("malformed_json", "invalid_utf8") if fmt in ("jsonl", "csv") else ()):
            rows = self._pick(pool, getattr(f, f"item_{kind}"), taken)
            for r in rows:
                self.items[r]["_fault"] = kind
            counts[kind] = len(rows)
            ids[f"items.{kind}"] = [self.items[r]["item_id"] for r in rows]
        for kind in ("emoji_text", "long_text"):
            rows = self._pick(pool, getattr(f, f"item_{kind}"), taken)
            for r in rows:
                it = self.items[r]
                if kind == "emoji_text":
                    it["title"] = f"{it['title']} {EMOJI[rng.integers(len(EMOJI))]}"
                else:
                    it["description"] = (it["description"] + " ") * (1 + 8000 // len(it["description"]))
            counts[kind] = len(rows)
            ids[f"items.{kind}"] = [self.items[r]["item_id"] for r in rows]
        # a newer version of some items: the clean stage's MERGE must keep the newest
        rows = self._pick([i for i in pool if i not in taken], f.item_update, set())
        updates = []
        for r in rows:
            new = {k: v for k, v in self.items[r].items() if not k.startswith("_")}
            new["price"] = round(new["price"] * 0.8, 2) if new["price"] is not None else None
            new["title"] = new["title"] + " (2nd edition)"
            new["updated_at"] = _iso(self.start.timestamp())
            updates.append(new)
        counts["item_update"] = len(updates)
        ids["items.item_update"] = [u["item_id"] for u in updates]
        self.items.extend(updates)

    def bot_event(self, bot: str, item: str, ts: float) -> dict:
        """One event of a planted bot: a view (a shape may plant another kind of bot)."""
        return self._event(bot, item, "view", ts)

    def make_items(self) -> None:
        """Fill ``self.items`` (raw item records) and ``self.item_quality``."""
        raise NotImplementedError

    def make_pools(self) -> None:
        """Set ``self.usable``: the items behaviour may touch, none of them planted with a rejecting
        fault, so that every planted event fault maps to exactly one quarantine reason."""
        rejected = {it["item_id"] for it in self.items if it.get("_fault")}
        self.usable = sorted({it["item_id"] for it in self.items} - rejected)

    def make_users(self) -> None:
        """Fill ``self.events`` with the behaviour of ``spec.users`` users."""
        raise NotImplementedError

    def shape_truth(self) -> dict:
        """What the shape planted, for ``ground_truth.json``."""
        return {}

    def run_settings(self) -> dict:
        """What a nightly on this shape needs beyond the paths (dotted keys), as an importer of
        such data would set it: the shop keeps the defaults."""
        return {}

    def long_history_settings(self, consumed: list[str]) -> dict:
        """Settings of data that spans months or years and records consumption: windows over the
        whole span, ``consumed`` types excluded, no browsing-rate bot rule (nobody browses)."""
        days = self.spec.days
        return {"rank.exclude_types": consumed, "clean.bot_event_types": [],
                "sequences.lookback_days": max(365, days), "rank.popularity_lookback_days": days,
                "rank.popularity_half_life_days": float(max(7, days // 4)), "rules.lookback_days": days,
                "neighbours.lookback_days": max(365, days)}

    def build(self) -> "Generator":
        self.make_items()
        self.plant_item_faults()
        self.make_pools()
        self.make_users()
        self.plant_event_faults()
        self.truth.update({
            "shape": self.spec.shape,
            "seed": self.spec.seed,
            "format": self.spec.fmt,
            "start_date": self.start.date().isoformat(),
            "end_date": self.spec.end_date.isoformat(),
            "days": self.spec.days,
            **self.shape_truth(),
            "item_quality": self.item_quality,
            "expected_reason": EXPECTED_REASON,
            "raw_event_rows": len(self.events),
            "raw_item_rows": len(self.items),
        })
        return self

    def _line(self, rec: dict, fault: str | None, fields: list[str]) -> bytes:
        clean = {k: rec.get(k) for k in fields}
        if fault == "malformed_json":
            text = json.dumps(clean, ensure_ascii=False)
            return text[: max(10, len(text) // 2)].encode("utf-8")     # cut mid-record
        data = json.dumps(clean, ensure_ascii=False).encode("utf-8")
        if fault == "invalid_utf8":
            data = data.replace(b'"user_id": "', b'"user_id": "\xff\xfe', 1) if b'"user_id": "' in data \
                else data.replace(b'"title": "', b'"title": "\xc3\x28', 1)
        return data

    def write(self, out: Path) -> dict:
        from schemas.tables import RAW_EVENTS, RAW_ITEMS

        out.mkdir(parents=True, exist_ok=True)
        ev_fields = [f.name for f in RAW_EVENTS.fields]
        it_fields = [f.name for f in RAW_ITEMS.fields]
        for sub, rows, fields in (("events", self.events, ev_fields), ("items", self.items, it_fields)):
            folder = out / sub
            folder.mkdir(exist_ok=True)
            for old in folder.iterdir():
                old.unlink()
            if self.spec.fmt == "jsonl":
                payload = b"\n".join(self._line(r, r.get("_fault"), fields) for r in rows) + b"\n"
                (folder / "part-00000.jsonl").write_bytes(payload)
            elif self.spec.fmt == "csv":
                (folder / "part-00000.csv").write_bytes(self._csv(rows, fields))
            elif self.spec.fmt == "parquet":
                self._parquet(rows, fields, folder / "part-00000.parquet", sub)
            else:
                raise ValueError(f"unknown format {self.spec.fmt!r}; use jsonl, csv or parquet")
        (out / "ground_truth.json").write_text(json.dumps(self.truth, indent=1, sort_keys=True), encoding="utf-8")
        return self.truth

    def _csv(self, rows: list[dict], fields: list[str]) -> bytes:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(fields)
        lines = [buf.getvalue().encode()]
        for r in rows:
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            vals = ["" if r.get(k) is None else r.get(k) for k in fields]
            if r.get("_fault") == "malformed_json":
                vals[fields.index("rating" if "rating" in fields else "price")] = "not-a-number"
            writer.writerow(vals)
            line = buf.getvalue().encode("utf-8")
            if r.get("_fault") == "invalid_utf8":
                line = line.replace(b",", b",\xff\xfe", 1)
            lines.append(line)
        return b"".join(lines)

    def _parquet(self, rows: list[dict], fields: list[str], path: Path, sub: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        numeric = {"rating", "price"}
        cols = {k: pa.array([r.get(k) if k in numeric or r.get(k) is None else str(r.get(k)) for r in rows],
                            type=pa.float64() if k in numeric else pa.string()) for k in fields}
        pq.write_table(pa.table(cols), path)


