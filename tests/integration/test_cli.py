"""Command-line surface of the three daemons: --help, --version, bad options (exit 2)."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("AGL_BUILD", "build"), "bin")
DAEMONS = ["stored", "runnerd", "trainerd"]


def run(name, *args, env=None):
    return subprocess.run([os.path.join(BUILD, name), *args], capture_output=True, text=True,
                          timeout=30, env=env)


@pytest.mark.parametrize("name", DAEMONS)
def test_help(name):
    p = run(name, "--help")
    assert p.returncode == 0
    assert p.stdout.startswith(f"usage: {name}")
    assert "--version" in p.stdout and "--log-format" in p.stdout


@pytest.mark.parametrize("name", DAEMONS)
def test_version(name):
    p = run(name, "--version")
    assert p.returncode == 0
    assert p.stdout.startswith(f"{name} (agl) ")


@pytest.mark.parametrize("name", DAEMONS)
def test_unknown_option_is_one_line_exit_2(name):
    p = run(name, "--no-such-option")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "--no-such-option" in lines[0]


def test_stored_bad_values_exit_2():
    p = run("stored", "--db-pool", "many")
    assert p.returncode == 2 and "integer" in p.stderr
    p = run("stored", "--log-format", "xml")
    assert p.returncode == 2 and "xml" in p.stderr


def test_stored_help_lists_every_option_with_env():
    out = run("stored", "--help").stdout
    for opt, env in [("--listen", "AGL_STORE_LISTEN"), ("--db", "AGL_STORE_DB"),
                     ("--data-dir", "AGL_STORE_DATA_DIR"), ("--threads", "AGL_STORE_THREADS"),
                     ("--db-pool", "AGL_STORE_DB_POOL"), ("--max-body", "AGL_STORE_MAX_BODY"),
                     ("--log-format", "AGL_STORE_LOG_FORMAT")]:
        assert opt in out and env in out


def test_env_value_is_validated():
    env = dict(os.environ, AGL_STORE_THREADS="lots")
    p = run("stored", env=env)
    assert p.returncode == 2 and "AGL_STORE_THREADS" in p.stderr


def test_trainerd_needs_an_algorithm():
    p = run("trainerd")
    assert p.returncode == 2 and "expected a subcommand" in p.stderr
    assert all(name in p.stderr for name in ("apo", "rl", "sft"))
