"""Column-name constants shared by every job. Functions take ``col_user=...`` style keyword
arguments defaulting to these."""

EVENT_ID = "event_id"
USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TYPE = "event_type"
TS = "ts"                    # raw timestamp: ISO-8601 string or epoch seconds/milliseconds
EVENT_TS = "event_ts"        # parsed timestamp, UTC
EVENT_DATE = "event_date"    # UTC date of event_ts; partition column of events_clean
RATING = "rating"
REVIEW_TEXT = "review_text"
SESSION_ID = "session_id"

TITLE = "title"
CATEGORY = "category"
BRAND = "brand"
PRICE = "price"
DESCRIPTION = "description"
TAGS = "tags"
UPDATED_AT = "updated_at"

DS = "ds"                    # run date (YYYY-MM-DD as a DATE)
RUN_ID = "run_id"
STAGE = "stage"
SOURCE = "source"
SOURCE_FILE = "source_file"
REASON = "reason"
RAW_RECORD = "raw_record"
RAW_BYTES = "raw_bytes"
TEXT_TRUNCATED = "text_truncated"
INGESTED_AT = "ingested_at"
QUARANTINED_AT = "quarantined_at"

# Raw-side helper columns added while reading (never written to clean tables).
CORRUPT = "_corrupt_record"

EVENT_TYPES = ("view", "click", "cart", "purchase", "rate", "review")

# The user id of the default list in recommendations: what a service shows a user nobody knows
# (no history at all). Raw events under this id are quarantined (reserved_user_id).
DEFAULT_USER = "__default__"
