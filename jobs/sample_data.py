"""Seeded synthetic raw data with planted structure and planted faults.

    recjobs sample-data --out DIR --users N --items M --days D --seed S [--format jsonl|csv|parquet]

Writes ``DIR/events/``, ``DIR/items/`` in the raw contract (schemas.tables.RAW_EVENTS / RAW_ITEMS)
and ``DIR/ground_truth.json``: the planted topics, item topics, user preferences (and their drift),
co-purchase pairs, and every planted fault with its count and the ids involved. The same seed and
arguments give byte-identical files.

Planted structure: items come from latent topics (title, category, brand, price, description,
tags); users prefer a few topics and drift towards another over the days; some item picks go back
to items the user engaged with but did not buy, recent ones most; sessions follow a funnel
view -> click -> cart -> purchase; ratings follow item quality and review wording follows
the rating; some item pairs are bought together.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TOPICS: list[dict] = [
    {"name": "running", "categories": ["Running Shoes", "Running Apparel"], "brands": ["Stride", "Pacer"],
     "nouns": ["running shoes", "trail sneakers", "jogging shorts", "marathon socks", "running jacket"],
     "adjectives": ["lightweight", "cushioned", "breathable", "fast"],
     "words": ["running", "trail", "jogging", "marathon", "sneakers", "stride", "cushioning", "runners", "pace", "sprint"],
     "price": 80.0},
    {"name": "kitchen", "categories": ["Cookware", "Cutlery"], "brands": ["Forge", "Hearth"],
     "nouns": ["chef knife", "nonstick skillet", "cutting board", "stock pot", "kitchen knife"],
     "adjectives": ["stainless", "forged", "nonstick", "sharp"],
     "words": ["kitchen", "cooking", "chef", "knife", "skillet", "stainless", "recipes", "cookware", "blade", "simmer"],
     "price": 45.0},
    {"name": "camping", "categories": ["Camping Gear", "Hiking"], "brands": ["Summit", "Basecamp"],
     "nouns": ["dome tent", "sleeping bag", "camp lantern", "hiking backpack", "camp stove"],
     "adjectives": ["waterproof", "ultralight", "rugged", "compact"],
     "words": ["camping", "tent", "outdoor", "hiking", "campfire", "wilderness", "backpacking", "lantern", "trailhead", "shelter"],
     "price": 120.0},
    {"name": "audio", "categories": ["Headphones", "Speakers"], "brands": ["Sonic", "Volt"],
     "nouns": ["wireless headphones", "bluetooth speaker", "earbuds", "soundbar", "studio monitor"],
     "adjectives": ["wireless", "noise cancelling", "portable", "hifi"],
     "words": ["audio", "bass", "bluetooth", "wireless", "sound", "speaker", "headphones", "battery", "music", "stereo"],
     "price": 150.0},
    {"name": "books", "categories": ["Fiction", "Mystery"], "brands": ["Penrose", "Quill"],
     "nouns": ["mystery novel", "thriller paperback", "fantasy saga", "detective story", "short stories"],
     "adjectives": ["bestselling", "gripping", "illustrated", "classic"],
     "words": ["novel", "chapters", "author", "mystery", "detective", "paperback", "fiction", "plot", "reader", "thriller"],
     "price": 15.0},
    {"name": "garden", "categories": ["Garden Tools", "Plants"], "brands": ["Verdant", "Greenleaf"],
     "nouns": ["pruning shears", "garden hose", "planter box", "seed kit", "compost bin"],
     "adjectives": ["durable", "organic", "ergonomic", "weatherproof"],
     "words": ["garden", "plants", "soil", "pruning", "seeds", "compost", "flowers", "watering", "blooms", "gardening"],
     "price": 30.0},
]
GENERIC_WORDS = ["quality", "design", "everyday", "value", "perfect", "gift", "new", "popular"]

POSITIVE_REVIEWS = [
    "Absolutely love this {noun}! Excellent quality, works great and I would highly recommend it.",
    "Fantastic {noun}, exceeded my expectations. Great value and wonderful design.",
    "Best {noun} I have owned. Superb, reliable and a joy to use.",
]
NEUTRAL_REVIEWS = [
    "The {noun} is okay. It does the job, nothing more.",
    "Average {noun}; some parts fine, others so-so.",
]
NEGATIVE_REVIEWS = [
    "Terrible {noun}. It broke after a week, very disappointed, would not buy again.",
    "Awful quality, the {noun} is cheap and useless. Waste of money, returned it.",
    "Horrible {noun}, worst purchase ever. Poorly made and frustrating.",
]
EMOJI = ["😀", "🔥", "👍", "🏃", "⛺", "🎧", "📚", "🌱", "💯"]

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
    """Size and shape of a generated sample."""

    users: int = 500
    items: int = 300
    days: int = 14
    seed: int = 42
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
        self._eid = 0

    # ---- catalogue -------------------------------------------------------------------------
    def make_items(self) -> None:
        rng, spec = self.rng, self.spec
        for i in range(spec.items):
            t = i % len(TOPICS)  # balanced topics, interleaved ids
            topic = TOPICS[t]
            noun = topic["nouns"][rng.integers(len(topic["nouns"]))]
            adj = topic["adjectives"][rng.integers(len(topic["adjectives"]))]
            brand = topic["brands"][rng.integers(len(topic["brands"]))]
            words = list(rng.choice(topic["words"], size=7, replace=False))
            words += list(rng.choice(GENERIC_WORDS, size=2, replace=False))
            rng.shuffle(words)
            item_id = f"i{i:05d}"
            self.items.append({
                "item_id": item_id,
                "title": f"{brand} {adj} {noun}",
                "category": topic["categories"][rng.integers(2)],
                "brand": brand,
                "price": round(float(topic["price"] * rng.lognormal(0, 0.35)), 2),
                "description": f"A {adj} {noun} for {' '.join(words)}.",
                "tags": "|".join(rng.choice(topic["words"], size=3, replace=False)),
                "updated_at": _iso(self.start.timestamp() - 86400 * 30),
            })
            self.item_topic[item_id] = t
            # most items are good; some are bad (and get bad reviews)
            self.item_quality[item_id] = float(rng.choice([4.5, 4.0, 3.0, 1.5], p=[0.4, 0.3, 0.15, 0.15]))

    def make_pools(self) -> None:
        """Popularity per topic and co-purchase pairs, over the items a user can meet.

        Items planted with a rejecting fault (negative price, no title, unreadable line) never
        get behaviour, so every planted event fault maps to exactly one quarantine reason.
        """
        rng, spec = self.rng, self.spec
        rejected = {it["item_id"] for it in self.items if it.get("_fault")}
        by_topic = [[iid for iid, topic in self.item_topic.items() if topic == t and iid not in rejected]
                    for t in range(len(TOPICS))]
        self.by_topic = by_topic
        self.usable = [iid for ids in by_topic for iid in ids]
        # popularity within a topic: Zipf-like weights
        self.pop = []
        for ids in by_topic:
            w = 1.0 / np.arange(1, len(ids) + 1) ** spec.popularity_skew
            self.pop.append(w / w.sum())
        self.pairs: dict[str, str] = {}
        for ids in by_topic:
            # pairs among the topic's most popular items (ids are in popularity order), as in
            # real catalogues where bought-together items are mostly bestsellers
            head = min(len(ids), 2 * spec.co_purchase_pairs_per_topic)
            chosen = rng.choice(head, size=head // 2 * 2, replace=False)
            for a, b in zip(chosen[0::2], chosen[1::2]):
                self.pairs[ids[a]] = ids[b]

    # ---- behaviour -------------------------------------------------------------------------
    def _event(self, user: str, item: str, etype: str, ts: float, **extra) -> dict:
        self._eid += 1
        ev = {"event_id": f"e{self._eid:08d}", "user_id": user, "item_id": item, "event_type": etype,
              "ts": float(int(ts)), "rating": None, "review_text": None}
        ev.update(extra)
        return ev

    def _review(self, item: str, rating: float) -> str:
        noun = self.items[int(item[1:])]["title"].split(" ", 2)[-1]
        pool = POSITIVE_REVIEWS if rating >= 4 else NEGATIVE_REVIEWS if rating <= 2 else NEUTRAL_REVIEWS
        return pool[self.rng.integers(len(pool))].format(noun=noun)

    def make_users(self) -> None:
        rng, spec = self.rng, self.spec
        k = len(TOPICS)
        users = {}
        for u in range(spec.users):
            user_id = f"u{u:05d}"
            start = rng.dirichlet(np.full(k, spec.preference_alpha))
            drift_to = int(rng.integers(k))
            end = 0.5 * start + 0.5 * np.eye(k)[drift_to]
            activity = float(rng.gamma(2.0, spec.sessions_per_user_day / 2.0))
            users[user_id] = {"start_pref": start.round(4).tolist(), "end_pref": end.round(4).tolist(),
                              "drift_to": TOPICS[drift_to]["name"], "activity": round(activity, 4)}
            self._user_events(user_id, start, end, activity)
        self.truth["users"] = users
        # a session late on the last day can run past its midnight: those events would be
        # "future" to a run of the end date, which only the planted future_timestamp faults may be
        horizon = self.start.timestamp() + 86400 * spec.days
        self.events = [ev for ev in self.events if ev["ts"] < horizon]

    def _user_events(self, user: str, start: np.ndarray, end: np.ndarray, activity: float) -> None:
        rng, spec = self.rng, self.spec
        open_items: dict[str, float] = {}      # engaged, not bought -> last engagement ts
        for d in range(spec.days):
            frac = d / max(spec.days - 1, 1)
            pref = (1 - frac) * start + frac * end
            day0 = self.start.timestamp() + 86400 * d
            for _ in range(rng.poisson(activity)):
                ts = day0 + rng.uniform(0, 86400 - 3600)
                t = int(rng.choice(len(TOPICS), p=pref / pref.sum()))
                for _ in range(1 + rng.poisson(2)):
                    if open_items and spec.revisit_rate > 0 and rng.random() < spec.revisit_rate:
                        item = self._revisit(open_items, ts)
                    else:
                        ids = self.by_topic[t]
                        item = ids[int(rng.choice(len(ids), p=self.pop[t]))]
                    first = len(self.events)
                    ts = self._funnel(user, item, ts)
                    for ev in self.events[first:]:
                        if ev["event_type"] == "purchase":
                            open_items.pop(ev["item_id"], None)
                        elif ev["event_type"] == "view":
                            open_items[ev["item_id"]] = ev["ts"]
                    ts += rng.exponential(90)

    def _revisit(self, open_items: dict[str, float], ts: float) -> str:
        """One of the user's engaged, unbought items, P ~ 2^(-days since last engagement / half-life)."""
        ids = list(open_items)
        age = (ts - np.array([open_items[i] for i in ids])) / 86400.0
        w = np.power(2.0, -age / self.spec.revisit_half_life_days)
        return ids[int(self.rng.choice(len(ids), p=w / w.sum()))]

    def _funnel(self, user: str, item: str, ts: float) -> float:
        rng = self.rng
        self.events.append(self._event(user, item, "view", ts))
        if rng.random() < 0.5:
            ts += rng.exponential(30) + 1
            self.events.append(self._event(user, item, "click", ts))
            if rng.random() < 0.35:
                ts += rng.exponential(60) + 1
                self.events.append(self._event(user, item, "cart", ts))
                if rng.random() < 0.6:
                    ts += rng.exponential(60) + 1
                    self.events.append(self._event(user, item, "purchase", ts))
                    partner = self.pairs.get(item)
                    if partner and rng.random() < 0.8:
                        for etype in ("view", "cart", "purchase"):
                            ts += rng.exponential(20) + 1
                            self.events.append(self._event(user, partner, etype, ts))
                    if rng.random() < 0.35:
                        rating = float(np.clip(round(self.item_quality[item] + rng.normal(0, 0.6)), 1, 5))
                        text = self._review(item, rating) if rng.random() < 0.7 else None
                        ts += rng.exponential(3600) + 60
                        self.events.append(self._event(user, item, "rate", ts, rating=rating, review_text=text))
        return ts

    # ---- faults ----------------------------------------------------------------------------
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
        # bots: hundreds of views an hour
        bots = []
        for b in range(int(f.bot_users)):
            bot = f"bot{b:03d}"
            bots.append(bot)
            t0 = self.start.timestamp() + 86400 * int(rng.integers(self.spec.days)) + 3600
            n = int(f.bot_events_per_hour)
            for j in range(n):
                item = self.usable[int(rng.integers(len(self.usable)))]
                ev = self._event(bot, item, "view", t0 + j * 3600.0 / n)
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
            ("negative_price", lambda it: it.update(price=-abs(it["price"]) - 1.0)),
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
            new["price"] = round(new["price"] * 0.8, 2)
            new["title"] = new["title"] + " (2nd edition)"
            new["updated_at"] = _iso(self.start.timestamp())
            updates.append(new)
        counts["item_update"] = len(updates)
        ids["items.item_update"] = [u["item_id"] for u in updates]
        self.items.extend(updates)

    # ---- output ----------------------------------------------------------------------------
    def build(self) -> "Generator":
        self.make_items()
        self.plant_item_faults()
        self.make_pools()
        self.make_users()
        self.plant_event_faults()
        self.truth.update({
            "seed": self.spec.seed,
            "format": self.spec.fmt,
            "start_date": self.start.date().isoformat(),
            "end_date": self.spec.end_date.isoformat(),
            "days": self.spec.days,
            "topics": [{"name": t["name"], "words": t["words"]} for t in TOPICS],
            "item_topics": {k: TOPICS[v]["name"] for k, v in self.item_topic.items()},
            # P(item | its topic) of the behaviour model: with users[u]["end_pref"] and "revisit"
            # it gives the best ranking any recommender could learn (an upper bound for evaluations)
            "item_topic_share": {iid: round(float(p), 6) for ids, pops in zip(self.by_topic, self.pop)
                                 for iid, p in zip(ids, pops)},
            # share of item picks that revisit an engaged, unbought item, P ~ 2^(-age / half-life)
            "revisit": {"rate": self.spec.revisit_rate, "half_life_days": self.spec.revisit_half_life_days},
            "item_quality": self.item_quality,
            "co_purchase_pairs": sorted([a, b] for a, b in self.pairs.items()),
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


def generate(out: str | Path, spec: SampleSpec) -> dict:
    """Generate a sample into ``out`` and return its ground truth."""
    gen = Generator(spec).build()
    truth = gen.write(Path(out))
    log.info("sample written to %s: %d raw events, %d raw items", out, truth["raw_event_rows"], truth["raw_item_rows"])
    return truth


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI arguments of ``recjobs sample-data``."""
    parser.add_argument("--out", required=True, help="folder to write events/, items/ and ground_truth.json to")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--end-date", type=dt.date.fromisoformat, default=SampleSpec.end_date,
                        help="last day of the sample (YYYY-MM-DD)")
    parser.add_argument("--format", dest="fmt", choices=["jsonl", "csv", "parquet"], default="jsonl")
    parser.add_argument("--revisit-rate", type=float, default=SampleSpec.revisit_rate,
                        help="share of item picks that go back to an engaged, unbought item (0 = none)")
    parser.add_argument("--no-faults", action="store_true", help="plant no faults")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND=RATE",
                        help="override one fault rate, e.g. --fault duplicate_event=0.05 (repeatable)")


def spec_from_args(args: argparse.Namespace) -> SampleSpec:
    """Build a :class:`SampleSpec` from parsed CLI arguments."""
    faults = FaultRates.none() if args.no_faults else FaultRates()
    for text in args.fault:
        faults.set(text)
    for name in ("users", "items", "days"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1")
    if not 0.0 <= args.revisit_rate < 1.0:
        raise ValueError(f"--revisit-rate must be in [0, 1), got {args.revisit_rate}")
    return SampleSpec(users=args.users, items=args.items, days=args.days, seed=args.seed,
                      end_date=args.end_date, fmt=args.fmt, revisit_rate=args.revisit_rate, faults=faults)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    truth = generate(args.out, spec_from_args(args))
    print(json.dumps({"out": args.out, "events": truth["raw_event_rows"], "items": truth["raw_item_rows"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
