"""Item text and tokenising shared by the encoder, topics and keywords stages."""
from __future__ import annotations

import string

from pyspark.ml.feature import RegexTokenizer, StopWordsRemover
from pyspark.sql import Column
from pyspark.sql import functions as F

from jobs.common.errors import ConfigError
from schemas import columns as c

TEMPLATE_FIELDS = {
    "title": lambda: F.col(c.TITLE),
    "category": lambda: F.col(c.CATEGORY),
    "brand": lambda: F.col(c.BRAND),
    "description": lambda: F.col(c.DESCRIPTION),
    "tags": lambda: F.array_join(F.col(c.TAGS), ", "),
    "price": lambda: F.format_number(F.col(c.PRICE), 2),
}
# The document of an item for topics and keywords: every text field, no labels.
DOC_TEMPLATE = "{title} {category} {brand} {tags} {description}"


def item_text(template: str, conf_key: str = "encoder.item_template") -> Column:
    """The item text column for a template such as ``"{title}. Brand: {brand}"``.

    Raises:
        ConfigError: The template is malformed or names a field that items do not have
            (the message names ``conf_key``).
    """
    parts: list[Column] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{conf_key} is not a valid template: {exc}") from None
    for literal, field, _spec, _conv in parsed:
        if literal:
            parts.append(F.lit(literal))
        if field is not None:
            if field not in TEMPLATE_FIELDS:
                raise ConfigError(f"{conf_key} uses {{{field}}}; fields: {', '.join(TEMPLATE_FIELDS)}")
            parts.append(F.coalesce(TEMPLATE_FIELDS[field]().cast("string"), F.lit("")))
    text = F.concat(*parts) if parts else F.lit("")
    return F.trim(F.regexp_replace(text, r"\s+", " "))


def token_stages(input_col: str, output_col: str) -> list:
    """Tokeniser and stop-word remover shared by topics and keywords (letters only, >= 3 chars)."""
    return [RegexTokenizer(inputCol=input_col, outputCol="_tokens", pattern=r"[^\p{L}]+", minTokenLength=3,
                           toLowercase=True),
            StopWordsRemover(inputCol="_tokens", outputCol=output_col)]
