"""The ``shop`` shape: a web shop's sessions over days.

Items come from latent topics (title, category, brand, price, description, tags); users prefer a
few topics and drift towards another over the days; some item picks go back to items the user
engaged with but did not buy, recent ones most; sessions follow a funnel view -> click -> cart ->
purchase; ratings follow item quality and review wording follows the rating; some item pairs are
bought together.
"""
from __future__ import annotations

import numpy as np

from jobs.sample_data.base import Generator, _iso

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


class ShopGenerator(Generator):
    """Sessions of a shop: topics, drifting preferences, a funnel, revisits and co-purchases."""

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

    def shape_truth(self) -> dict:
        return {
            "topics": [{"name": t["name"], "words": t["words"]} for t in TOPICS],
            "item_topics": {k: TOPICS[v]["name"] for k, v in self.item_topic.items()},
            # P(item | its topic) of the behaviour model: with users[u]["end_pref"] and "revisit"
            # it gives the best ranking any recommender could learn (an upper bound for evaluations)
            "item_topic_share": {iid: round(float(p), 6) for ids, pops in zip(self.by_topic, self.pop)
                                 for iid, p in zip(ids, pops)},
            # share of item picks that revisit an engaged, unbought item, P ~ 2^(-age / half-life)
            "revisit": {"rate": self.spec.revisit_rate, "half_life_days": self.spec.revisit_half_life_days},
            "co_purchase_pairs": sorted([a, b] for a, b in self.pairs.items()),
        }
