"""How span documents are stored (migrations 0003, 0005 and 0006): in the row, lz4-compressed when a
row would exceed 4080 bytes and compression shrinks it below that, moved out of line (TOAST, whose
chunks fill their pages) when it does not — checked on the real database, with every document
read back byte-exact."""
from __future__ import annotations

import random
import string

import requests

import harness
from conftest import make_span


def test_span_documents_compressed_in_row_and_round_trip(pg):
    dbname = "span_storage"
    url = pg.create_database(dbname)
    s = harness.start_stored(url)
    try:
        api = s.url + "/v1/agl"
        ro = requests.post(api + "/rollouts", json={"input": 1}).json()
        rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
        col = pg.psql("SELECT attcompression, attstorage FROM pg_attribute WHERE attrelid ="
                      " 'spans'::regclass AND attname = 'doc'", dbname).split("|")
        lz4 = pg.psql("SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression'"
                      " AND 'lz4' = ANY(enumvals)", dbname).strip() == "1"
        assert col[0].strip() == ("l" if lz4 else "")  # 0003's type change had reset it
        assert col[1].strip() == "x"
        # the document is the only EXTENDED column: PostgreSQL would move the others out of
        # line first
        assert pg.psql("SELECT string_agg(attname, ',') FROM pg_attribute WHERE attrelid ="
                       " 'spans'::regclass AND attnum > 0 AND attstorage = 'x'",
                       dbname).strip() == "doc"
        assert "toast_tuple_target=4080" in pg.psql(
            "SELECT reloptions FROM pg_class WHERE relname = 'spans'", dbname)

        rng = random.Random(5)
        words = "the model called a tool and the tool returned a list of files".split()
        prose = " ".join(rng.choice(words) for _ in range(1500))  # ~7 KB, compresses well
        alnum = string.ascii_letters + string.digits
        noise = "".join(rng.choices(alnum, k=300_000))
        otlp_like = "".join(rng.choices(alnum, k=4_600))  # the benchmark's OTLP span
        spans = {
            "small": make_span(rid, aid, 1, "0000000000000001", attributes={"k": "v"}),
            "prose": make_span(rid, aid, 2, "0000000000000002", attributes={"text": prose}),
            "noise": make_span(rid, aid, 3, "0000000000000003", attributes={"blob": noise}),
            "otlp": make_span(rid, aid, 4, "0000000000000004", attributes={"a": otlp_like}),
        }
        for sp in spans.values():
            r = requests.post(api + "/spans", json=sp)
            assert r.status_code == 201, r.text
        rows = dict(line.split("|") for line in pg.psql(
            "SELECT span_id, coalesce(pg_column_compression(doc), '-') || ':' ||"
            " pg_column_size(doc) FROM spans", dbname).split())
        small, prose_row, noise_row, otlp_row = (rows[f"000000000000000{i}"].split(":")
                                                 for i in (1, 2, 3, 4))
        assert small[0] == "-"
        # compressed in the row, small enough that two such rows share a page
        assert prose_row[0] == ("lz4" if lz4 else "pglz") and int(prose_row[1]) < 4080
        # incompressible past the target: out of line, uncompressed — the 300 KB one and the
        # ~5 KB one alike (in the row it would have taken a page of its own)
        assert int(noise_row[1]) > 100_000 and 4_600 < int(otlp_row[1]) < 8_000
        toast = pg.psql("SELECT reltoastrelid::regclass FROM pg_class WHERE relname = 'spans'",
                        dbname).strip()
        assert int(pg.psql(f"SELECT count(DISTINCT chunk_id) FROM {toast}", dbname)) == 2
        got = requests.get(api + "/spans", params={"rollout_id": rid}).json()["items"]
        assert got == [spans["small"], spans["prose"], spans["noise"], spans["otlp"]]
    finally:
        s.stop()
