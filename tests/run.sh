#!/usr/bin/env bash
# Install CastRay's test dependencies into .venv and run the suite twice: on the default
# settings (SQLite, in-memory channel layer) and on PostgreSQL + Redis. With CI=true the
# PostgreSQL + Redis run is required; elsewhere it runs when those services answer.
# Both variants always run (a failure in the first must not hide the second); a summary line
# per variant ends the output and the exit status is non-zero if either failed.
# The second variant leaves out what touches neither the database nor the channel layer: the
# data plane's unit tests, the browser, and the tests that start CastRay as a process of its
# own (the client's, the README's, the multi-node, multi-host (`netns`) and cluster-switch
# ones, the live server's): those servers keep their own SQLite data directory whatever the
# variant. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-dev.txt

pg_url=${CASTRAY_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
redis_url=${CASTRAY_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
summary=()
failed=0

default_name="default settings (SQLite, in-memory channel layer)"
echo "== CastRay tests: $default_name"
if env -u DATABASE_URL -u REDIS_URL .venv/bin/python -m pytest "$@"; then
  summary+=("passed   $default_name")
else
  summary+=("FAILED   $default_name")
  failed=1
fi

pg_name="PostgreSQL ($pg_url) + Redis ($redis_url)"
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
  echo "== CastRay tests: $pg_name"
  if DATABASE_URL=$pg_url REDIS_URL=$redis_url .venv/bin/python -m pytest \
    -m "not unit and not browser and not netns" --ignore=tests/client --ignore=tests/test_readme.py \
    --ignore=tests/test_multinode.py --ignore=tests/test_cluster_switch.py \
    --ignore=tests/test_live_server.py --ignore=tests/test_e2e_server.py "$@"; then
    summary+=("passed   $pg_name")
  else
    summary+=("FAILED   $pg_name")
    failed=1
  fi
elif [ "${CI:-}" = "true" ]; then
  summary+=("FAILED   $pg_name: CI requires this variant, and the services did not answer")
  failed=1
else
  summary+=("NOT RUN  $pg_name: the services did not answer (CI=true makes this an error)")
fi

echo "== Summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
