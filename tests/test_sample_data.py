import hashlib
import json

import pyarrow.parquet as pq
import pytest

from jobs.sample_data import FAULT_KINDS_EVENTS, FAULT_KINDS_ITEMS, FaultRates, SampleSpec, generate


def _digest(folder):
    """Hashes of the data files (recjobs.yaml names the folder, so it differs between folders)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "recjobs.yaml"}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    spec = dict(users=60, items=48, days=4)
    generate(tmp_path / "a", SampleSpec(seed=7, **spec))
    generate(tmp_path / "b", SampleSpec(seed=7, **spec))
    generate(tmp_path / "c", SampleSpec(seed=8, **spec))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_every_fault_kind_is_planted_by_default(tmp_path):
    truth = generate(tmp_path, SampleSpec(users=200, items=150, days=5, seed=3))
    for kind in FAULT_KINDS_EVENTS:
        assert truth["faults"]["events"].get(kind, 0) > 0, kind
    assert truth["faults"]["events"]["bot_user"] > 0
    for kind in FAULT_KINDS_ITEMS:
        assert truth["faults"]["items"].get(kind, 0) > 0, kind
    raw = (tmp_path / "events" / "part-00000.jsonl").read_bytes()
    assert b"\xff\xfe" in raw                                   # invalid UTF-8 on disk
    assert "😀".encode() in raw or any(e.encode() in raw for e in "🔥👍🏃⛺🎧📚🌱💯")
    # every planted fault that the clean stage rejects maps onto one of the clean stage's own codes
    from jobs.clean_events import EVENT_REASONS, ITEM_REASONS

    planted = set(truth["faults"]["events"]) | set(truth["faults"]["items"])
    rejected = {k for k in planted if k in truth["expected_reason"]}
    assert rejected and {truth["expected_reason"][k] for k in rejected} <= set(EVENT_REASONS) | set(ITEM_REASONS)
    for kind in set(truth["faults"]["items"]) & rejected:
        assert truth["expected_reason"][kind] in ITEM_REASONS, kind


def test_planted_structure_users_follow_their_topics(tmp_path):
    truth = generate(tmp_path, SampleSpec(users=80, items=60, days=3, seed=5))
    topics = [t["name"] for t in truth["topics"]]
    events = [json.loads(line) for line in (tmp_path / "events" / "part-00000.jsonl").read_bytes().splitlines()
              if line.startswith(b"{") and line.endswith(b"}") and b"\xff" not in line]
    hits = total = 0
    for ev in events:
        user = truth["users"].get(ev.get("user_id") or "")
        topic = truth["item_topics"].get(ev.get("item_id") or "")
        if user and topic:
            total += 1
            pref = user["start_pref"]
            hits += pref[topics.index(topic)] >= sorted(pref)[-2]   # one of the user's top-2 topics
    assert total > 500 and hits / total > 0.6
    # reviews match ratings
    rated = [e for e in events if e.get("event_type") == "rate" and e.get("review_text")]
    assert any("love" in e["review_text"].lower() or "fantastic" in e["review_text"].lower() for e in rated if e["rating"] >= 4)
    terrible = [e for e in rated if "terrible" in e["review_text"].lower()]
    assert terrible and all(e["rating"] <= 2 for e in terrible)


def test_csv_and_parquet_formats(tmp_path):
    generate(tmp_path / "csv", SampleSpec(users=30, items=24, days=2, fmt="csv"))
    header = (tmp_path / "csv" / "events" / "part-00000.csv").read_text(errors="replace").splitlines()[0]
    assert header == "event_id,user_id,item_id,event_type,ts,rating,review_text"
    truth = generate(tmp_path / "pq", SampleSpec(users=30, items=24, days=2, fmt="parquet"))
    table = pq.read_table(tmp_path / "pq" / "events" / "part-00000.parquet")
    assert table.num_rows == truth["raw_event_rows"]
    assert "malformed_json" not in truth["faults"]["events"]      # not representable in Parquet


def _repeat_view_share(folder) -> float:
    """Share of views of an item the same user viewed earlier and has not bought since."""
    events = sorted((json.loads(line) for line in (folder / "events" / "part-00000.jsonl").read_bytes().splitlines()),
                    key=lambda e: (e["user_id"], e["event_id"]))   # ids follow generation order
    open_items, repeats, views = set(), 0, 0
    for ev in events:
        key = (ev["user_id"], ev["item_id"])
        if ev["event_type"] == "view":
            views += 1
            repeats += key in open_items
            open_items.add(key)
        elif ev["event_type"] == "purchase":
            open_items.discard(key)
    return repeats / views


def test_planted_revisits_of_engaged_unbought_items(tmp_path):
    spec = dict(users=40, items=600, days=6, seed=3, faults=FaultRates.none())
    truth = generate(tmp_path / "with", SampleSpec(revisit_rate=0.3, **spec))
    generate(tmp_path / "without", SampleSpec(revisit_rate=0.0, **spec))
    assert truth["revisit"] == {"rate": 0.3, "half_life_days": 2.0}
    with_, without = _repeat_view_share(tmp_path / "with"), _repeat_view_share(tmp_path / "without")
    # measured: 0.30 against 0.06 (a large catalogue: repeats by chance are rare)
    assert with_ > without + 0.15 and without < 0.1, (with_, without)


def _seconds(value):
    """An event's time in epoch seconds, whichever of the sample's formats it has (None: unparseable)."""
    import datetime as dt

    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.isdigit():
        return int(value) / 1000.0
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@pytest.mark.parametrize("shape,users,items,days", [("ratings", 150, 200, 150), ("reviews", 400, 200, 730)])
def test_new_arrivals_are_touched_only_once_out_and_most_while_new(tmp_path, shape, users, items, days):
    import datetime as dt

    truth = generate(tmp_path, SampleSpec(shape=shape, users=users, items=items, days=days, seed=4))
    released = {i: dt.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() for i, t in truth["released"].items()}
    assert 0.1 * items <= len(released) <= 0.2 * items
    end = dt.datetime.combine(dt.date.fromisoformat(truth["end_date"]) + dt.timedelta(days=1), dt.time(),
                              tzinfo=dt.timezone.utc).timestamp()
    bots = set(truth["fault_ids"]["bot_users"])
    fresh = late = 0
    fresh_days = late_days = 0.0
    window = 2 * truth["novelty_half_life_days"] * 86400.0
    for line in (tmp_path / "events" / "part-00000.jsonl").read_bytes().splitlines():
        if not (line.startswith(b"{") and line.endswith(b"}")) or b"\xff" in line:
            continue
        ev = json.loads(line)
        when, item = _seconds(ev.get("ts")), ev.get("item_id")
        if item not in released or ev.get("user_id") in bots or when is None or when > end:
            continue
        # never before its release (reviews are dated to the day of it)
        assert when >= released[item] - 86400.0, (item, when, released[item])
        fresh += when < released[item] + window
        late += when >= released[item] + window
    for when in released.values():
        fresh_days += min(window, max(0.0, end - when)) / 86400.0
        late_days += max(0.0, end - when - window) / 86400.0
    assert fresh + late > 10 * len(released) ** 0.5
    # a release draws attention while new: more events a day in its first weeks than later
    assert fresh / fresh_days > 1.5 * late / late_days
