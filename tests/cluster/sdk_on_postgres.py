#!/usr/bin/env python3
"""The official SDK compatibility tests against a palaver whose stores are in PostgreSQL.

Starts a private PostgreSQL (pg_fixture.py), and for each compat script given (default:
identity, rooms, chat) a fresh database and a palaver.toml with `[cluster] postgres_url`,
passed to the script's server through PALAVER_CONFIG; runs the script unchanged, then checks
that the rows it made are in PostgreSQL (so the run did use it). Exits non-zero on a failure.

Usage: sdk_on_postgres.py --binary PATH [--python PY] [script ...]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

from pg_fixture import private_postgres

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SDK_DIR = os.path.join(ROOT, "tests", "sdk")

# What must be in PostgreSQL after each script (table: at least one row), so the run did use
# it: rooms and chat rows (the scripts leave some rooms and threads behind), and the events
# service's signing key. schema_migrations holds every component's steps once the server
# opened its stores.
EXPECTED_ROWS = {
    "identity_compat.py": ["identities", "token_revocations", "settings", "events_settings", "schema_migrations"],
    "rooms_compat.py": ["rooms", "room_participants", "settings", "schema_migrations"],
    "chat_compat.py": ["identities", "settings", "chat_threads", "chat_participants", "chat_messages", "chat_repeatability"],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("scripts", nargs="*", default=["identity_compat.py", "rooms_compat.py", "chat_compat.py"])
    args = parser.parse_args()
    failed = []
    with private_postgres() as pg:
        print(f"private PostgreSQL on 127.0.0.1:{pg.port}")
        for script in args.scripts:
            database = pg.fresh_database()
            with tempfile.NamedTemporaryFile("w", suffix=".toml", prefix="palaver-pg-", delete=False) as cfg:
                cfg.write(f'[cluster]\npostgres_url = "{pg.url(database)}"\nnode_id = "sdk-node"\n')
            env = {**os.environ, "PALAVER_CONFIG": cfg.name, "PALAVER_BIN": args.binary}
            started = time.time()
            print(f"== {script} on PostgreSQL (database {database})", flush=True)
            rc = subprocess.run([args.python, os.path.join(SDK_DIR, script), "--binary", args.binary], env=env, cwd=SDK_DIR).returncode
            os.unlink(cfg.name)
            missing = [t for t in EXPECTED_ROWS.get(script, []) if int(pg.scalar(database, f"SELECT COUNT(*) FROM {t}")) == 0]
            if rc != 0:
                failed.append(f"{script}: exit {rc}")
            elif missing:
                failed.append(f"{script}: no rows in PostgreSQL table(s) {', '.join(missing)}")
            counts = ", ".join(f"{t}={pg.scalar(database, f'SELECT COUNT(*) FROM {t}')}" for t in EXPECTED_ROWS.get(script, []))
            print(f"== {script}: exit {rc} in {time.time() - started:.1f} s; PostgreSQL rows: {counts}", flush=True)
    if failed:
        print("FAIL: " + "; ".join(failed), file=sys.stderr)
        sys.exit(1)
    print(f"all {len(args.scripts)} SDK compatibility scripts passed on PostgreSQL")


if __name__ == "__main__":
    main()
