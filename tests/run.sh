#!/usr/bin/env bash
# Install CastRay's test dependencies into .venv and run the suite twice: on the default
# settings (SQLite, in-memory channel layer) and on PostgreSQL + Redis. With CI=true the
# PostgreSQL + Redis run is required; elsewhere it runs when those services answer.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-dev.txt

pg_url=${CASTRAY_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
redis_url=${CASTRAY_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}

echo "== CastRay tests: default settings (SQLite, in-memory channel layer)"
env -u DATABASE_URL -u REDIS_URL .venv/bin/python -m pytest "$@"

if .venv/bin/python - "$pg_url" "$redis_url" <<'PY'
import sys
import psycopg
import redis
try:
    psycopg.connect(sys.argv[1].replace("postgres://", "postgresql://"), connect_timeout=3).close()
    redis.Redis.from_url(sys.argv[2], socket_connect_timeout=3).ping()
except Exception as exc:
    print(f"   services not answering: {exc}")
    sys.exit(1)
PY
then
  echo "== CastRay tests: PostgreSQL ($pg_url) + Redis ($redis_url)"
  DATABASE_URL=$pg_url REDIS_URL=$redis_url .venv/bin/python -m pytest "$@"
elif [ "${CI:-}" = "true" ]; then
  echo "FAILED: CI requires the PostgreSQL + Redis variant, and the services did not answer" >&2
  exit 1
else
  echo "NOT RUN: the PostgreSQL + Redis variant (services did not answer; CI=true makes this an error)"
fi
