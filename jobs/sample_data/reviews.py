"""The ``reviews`` shape: a 5-core review site over years.

Shaped like the Amazon 2018 5-core subsets: every event is a ``review`` with a 1-5 rating and a
text whose wording follows the rating, each user has 5 to 20 reviews spread over years (dated to
the day, as those sets are), every item has at least 5 reviews, and items carry rich metadata
(title, brand, category, description, price, tags). Users prefer a few product topics; some items
are followed by a complement (a tent, then a sleeping bag), reviewed later by most who reviewed
the first; 15% of the products launch during the years (reviewed only after, and most while
new). Planted truth: users' topic preferences, the complement pairs, the items' topics, quality
and launch times. Bots: review spammers posting hundreds of five-star reviews within one hour.
"""
from __future__ import annotations

import numpy as np

from jobs.sample_data.base import Generator, attention
from jobs.sample_data.shop import NEGATIVE_REVIEWS, NEUTRAL_REVIEWS, POSITIVE_REVIEWS, TOPICS

CORE = 5                   # every user and every item keeps at least this many reviews
COMPLEMENT_RATE = 0.7      # chance that a user who reviewed an item with a complement reviews it later
DAY = 86400.0
NEW_SHARE = 0.15           # share of the catalogue launched during the span


class ReviewsGenerator(Generator):
    """Sparse reviews over years: topics, complements, 5-core."""

    def make_items(self) -> None:
        rng, spec = self.rng, self.spec
        for i in range(spec.items):
            t = i % len(TOPICS)
            topic = TOPICS[t]
            noun = topic["nouns"][rng.integers(len(topic["nouns"]))]
            adj = topic["adjectives"][rng.integers(len(topic["adjectives"]))]
            brand = topic["brands"][rng.integers(len(topic["brands"]))]
            category = topic["categories"][rng.integers(len(topic["categories"]))]
            words = list(rng.choice(topic["words"], size=6, replace=False))
            item_id = f"p{i:05d}"
            self.items.append({
                "item_id": item_id, "title": f"{brand} {adj} {noun} {int(rng.integers(100, 999))}",
                "category": category, "brand": brand,
                "price": round(float(topic["price"] * rng.lognormal(0, 0.4)), 2),
                "description": (f"The {brand} {noun} is a {adj} choice for {words[0]} and {words[1]}. "
                                f"Made for {words[2]}, {words[3]} and {words[4]}; customers use it for {words[5]}."),
                "tags": "|".join([topic["name"], *rng.choice(topic["words"], size=3, replace=False)]),
                "updated_at": "2020-01-01T00:00:00Z"})
            self.item_topic[item_id] = t
            self.item_quality[item_id] = float(rng.choice([4.6, 4.1, 3.2, 1.8], p=[0.4, 0.3, 0.15, 0.15]))

    def make_pools(self) -> None:
        super().make_pools()
        rng = self.rng
        usable = set(self.usable)
        self.by_topic = [[iid for iid, t in self.item_topic.items() if t == k and iid in usable]
                         for k in range(len(TOPICS))]
        self.pop = []
        for ids in self.by_topic:
            w = 1.0 / np.arange(1, len(ids) + 1) ** 0.7
            self.pop.append(w / w.sum())
        # new products: launched during the span, reviewed only after (plan_arrivals)
        self.plan_arrivals(sorted(usable), NEW_SHARE)
        self.topic_released = [self.release_times(ids) for ids in self.by_topic]
        # complements: within a topic, a third of the items lead to another one
        self.complement: dict[str, str] = {}
        for ids in self.by_topic:
            order = list(rng.permutation(len(ids)))
            for a, b in zip(order[0::3], order[1::3]):
                self.complement[ids[a]] = ids[b]

    def _text(self, item: str, rating: float) -> str:
        noun = self.items[int(item[1:])]["title"].split(" ", 2)[-1].rsplit(" ", 1)[0]
        pool = POSITIVE_REVIEWS if rating >= 4 else NEGATIVE_REVIEWS if rating <= 2 else NEUTRAL_REVIEWS
        return pool[self.rng.integers(len(pool))].format(noun=noun)

    def make_users(self) -> None:
        rng, spec = self.rng, self.spec
        span = DAY * spec.days
        k = len(TOPICS)
        drafts: list[tuple[str, str, float]] = []
        users = {}
        for u in range(spec.users):
            user_id = f"a{u:05d}"
            pref = rng.dirichlet(np.full(k, 0.3))
            n = int(rng.integers(CORE, 21))
            days = np.sort(rng.uniform(0, span, size=n))
            seen: set[str] = set()
            queue: list[tuple[float, str]] = []             # complements due later
            for when in days:
                ts = self.start.timestamp() + float(when)
                due = queue.pop(0)[1] if queue and queue[0][0] <= when else None
                if due is not None and self.released.get(due, -np.inf) <= ts:   # else: not out yet, dropped
                    item = due
                else:
                    t = int(rng.choice(k, p=pref))
                    ids = self.by_topic[t]
                    p = self.pop[t] * attention(self.topic_released[t], ts)
                    if p.sum() <= 0:
                        continue
                    item = ids[int(rng.choice(len(ids), p=p / p.sum()))]
                if item in seen:
                    continue
                seen.add(item)
                drafts.append((user_id, item, float(when)))
                follow = self.complement.get(item)
                if follow and follow not in seen and rng.random() < COMPLEMENT_RATE:
                    queue.append((float(when) + DAY * rng.uniform(1, 60), follow))
                    queue.sort()
            users[user_id] = {"topic_pref": pref.round(4).tolist()}
        kept = self._core(drafts)
        for user_id, item, when in sorted(kept, key=lambda d: (d[0], d[2])):
            ts = self.start.timestamp() + (when // DAY) * DAY               # reviews are dated to the day
            rating = float(np.clip(round(self.item_quality[item] + rng.normal(0, 0.6)), 1, 5))
            self.events.append(self._event(user_id, item, "review", ts, rating=rating,
                                           review_text=self._text(item, rating)))
        kept_users = {d[0] for d in kept}
        self.truth["users"] = {u: v for u, v in users.items() if u in kept_users}

    @staticmethod
    def _core(drafts: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
        """Drop users and items with fewer than CORE reviews until none is left (a 5-core)."""
        rows = list(drafts)
        while True:
            per_user: dict[str, int] = {}
            per_item: dict[str, int] = {}
            for u, i, _ in rows:
                per_user[u] = per_user.get(u, 0) + 1
                per_item[i] = per_item.get(i, 0) + 1
            kept = [r for r in rows if per_user[r[0]] >= CORE and per_item[r[1]] >= CORE]
            if len(kept) == len(rows):
                return kept
            rows = kept

    def bot_event(self, bot: str, item: str, ts: float) -> dict:
        """A review spammer: hundreds of five-star reviews an hour."""
        return self._event(bot, item, "review", ts, rating=5.0, review_text="Great product, five stars!!!")

    def run_settings(self) -> dict:
        return self.long_history_settings(["review"])

    def shape_truth(self) -> dict:
        return {
            "topics": [{"name": t["name"], "words": t["words"]} for t in TOPICS],
            "item_topics": {k: TOPICS[v]["name"] for k, v in self.item_topic.items()},
            # reviewed after the first item by COMPLEMENT_RATE of its reviewers, 1 to 60 days later
            "complements": self.complement,
            "complement_rate": COMPLEMENT_RATE,
            "core": CORE,
            **self.arrivals_truth(),
        }
