"""The ranking library: candidates, features, blend, top-N, reasons and exclusions.

The rank stage, the evaluation and the validate stage import it; it imports only ``jobs/common``,
``udfs`` and ``schemas``.
"""
from jobs.ranking.blend import blend_rank, blend_stats, standardise_and_blend, top_n
from jobs.ranking.candidates import decayed_popularity, dot, engagement, fired_rules, retrieve, top_popular
from jobs.ranking.default import default_list
from jobs.ranking.exclusions import consumed, excluded_pairs, negative_reviews
from jobs.ranking.features import RankingData, candidate_features
from jobs.ranking.reasons import reason_context, reasons

__all__ = ["RankingData", "blend_rank", "blend_stats", "candidate_features", "consumed", "decayed_popularity", "default_list",
           "dot", "engagement", "excluded_pairs", "fired_rules", "negative_reviews",
           "reason_context", "reasons", "retrieve", "standardise_and_blend", "top_n", "top_popular"]
