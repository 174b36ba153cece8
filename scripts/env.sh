# Sourced by the scripts: where the database and the build output are.
# The build directory lives outside the checkout so that CI's fresh clone reuses it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/kodo-access-target}"
if [ -z "${DATABASE_URL:-}" ]; then
  if psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
  else
    export DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/postgres"
  fi
fi
