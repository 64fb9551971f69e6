"""Writes stored holds back and pipelines with COMMIT (stored/db.c, db_exec_deferred): when one
of them fails, the request fails with a `detail` and nothing of it remains — the same outcome
as when each write was sent on its own. The failure is injected with a trigger on the real
database, on the rollouts UPDATE that update_attempt(succeeded) holds back."""
from __future__ import annotations

import requests

import harness


def test_failing_held_write_rolls_back_the_whole_request(pg):
    url = pg.create_database("held_writes")
    dbname = "held_writes"
    s = harness.start_stored(url)
    try:
        api = s.url + "/v1/agl"
        ro = requests.post(api + "/rollouts", json={"input": {"q": 1}}).json()
        rid, aid = ro["rollout_id"], ro["attempt"]["attempt_id"]
        pg.psql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " RAISE EXCEPTION 'refused by the test'; END $$;"
                " CREATE TRIGGER refuse BEFORE UPDATE OF status ON rollouts FOR EACH ROW"
                " WHEN (NEW.status = 'succeeded') EXECUTE FUNCTION refuse()", dbname)
        r = requests.post(f"{api}/rollouts/{rid}/attempts/{aid}", json={"status": "succeeded"})
        assert r.status_code == 500, r.text
        assert "refused by the test" in r.json()["detail"]
        # the attempt UPDATE sent before it in the same pipeline was rolled back too
        a = requests.get(f"{api}/rollouts/{rid}/attempts/latest").json()
        assert a["status"] == "preparing" and a["end_time"] is None
        assert requests.get(f"{api}/rollouts/{rid}").json()["status"] == "preparing"
        # the connections stay usable, and without the trigger the same request goes through
        pg.psql("DROP TRIGGER refuse ON rollouts", dbname)
        for _ in range(4):
            assert requests.get(api + "/rollouts").status_code == 200
        r = requests.post(f"{api}/rollouts/{rid}/attempts/{aid}", json={"status": "succeeded"})
        assert r.status_code == 200, r.text
        assert requests.get(f"{api}/rollouts/{rid}").json()["status"] == "succeeded"
    finally:
        s.stop()


def test_start_rollout_in_one_round_trip_fails_whole(pg):
    """start_rollout sends its INSERTs (rollout with the latest resources looked up in SQL, attempt
    1, worker) held back together with COMMIT and reads the INSERT's result only after it: a
    failure of the last of them leaves no rollout, and the response's resources id is the one
    the INSERT stored."""
    url = pg.create_database("held_start")
    dbname = "held_start"
    s = harness.start_stored(url)
    try:
        api = s.url + "/v1/agl"
        ro = requests.post(api + "/rollouts", json={"input": 1}).json()
        assert ro["resources_id"] is None and ro["attempt"]["sequence_id"] == 1
        res = requests.post(api + "/resources", json={}).json()
        ro = requests.post(api + "/rollouts", json={"input": 2, "worker_id": "w-1"}).json()
        assert ro["resources_id"] == res["resources_id"]
        assert requests.get(f"{api}/rollouts/{ro['rollout_id']}").json()["resources_id"] == \
            res["resources_id"]
        got = requests.get(f"{api}/rollouts/{ro['rollout_id']}/attempts/latest").json()
        assert got["sequence_id"] == 1 and got["attempt_id"] == ro["attempt"]["attempt_id"]
        ro = requests.post(api + "/rollouts", json={"input": 3, "resources_id": "rs-x"}).json()
        assert ro["resources_id"] == "rs-x"

        pg.psql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " RAISE EXCEPTION 'worker refused by the test'; END $$;"
                " CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON workers FOR EACH ROW"
                " WHEN (NEW.worker_id = 'w-bad') EXECUTE FUNCTION refuse()", dbname)
        before = requests.get(api + "/statistics").json()
        r = requests.post(api + "/rollouts", json={"input": 4, "worker_id": "w-bad"})
        assert r.status_code == 500, r.text
        assert "worker refused by the test" in r.json()["detail"]
        after = requests.get(api + "/statistics").json()
        assert after.get("total_rollouts") == before["total_rollouts"], after
        assert after["total_attempts"] == before["total_attempts"]
        r = requests.post(api + "/rollouts", json={"input": 5, "worker_id": "w-2"})
        assert r.status_code == 201, r.text
        assert r.json()["resources_id"] == res["resources_id"]
    finally:
        s.stop()
