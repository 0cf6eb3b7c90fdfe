"""Importers on small files written here in each public format, then through the clean stage."""
import gzip
import json
import subprocess
import sys

import pytest

from jobs.common.config import load_config
from jobs.common.errors import InputError
from jobs.common.runner import run_stage
from jobs.importers import import_amazon, import_movielens


def _parse(line):
    try:
        return json.loads(line)
    except ValueError:
        return line          # a bad source line, kept for the clean stage to quarantine


def _read(folder):
    return [_parse(line) for p in sorted(folder.glob("part-*.jsonl")) for line in p.read_text().splitlines()]


def _ml100k(d):
    d.mkdir()
    (d / "u.data").write_text("1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t4\t891717742\nbroken line\n")
    genres = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
              "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
    (d / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(genres)))
    flags = lambda on: "|".join("1" if g in on else "0" for g in genres)  # noqa: E731
    (d / "u.item").write_bytes((f"10|Amélie (2001)|01-Jan-2001||http://x|{flags({'Comedy', 'Romance'})}\n"
                                f"20|Heat (1995)|01-Jan-1995||http://y|{flags({'Crime'})}\n").encode("latin-1"))


def test_movielens_100k_latin1_ratings_and_genres(tmp_path):
    _ml100k(tmp_path / "ml-100k")
    m = import_movielens(tmp_path / "ml-100k", tmp_path / "out")
    events, items = _read(tmp_path / "out" / "events"), _read(tmp_path / "out" / "items")
    rates = [e for e in events if isinstance(e, dict) and e.get("event_type") == "rate"]
    assert len(rates) == 3 and m["counts"] == {"rate": 3, "bad_lines_u.data": 1}
    assert rates[0] == {"event_id": "r-1-10-881250949", "user_id": "1", "item_id": "10", "event_type": "rate",
                        "ts": "881250949", "rating": 5.0, "review_text": None}
    amelie = next(i for i in items if i["item_id"] == "10")
    assert amelie["title"] == "Amélie (2001)" and amelie["category"] == "Comedy" and amelie["tags"] == "Comedy|Romance"
    assert "from 2001" in amelie["description"]
    assert m["first_date"] == "1997-12-04" and m["settings"]["clean.window_days"] == 122


def test_movielens_1m_double_colon_latin1(tmp_path):
    d = tmp_path / "ml-1m"
    d.mkdir()
    (d / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n")
    (d / "movies.dat").write_bytes("1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
                                   "661::Ça (1996)::Animation|Children's|Musical\n".encode("latin-1"))
    (d / "users.dat").write_text("1::F::1::10::48067\n")
    m = import_movielens(d, tmp_path / "out")
    items = {i["item_id"]: i for i in _read(tmp_path / "out" / "items")}
    assert items["661"]["title"] == "Ça (1996)" and items["661"]["tags"] == "Animation|Children's|Musical"
    assert m["counts"]["rate"] == 2 and m["counts"]["users_listed"] == 1 and m["source"] == "movielens/ml-1m"


def test_movielens_latest_tags_become_user_text_and_item_tags(tmp_path):
    d = tmp_path / "ml-latest-small"
    d.mkdir()
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n2,1,0.5,964982224\n")
    (d / "movies.csv").write_text('movieId,title,genres\n1,"Toy Story (1995)",Adventure|Animation|Comedy\n'
                                  "2,Jumanji (1995),(no genres listed)\n")
    (d / "tags.csv").write_text("userId,movieId,tag,timestamp\n2,1,pixar,1445714994\n3,1,Pixar,1445714995\n"
                                "3,1,fun,1445714996\n")
    m = import_movielens(d, tmp_path / "out")
    events = _read(tmp_path / "out" / "events")
    tags = [e for e in events if e["event_type"] == "review"]
    assert [t["review_text"] for t in tags] == ["pixar", "Pixar", "fun"] and all(t["rating"] is None for t in tags)
    items = {i["item_id"]: i for i in _read(tmp_path / "out" / "items")}
    assert items["1"]["tags"] == "Adventure|Animation|Comedy|pixar|fun"
    assert items["2"]["category"] is None and items["2"]["tags"] == ""
    assert m["settings"]["clean.rating_min"] == 0.5      # half-star ratings are kept


def test_amazon_gzip_reviews_with_python_literal_metadata(tmp_path):
    reviews = [
        {"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 1388534400,
         "reviewText": "Works great", "summary": "Love it"},
        {"reviewerID": "A2", "asin": "B01", "overall": 2.0, "unixReviewTime": 1388620800},
    ]
    src = tmp_path / "reviews.json.gz"
    with gzip.open(src, "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in reviews) + "\n{not json\n")
    meta = tmp_path / "meta.json"
    meta.write_text(str({"asin": "B01", "title": "Kettle", "categories": [["Home", "Kitchen", "Kettles"]],
                         "brand": "Acme", "price": "$12.99", "description": ["Boils", "water"]}) + "\n"
                    + json.dumps({"asin": "B02", "title": "Pan", "category": ["Home", "Pans"], "price": 20}) + "\n")
    m = import_amazon(src, tmp_path / "out", meta)
    events = _read(tmp_path / "out" / "events")
    assert events[2] == "{not json"
    assert events[0]["event_type"] == "review" and events[0]["review_text"] == "Love it. Works great"
    assert events[1]["event_type"] == "rate" and events[1]["rating"] == 2.0
    assert m["counts"] == {"review": 1, "rate": 1, "bad_lines_reviews": 1}
    items = {i["item_id"]: i for i in _read(tmp_path / "out" / "items")}
    assert items["B01"] == {"item_id": "B01", "title": "Kettle", "category": "Kettles", "brand": "Acme", "price": 12.99,
                            "description": "Boils water", "tags": "Home|Kitchen|Kettles", "updated_at": None}
    assert items["B02"]["price"] == 20.0 and items["B02"]["category"] == "Pans"
    with pytest.raises(InputError, match="meta"):
        import_amazon(src, tmp_path / "out2", tmp_path / "missing.json")


def test_imported_movielens_goes_through_clean(spark, tmp_path):
    _ml100k(tmp_path / "ml-100k")
    m = import_movielens(tmp_path / "ml-100k", tmp_path / "out")
    overrides = [f"{k}={v}" for k, v in m["settings"].items()] + [f"lake.root={tmp_path / 'lake'}"]
    cfg = load_config(overrides=overrides)
    import datetime as dt

    s = run_stage(spark, cfg, "clean", dt.date.fromisoformat(m["run_date"]), "import-test")
    assert s["events"]["raw"] == 4 and s["events"]["clean"] == 3
    assert s["events"]["by_reason"] == {"malformed_record": 1}       # the broken line, quarantined with a reason
    assert s["items"]["clean"] == 2 and s["events"]["identity_holds"]


def test_import_cli(tmp_path):
    _ml100k(tmp_path / "ml-100k")
    out = subprocess.run([sys.executable, "-m", "jobs.cli", "import", "movielens", str(tmp_path / "ml-100k"),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "3 events" not in out.stdout and "4 events and 2 items" in out.stdout
    assert "recjobs nightly --date 1998-04-04" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "jobs.cli", "import", "movielens", str(tmp_path),
                          "--out", str(tmp_path / "o2")], capture_output=True, text=True)
    assert bad.returncode == 2 and "u.data, ratings.dat or ratings.csv" in bad.stderr
