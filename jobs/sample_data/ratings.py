"""The ``ratings`` shape: a movie-rating site over months.

Shaped like a public movie-rating set (MovieLens-100k: 943 users, 1,682 films, 100k ratings over
7 months, at least 20 ratings a user): every event is a ``rate`` with a 1-5 rating, nobody rates a
film twice, a user arrives with a burst (dozens of films rated in one sitting) and comes back in
bursts over the following months; films carry genres (the first is the category), a long-tailed
popularity, and some belong to a series whose parts are watched in order (part k+1 only after
part k); new films come out during the months (15% of those outside series, from 30% of the span
on: rated only once out, and by many while new). Planted truth: each user's genre preferences,
the series and each part's successor, the films' popularity, quality and release times. Bots:
rating spammers who rate hundreds of films within one hour.
"""
from __future__ import annotations

import numpy as np

from jobs.sample_data.base import Generator, attention

GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
          "Western"]
# Title words by genre, so that a film's text says something about it (the language model reads it).
GENRE_WORDS = {
    "Action": ["Strike", "Fury", "Mission", "Target", "Blast"], "Adventure": ["Quest", "Journey", "Island", "Treasure"],
    "Animation": ["Toy", "Little", "Magic", "Cartoon"], "Children's": ["Puppy", "Friends", "Kid", "Birthday"],
    "Comedy": ["Wedding", "Trouble", "Crazy", "Party"], "Crime": ["Heist", "Mob", "Detective", "Street"],
    "Documentary": ["Story", "Life", "Planet", "Truth"], "Drama": ["Letters", "Silence", "Family", "Promise"],
    "Fantasy": ["Dragon", "Kingdom", "Sorcerer", "Ring"], "Film-Noir": ["Night", "Shadow", "Rain", "Dame"],
    "Horror": ["Haunting", "Curse", "Scream", "Blood"], "Musical": ["Song", "Dance", "Stage", "Melody"],
    "Mystery": ["Secret", "Clue", "Vanishing", "Riddle"], "Romance": ["Love", "Heart", "Kiss", "Summer"],
    "Sci-Fi": ["Star", "Galaxy", "Robot", "Future"], "Thriller": ["Chase", "Danger", "Deadline", "Hunt"],
    "War": ["Battle", "Soldier", "Front", "Victory"], "Western": ["Outlaw", "Frontier", "Sheriff", "Canyon"],
}
SERIES_SHARE = 0.3           # share of the catalogue in series
SEQUEL_RATE = 0.6            # chance that a pick is the next part of a series the user is in
NEW_SHARE = 0.15             # share of the films outside series released during the span


class RatingsGenerator(Generator):
    """Users rating films in bursts over months; series watched in order."""

    def make_items(self) -> None:
        rng, spec = self.rng, self.spec
        n = spec.items
        self.genres: dict[str, list[str]] = {}
        self.series: list[list[str]] = []
        ids = [f"m{i:05d}" for i in range(n)]
        i = 0
        in_series = int(SERIES_SHARE * n)
        while i < in_series:                           # series first: 2 to 5 parts each
            parts = min(int(rng.integers(2, 6)), n - i)
            if parts < 2:
                break
            g = self._pick_genres()
            words = GENRE_WORDS[g[0]]
            name = f"{words[int(rng.integers(len(words)))]} {rng.choice(['Saga', 'Chronicles', 'Legacy', 'Files'])}"
            year = int(rng.integers(1960, 2000))
            members = []
            for k in range(parts):
                iid = ids[i]
                self._add_film(iid, f"{name} Part {k + 1} ({year + 2 * k})", g, year + 2 * k, series=name)
                members.append(iid)
                i += 1
            self.series.append(members)
        self.plan_arrivals(ids[i:], NEW_SHARE)         # new releases: rated only once out
        for iid in ids[i:]:
            g = self._pick_genres()
            words = GENRE_WORDS[g[0]] + GENRE_WORDS[g[-1]]
            year = int(rng.integers(1930, 2000))
            if iid in self.released:
                year = spec.end_date.year
            title = f"{rng.choice(['The', 'A', 'Last', 'First', 'Blue', 'Red'])} {words[int(rng.integers(len(words)))]}"
            self._add_film(iid, f"{title} ({year})", g, year)
        # long-tailed popularity over the films in a random order; later parts lose viewers
        order = rng.permutation(n)
        pop = 1.0 / np.arange(1, n + 1) ** 0.9
        self.popularity = {ids[j]: float(pop[r]) for r, j in enumerate(order)}
        self.successor: dict[str, str] = {}
        self.part_of: dict[str, tuple[int, int]] = {}
        for s, members in enumerate(self.series):
            head = self.popularity[members[0]]
            for k, iid in enumerate(members):
                self.popularity[iid] = head * 0.8 ** k
                self.part_of[iid] = (s, k)
                if k + 1 < len(members):
                    self.successor[iid] = members[k + 1]

    def _pick_genres(self) -> list[str]:
        k = int(self.rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
        return [GENRES[j] for j in sorted(self.rng.choice(len(GENRES), size=k, replace=False))]

    def _add_film(self, iid: str, title: str, genres: list[str], year: int, series: str | None = None) -> None:
        desc = f"A {', '.join(g.lower() for g in genres)} film from {year}."
        if series:
            desc += f" Part of the {series} series."
        self.items.append({"item_id": iid, "title": title, "category": genres[0], "brand": None, "price": None,
                           "description": desc, "tags": "|".join(genres),
                           "updated_at": "2000-01-01T00:00:00Z"})
        self.genres[iid] = genres
        self.item_quality[iid] = float(np.clip(self.rng.normal(3.6, 0.6), 1.5, 4.8))

    def make_pools(self) -> None:
        super().make_pools()
        usable = set(self.usable)
        self.film_ids = [iid for iid in self.genres if iid in usable]
        # a series is only reachable from its first part
        self.entry = {iid for iid in self.film_ids if self.part_of.get(iid, (0, 0))[1] == 0}
        self.base_pop = np.array([self.popularity[i] for i in self.film_ids])
        self.genre_matrix = np.array([[g in self.genres[i] for g in GENRES] for i in self.film_ids], dtype=float)
        self.genre_matrix /= self.genre_matrix.sum(axis=1, keepdims=True)

    def make_users(self) -> None:
        rng, spec = self.rng, self.spec
        users = {}
        span = 86400.0 * spec.days
        horizon = self.start.timestamp() + span
        position = {iid: j for j, iid in enumerate(self.film_ids)}
        reachable = np.array([iid in self.entry or iid not in self.part_of for iid in self.film_ids])
        released = self.release_times(self.film_ids)
        for u in range(spec.users):
            user_id = f"r{u:05d}"
            pref = rng.dirichlet(np.full(len(GENRES), 0.3))
            bias = float(rng.normal(0, 0.4))
            target = int(np.clip(20 + rng.lognormal(3.4, 0.8), 20, min(400, 0.6 * len(self.film_ids))))
            weights = self.base_pop * (self.genre_matrix @ pref + 0.02) ** 2 * reachable
            seen: set[str] = set()
            pending: list[str] = []              # successors of parts seen, newest first
            ts = self.start.timestamp() + rng.uniform(0, 0.7 * span)
            burst = int(min(target, rng.integers(15, 46)))
            made = 0
            while made < target and ts < horizon:
                for _ in range(burst):
                    if made >= target or ts >= horizon:
                        break
                    item = self._next_film(weights * attention(released, ts), pending)
                    if item is None:
                        break
                    rating = float(np.clip(round(self.item_quality[item] + bias + rng.normal(0, 0.7)), 1, 5))
                    self.events.append(self._event(user_id, item, "rate", ts, rating=rating))
                    seen.add(item)
                    weights[position[item]] = 0.0            # nobody rates a film twice
                    if item in pending:
                        pending.remove(item)
                    nxt = self.successor.get(item)
                    if nxt is not None and nxt not in seen and nxt in position:
                        pending.insert(0, nxt)
                        weights[position[nxt]] = self.base_pop[position[nxt]]   # now reachable by choice too
                    made += 1
                    ts += rng.uniform(20, 150)
                ts += rng.exponential(86400 * 25)            # back some weeks later
                burst = 2 + int(rng.poisson(6))
            users[user_id] = {"genre_pref": pref.round(4).tolist(), "target_ratings": target, "ratings": made}
        self.truth["users"] = users

    def _next_film(self, weights: np.ndarray, pending: list) -> str | None:
        """The newest pending sequel (with probability SEQUEL_RATE), else a film by taste and
        popularity among those the user has not rated (``weights`` is zero for them)."""
        rng = self.rng
        if pending and rng.random() < SEQUEL_RATE:
            return pending[0]
        total = weights.sum()
        if total <= 0:
            return pending[0] if pending else None
        return self.film_ids[int(rng.choice(len(weights), p=weights / total))]

    def bot_event(self, bot: str, item: str, ts: float) -> dict:
        """A rating spammer: hundreds of ratings an hour, all top marks."""
        return self._event(bot, item, "rate", ts, rating=5.0)

    def run_settings(self) -> dict:
        return self.long_history_settings(["rate"])

    def shape_truth(self) -> dict:
        return {
            "genres": GENRES,
            "item_genres": self.genres,
            "series": self.series,
            # the next part of each series part: a user who rated a part rates the next one next
            # with probability SEQUEL_RATE per pick (the sequential structure a sequence model can learn)
            "successor": self.successor,
            "sequel_rate": SEQUEL_RATE,
            "popularity": {k: round(v, 6) for k, v in self.popularity.items()},
            **self.arrivals_truth(),
        }
