"""Typed settings of each stage: its section of the configuration read once and checked.

A stage's ``run()`` calls ``XSettings.from_config(cfg)`` and hands plain values to its transforms.
The checks (``positive``, ``int_or_null`` ...) are declared in ``jobs/common/config.py``; a bad
value exits 2 with a message that names the key.
"""
from __future__ import annotations

from dataclasses import dataclass

from jobs.common.config import (ConfigError, Settings, int_at_least, int_or_null, list_of, map_of, non_negative,
                                number_in, number_or_null, one_of, positive, setting, text)
from jobs.common.raw_io import FORMATS
from schemas import components


def _covers(key: str, mapping: dict, event_types: list[str]) -> None:
    missing = [t for t in event_types if t not in mapping]
    if missing:
        raise ConfigError(f"{key} has no entry for event type(s) {missing} listed in clean.event_types; "
                          f"add them to {key}")


def _subset(key: str, values: list, allowed: list, allowed_key: str) -> None:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ConfigError(f"{key} lists {unknown}, which {allowed_key} does not accept ({', '.join(allowed)})")


@dataclass(frozen=True)
class CleanSettings(Settings):
    """clean (and input): what one clean run reads and accepts."""

    window_days: int = setting("clean.window_days", int_at_least(1))
    event_types: list = setting("clean.event_types", list_of(text, non_empty=True))
    bot_event_types: list = setting("clean.bot_event_types", list_of(text))
    bot_max_events_per_hour: int = setting("clean.bot_max_events_per_hour", int_at_least(1))
    bot_relative_factor: float | None = setting("clean.bot_relative_factor", number_or_null)
    max_text_length: int = setting("clean.max_text_length", int_at_least(1))
    rating_min: float = setting("clean.rating_min")
    rating_max: float = setting("clean.rating_max")
    input_format: str = setting("input.format", one_of(*FORMATS))
    events_path: str = setting("input.events_path", text)
    items_path: str = setting("input.items_path", text)
    csv_separator: str = setting("input.csv_separator", text)
    csv_header: bool = setting("input.csv_header")
    allow_empty_input: bool = setting("clean.allow_empty_input")

    def validate(self) -> None:
        _subset("clean.bot_event_types", self.bot_event_types, self.event_types, "clean.event_types")
        if self.bot_relative_factor is not None and self.bot_relative_factor <= 1:
            raise ConfigError(f"clean.bot_relative_factor must be null (off) or a number > 1, "
                              f"got {self.bot_relative_factor}")
        if not self.rating_min < self.rating_max:
            raise ConfigError(f"clean.rating_min ({self.rating_min}) must be below clean.rating_max ({self.rating_max})")


@dataclass(frozen=True)
class SequenceSettings(Settings):
    """build_sequences: the window, the decay and the text of users' sequences."""

    lookback_days: int = setting("sequences.lookback_days", int_at_least(1))
    max_len: int = setting("sequences.max_len", int_at_least(1))
    session_gap_minutes: float = setting("sequences.session_gap_minutes", positive)
    max_text_chars: int = setting("sequences.max_text_chars", int_at_least(1))
    type_weights: dict = setting("sequences.type_weights", map_of(positive))
    half_life_days: dict = setting("sequences.half_life_days", map_of(positive))
    verbs: dict = setting("sequences.verbs", map_of(text))
    event_types: list = setting("clean.event_types", list_of(text, non_empty=True))

    def validate(self) -> None:
        _covers("sequences.type_weights", self.type_weights, self.event_types)
        _covers("sequences.half_life_days", self.half_life_days, self.event_types)


@dataclass(frozen=True)
class EncodeSettings(Settings):
    """encode_items / encode_users: what is encoded and how it is batched (the model itself is
    checked by ``jobs.common.encoding.model_ref``)."""

    item_template: str = setting("encoder.item_template", text)
    full_refresh: bool = setting("encoder.full_refresh")
    arrow_batch_rows: int = setting("encoder.arrow_batch_rows", int_at_least(1))


@dataclass(frozen=True)
class UserSettings(Settings):
    """encode_users: the mix of the sequence-text vector and the pooled item vector."""

    sequence_weight: float = setting("users.sequence_weight", non_negative)
    pooled_weight: float = setting("users.pooled_weight", non_negative)

    def validate(self) -> None:
        if self.sequence_weight + self.pooled_weight == 0:
            raise ConfigError("users.sequence_weight and users.pooled_weight must not both be 0")

    @property
    def mix(self) -> tuple[float, float]:
        """(w_seq, w_pool) renormalised to sum to 1."""
        total = self.sequence_weight + self.pooled_weight
        return self.sequence_weight / total, self.pooled_weight / total


@dataclass(frozen=True)
class TopicSettings(Settings):
    """fit_topics: the LDA pipeline and its refit cadence."""

    k: int = setting("topics.k", int_at_least(2))
    vocab_size: int = setting("topics.vocab_size", int_at_least(1))
    min_df: float = setting("topics.min_df", positive)
    max_iter: int = setting("topics.max_iter", int_at_least(1))
    seed: int = setting("topics.seed", int_at_least(0))
    use_reviews: bool = setting("topics.use_reviews")
    refit_every_days: int = setting("topics.refit_every_days", int_at_least(1))
    top_terms: int = setting("topics.top_terms", int_at_least(1))


@dataclass(frozen=True)
class SentimentStageSettings(Settings):
    """score_sentiment: smoothing of item sentiment and the window of reviews to score."""

    prior_weight: float = setting("sentiment.prior_weight", non_negative)
    prior_mean: float | None = setting("sentiment.prior_mean", number_or_null)
    negative_threshold: float = setting("sentiment.negative_threshold", number_in(-1.0, 1.0))
    window_days: int = setting("clean.window_days", int_at_least(1))


@dataclass(frozen=True)
class KeywordSettings(Settings):
    """keywords: terms kept per user."""

    top_n: int = setting("keywords.top_n", int_at_least(1))


@dataclass(frozen=True)
class RuleSettings(Settings):
    """mine_rules: baskets and FPGrowth thresholds."""

    basket: str = setting("rules.basket", one_of("session", "daily"))
    event_types: list = setting("rules.event_types", list_of(text, non_empty=True))
    lookback_days: int = setting("rules.lookback_days", int_at_least(1))
    min_support: float = setting("rules.min_support", number_in(0.0, 1.0, low_open=True))
    min_confidence: float = setting("rules.min_confidence", number_in(0.0, 1.0))
    max_antecedent: int = setting("rules.max_antecedent", int_at_least(1))
    session_gap_minutes: float = setting("sequences.session_gap_minutes", positive)


@dataclass(frozen=True)
class NeighbourSettings(Settings):
    """fit_neighbours: item neighbours from behaviour (EASE, or cosine above max_items)."""

    lookback_days: int = setting("neighbours.lookback_days", int_at_least(1))
    max_user_items: int = setting("neighbours.max_user_items", int_at_least(1))
    max_items: int = setting("neighbours.max_items", int_at_least(1))
    reg: float = setting("neighbours.reg", positive)
    per_item: int = setting("neighbours.per_item", int_at_least(1))


@dataclass(frozen=True)
class SeqRecSettings(Settings):
    """train_seqrec: the sequence model's architecture, training, cadence and serving."""

    enabled: bool = setting("seqrec.enabled")
    max_len: int = setting("seqrec.max_len", int_at_least(2))
    max_history: int = setting("seqrec.max_history", int_at_least(2))
    dim: int = setting("seqrec.dim", int_at_least(4))
    heads: int = setting("seqrec.heads", int_at_least(1))
    layers: int = setting("seqrec.layers", int_at_least(1))
    dropout: float = setting("seqrec.dropout", number_in(0.0, 0.9))
    use_text: bool = setting("seqrec.use_text")
    id_embeddings: bool = setting("seqrec.id_embeddings")
    id_dropout: float = setting("seqrec.id_dropout", number_in(0.0, 0.9))
    id_hash_above: int = setting("seqrec.id_hash_above", int_at_least(1))
    id_hash_buckets: int = setting("seqrec.id_hash_buckets", int_at_least(1))
    epochs: int = setting("seqrec.epochs", int_at_least(1))
    warm_epochs: int = setting("seqrec.warm_epochs", int_at_least(1))
    patience: int = setting("seqrec.patience", int_at_least(1))
    min_epochs: int = setting("seqrec.min_epochs", int_at_least(1))
    batch_size: int = setting("seqrec.batch_size", int_at_least(1))
    min_steps_per_epoch: int = setting("seqrec.min_steps_per_epoch", int_at_least(1))
    lr: float = setting("seqrec.lr", positive)
    weight_decay: float = setting("seqrec.weight_decay", non_negative)
    negatives: int = setting("seqrec.negatives", int_at_least(1))
    full_softmax_max_items: int = setting("seqrec.full_softmax_max_items", int_at_least(1))
    mask_seen: bool = setting("seqrec.mask_seen")
    mask_unavailable: bool = setting("seqrec.mask_unavailable")
    seed: int = setting("seqrec.seed", int_at_least(0))
    validation_users: int = setting("seqrec.validation_users", int_at_least(1))
    refit_every_days: int = setting("seqrec.refit_every_days", int_at_least(1))
    num_processes: int = setting("seqrec.num_processes", int_at_least(1))
    min_users_per_process: int = setting("seqrec.min_users_per_process", int_at_least(1))
    local_mode: bool = setting("seqrec.local_mode")
    use_gpu: str = setting("seqrec.use_gpu", one_of("auto", "true", "false"))
    device: str = setting("seqrec.device", text)
    serve_batch: int = setting("seqrec.serve_batch", int_at_least(1))
    min_users: int = setting("seqrec.min_users", int_at_least(1))
    lookback_days: int = setting("sequences.lookback_days", int_at_least(1))

    def validate(self) -> None:
        if not (self.use_text or self.id_embeddings):
            raise ConfigError("seqrec.use_text and seqrec.id_embeddings must not both be false "
                              "(items would enter the model as nothing)")
        if self.dim % self.heads:
            raise ConfigError(f"seqrec.dim ({self.dim}) must be a multiple of seqrec.heads ({self.heads})")

    @property
    def architecture(self) -> dict:
        """The :class:`udfs.seqrec.SeqRecConfig` fields set from conf."""
        return {"dim": self.dim, "heads": self.heads, "layers": self.layers, "max_len": self.max_len,
                "dropout": self.dropout, "use_text": self.use_text, "id_embeddings": self.id_embeddings,
                "id_dropout": self.id_dropout}

    def training(self, warm: bool) -> dict:
        """The :class:`udfs.seqrec.TrainSettings` fields (a warm start runs ``warm_epochs``)."""
        return {"epochs": self.warm_epochs if warm else self.epochs, "patience": self.patience,
                "min_epochs": min(self.min_epochs, self.warm_epochs) if warm else self.min_epochs,
                "batch_size": self.batch_size, "min_steps_per_epoch": self.min_steps_per_epoch, "lr": self.lr, "weight_decay": self.weight_decay,
                "negatives": self.negatives, "full_softmax_max_items": self.full_softmax_max_items,
                "mask_seen": self.mask_seen, "mask_unavailable": self.mask_unavailable, "seed": self.seed, "validation_users": self.validation_users,
                "history": self.history}

    @property
    def history(self) -> int:
        """Targets per user the model learns from: ``max_history``, never fewer than it reads."""
        from udfs.seqrec import history_of

        return history_of(self.max_len, self.max_history)


@dataclass(frozen=True)
class RankSettings(Settings):
    """rank_topn (and every ranking the evaluation does): candidates, blend, exclusions, top-N."""

    top_n: int = setting("rank.top_n", int_at_least(1))
    candidates_k: int = setting("rank.candidates_k", int_at_least(1))
    sequence_k: int = setting("rank.sequence_k", int_at_least(1))
    popular_k: int = setting("rank.popular_k", int_at_least(1))
    neighbour_k: int = setting("rank.neighbour_k", int_at_least(1))
    neighbour_lookback_days: int = setting("neighbours.lookback_days", int_at_least(1))
    neighbour_user_items: int = setting("neighbours.max_user_items", int_at_least(1))
    recent_items: int = setting("rank.recent_items", int_at_least(1))
    popularity_half_life_days: float = setting("rank.popularity_half_life_days", positive)
    popularity_lookback_days: int = setting("rank.popularity_lookback_days", int_at_least(1))
    broadcast_max_items: int = setting("rank.broadcast_max_items", int_at_least(1))
    block_rows: int = setting("rank.block_rows", int_at_least(1))
    configured_weights: dict = setting("rank.weights", map_of(number_in(-1e6, 1e6)))
    engagement_half_life_days: float = setting("rank.engagement_half_life_days", positive)
    exclude_types: list = setting("rank.exclude_types", list_of(text))
    negative_neighbour_threshold: float = setting("rank.negative_neighbour_threshold", number_in(-1.0, 1.0))
    max_per_category: int = setting("rank.max_per_category", int_at_least(1))
    max_engaged: int | None = setting("rank.max_engaged", int_or_null(0))
    model_version: str = setting("rank.model_version", text)
    type_weights: dict = setting("sequences.type_weights", map_of(positive))
    verbs: dict = setting("sequences.verbs", map_of(text))
    negative_threshold: float = setting("sentiment.negative_threshold", number_in(-1.0, 1.0))
    event_types: list = setting("clean.event_types", list_of(text, non_empty=True))

    def validate(self) -> None:
        _subset("rank.weights", list(self.configured_weights), components.names(), "the component table")
        # every name is a component now (the check above)
        raised = [n for n, w in self.configured_weights.items() if components.by_name(n).demotes and float(w) > 0]
        if raised:
            raise ConfigError(f"rank.weights gives {raised} a weight above 0; a demoting component's weight must be "
                              f"at most 0 (0 turns it off)")
        _subset("rank.exclude_types", self.exclude_types, self.event_types, "clean.event_types")

    @property
    def weights(self) -> dict[str, float]:
        """The fixed blend: the component table's default weights with ``rank.weights`` over them."""
        return {**components.default_weights(), **{k: float(v) for k, v in self.configured_weights.items()}}

    @property
    def half_lives(self) -> dict[str, float]:
        """The fixed blend's half-lives of the components that decay (what the learned blend chooses among)."""
        return {"engagement": self.engagement_half_life_days, "popularity": self.popularity_half_life_days}


PROTOCOLS = ("leave_last_out", "next_day", "random_split")
BASELINES = ("popularity", "cooccurrence", "als", "ease", "seqrec", "seqrec_no_text")
# Ablations that are not a component's weight set to 0 (they rebuild the features).
REBUILD_ABLATIONS = ("no_decay",)


@dataclass(frozen=True)
class EvalSettings(Settings):
    """evaluate: protocols, cut-offs, what counts as relevant, which models to compare."""

    protocols: list = setting("eval.protocols", list_of(one_of(*PROTOCOLS)))
    ks: list = setting("eval.ks", list_of(int_at_least(1), non_empty=True))
    relevant_types: list = setting("eval.relevant_types", list_of(text, non_empty=True))
    random_ratio: float = setting("eval.random_ratio", number_in(0.0, 1.0, low_open=True))
    seed: int = setting("eval.seed", int_at_least(0))
    ablations: list = setting("eval.ablations", list_of(text))
    baselines: list = setting("eval.baselines", list_of(one_of(*BASELINES)))
    cooccurrence_recent_items: int = setting("eval.cooccurrence_recent_items", int_at_least(1))
    cooccurrence_max_basket: int = setting("eval.cooccurrence_max_basket", int_at_least(2))
    als: dict = setting("eval.als")
    ease_reg: float = setting("eval.ease_reg", positive)
    ease_max_items: int = setting("eval.ease_max_items", int_at_least(1))
    rare_item_events: int = setting("eval.rare_item_events", int_at_least(1))
    max_users: int | None = setting("eval.max_users", int_or_null(1))
    bootstrap: int = setting("eval.bootstrap", int_at_least(0))
    ci_level: float = setting("eval.ci_level", number_in(0.5, 0.999))
    type_weights: dict = setting("sequences.type_weights", map_of(positive))

    def validate(self) -> None:
        known = [*components.ablations(), *REBUILD_ABLATIONS]
        _subset("eval.ablations", self.ablations, known, "the component table's ablations")

    @property
    def k_max(self) -> int:
        return max(int(k) for k in self.ks)


@dataclass(frozen=True)
class DqSettings(Settings):
    """validate and publish: where the GX project lives, what is validated, how strictly."""

    docs_dir: str = setting("dq.docs_dir", text)
    validate_raw: bool = setting("dq.validate_raw")
    require_for_publish: bool = setting("dq.require_for_publish")
    norm_tolerance: float = setting("dq.norm_tolerance", number_in(0.0, 1.0))
    distribution_tolerance: float = setting("dq.distribution_tolerance", number_in(0.0, 1.0))
    full_list_share: float = setting("dq.full_list_share", number_in(0.0, 1.0))
    partial_unexpected: int = setting("dq.partial_unexpected", int_at_least(0))
    max_bot_share: float = setting("dq.max_bot_share", number_in(0.0, 1.0))


@dataclass(frozen=True)
class LearnSettings(Settings):
    """rank_topn's learned blend: where its labels come from, how it is fitted and chosen."""

    model: str = setting("rank.model", one_of("learned", "fixed"))
    learner: str = setting("rank.learner", one_of("logistic", "gbt"))
    train_protocol: str = setting("rank.train_protocol", one_of("leave_last_out", "next_day"))
    negatives_per_user: int = setting("rank.negatives_per_user", int_at_least(1))
    min_labels: int = setting("rank.min_labels", int_at_least(1))
    validation_share: float = setting("rank.validation_share", number_in(0.0, 0.9, low_open=True))
    reg_param: float = setting("rank.reg_param", non_negative)
    refit_every_days: int = setting("rank.refit_every_days", int_at_least(1))
    seed: int = setting("rank.seed", int_at_least(0))
    half_life_grid: dict = setting("rank.half_life_grid", map_of(list_of(positive)))
    search_sweeps: int = setting("rank.search_sweeps", int_at_least(0))
    search_steps: list = setting("rank.search_steps", list_of(number_in(-10.0, 10.0), non_empty=True))

    def validate(self) -> None:
        _subset("rank.half_life_grid", list(self.half_life_grid), ["engagement", "popularity"], "the grid")
        if any(float(step) == 0.0 for step in self.search_steps):
            raise ConfigError("rank.search_steps: a step of 0 changes nothing; list non-zero steps, "
                              "e.g. [-0.5, -0.1, 0.1, 0.5, 1.0]")
