"""Database outages: a killed backend is replaced transparently; a database that is down gives
503 with a `detail`, and stored recovers by itself when it comes back."""
import os
import sys

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402


def _pg_ctl(cluster, *args):
    return cluster._run("pg_ctl", "-D", cluster.datadir, *args, check=False)


def test_killed_backends_reconnect_transparently(pg):
    url = pg.create_database("outage_kill")
    s = harness.start_stored(url)
    try:
        api = s.url + "/v1/agl"
        assert requests.post(api + "/queues/rollouts/enqueue",
                             json={"rollouts": [{"input": 1}]}).status_code == 201
        pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = 'outage_kill' AND pid <> pg_backend_pid()")
        for _ in range(5):  # every pooled connection that died is re-made on first use
            r = requests.get(api + "/rollouts")
            assert r.status_code == 200, r.text
            assert r.json()["total"] == 1
    finally:
        s.stop()


def test_database_down_503_then_recovers():
    with harness.PgCluster() as cluster:
        url = cluster.create_database("outage_down")
        s = harness.start_stored(url)
        try:
            api = s.url + "/v1/agl"
            assert requests.get(api + "/rollouts").status_code == 200
            _pg_ctl(cluster, "-m", "fast", "-w", "stop")  # clean: scratch clusters run without fsync
            r = requests.get(api + "/rollouts", timeout=30)
            assert r.status_code == 503
            assert r.headers["Content-Type"].startswith("application/json")
            assert "database unavailable" in r.json()["detail"]
            # health does not touch the database: the process is up, the database is not
            assert requests.get(api + "/health").status_code == 200
            cluster.started = False
            opts = (f"-c listen_addresses='' -c unix_socket_directories='{cluster.dir}' "
                    f"-c port={cluster.port} -c fsync=off")
            _pg_ctl(cluster, "-o", opts, "-l", os.path.join(cluster.dir, "server.log"), "-w",
                    "start")
            cluster.started = True
            r = requests.post(api + "/queues/rollouts/enqueue", json={"rollouts": [{"input": 2}]})
            assert r.status_code == 201, r.text
            assert requests.get(api + "/rollouts").json()["total"] == 1
            assert s.alive()
        finally:
            assert s.stop() == 0
