#!/usr/bin/env bash
# Sourced by scripts/test.sh: makes sure the PostgreSQL tests have a server.
#
# The server at JOBDECK_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test)
# is used when it answers. Otherwise a throwaway cluster is started: Debian's
# `postgresql` package (installed when missing), `initdb` in a temporary folder, a free
# port on 127.0.0.1, trust authentication, stopped and removed when the tests end.
# When none can be had, JOBDECK_REQUIRE_PG=1 (set by .ci/run) fails the run with a
# sentence; without it the tests run and the PostgreSQL ones say they were left out.
#
# Sets JOBDECK_TEST_DATABASE_URL, PG_THROWAWAY_DIR (empty when none was started) and
# the function pg_stop_throwaway.

PG_URL="${JOBDECK_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
PG_THROWAWAY_DIR=""

pg_answers() { # pg_answers HOST PORT
  timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

pg_stop_throwaway() {
  if [[ -n "$PG_THROWAWAY_DIR" && -d "$PG_THROWAWAY_DIR/data" ]]; then
    pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_THROWAWAY_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_THROWAWAY_DIR"
  fi
}

# PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user.
pg_as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_find_bin() {
  local initdb
  initdb="$(command -v initdb 2>/dev/null || true)"
  [[ -n "$initdb" ]] || initdb="$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$initdb" ]] && dirname "$(readlink -f "$initdb")"
}

pg_start_throwaway() {
  PG_BIN="$(pg_find_bin || true)"
  if [[ -z "$PG_BIN" ]]; then
    if [[ "$(id -u)" != 0 ]]; then
      echo "no PostgreSQL programs (initdb) on this machine, and only root can install Debian's postgresql" >&2
      return 1
    fi
    echo "== PostgreSQL tests: installing Debian's postgresql for a throwaway server"
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; } \
      >"${TMPDIR:-/tmp}/jobdeck-pg-install.log" 2>&1 || {
      tail -n 20 "${TMPDIR:-/tmp}/jobdeck-pg-install.log" >&2
      return 1
    }
    PG_BIN="$(pg_find_bin || true)"
    [[ -n "$PG_BIN" ]] || return 1
  fi
  if [[ "$(id -u)" == 0 ]] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres || return 1
  fi
  local port=""
  for candidate in $(seq 55432 55532); do
    if ! pg_answers 127.0.0.1 "$candidate"; then
      port="$candidate"
      break
    fi
  done
  [[ -n "$port" ]] || { echo "no free port for a throwaway PostgreSQL" >&2; return 1; }
  PG_THROWAWAY_DIR="$(mktemp -d "${TMPDIR:-/tmp}/jobdeck-pg.XXXXXX")"
  [[ "$(id -u)" == 0 ]] && chown postgres "$PG_THROWAWAY_DIR"
  # The server writes its own log (as its owner); this shell writes the rest beside it.
  local log="$PG_THROWAWAY_DIR/setup.log"
  if ! pg_as_owner "$PG_BIN/initdb" -D "$PG_THROWAWAY_DIR/data" -U postgres --auth=trust -E UTF8 >"$log" 2>&1 ||
    ! pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_THROWAWAY_DIR/data" -l "$PG_THROWAWAY_DIR/server.log" -w -t 60 \
      -o "-p $port -k $PG_THROWAWAY_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" \
      start >>"$log" 2>&1 ||
    ! pg_as_owner "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres test >>"$log" 2>&1; then
    tail -n 20 "$log" "$PG_THROWAWAY_DIR/server.log" >&2 2>/dev/null
    pg_stop_throwaway
    PG_THROWAWAY_DIR=""
    return 1
  fi
  PG_URL="postgres://postgres@127.0.0.1:$port/test"
}

read -r PG_HOST PG_PORT <<<"$(sed -E 's#^postgres(ql)?://([^@/]*@)?([^/:?]+)(:([0-9]+))?.*#\3 \5#' <<<"$PG_URL")"
if pg_answers "$PG_HOST" "${PG_PORT:-5432}"; then
  echo "== PostgreSQL tests: running against $PG_URL"
elif pg_start_throwaway; then
  echo "== PostgreSQL tests: no server at ${JOBDECK_TEST_DATABASE_URL:-the default address}; running against a throwaway one at $PG_URL"
elif [[ "${JOBDECK_REQUIRE_PG:-0}" == 1 ]]; then
  echo "JOBDECK_REQUIRE_PG=1, but no PostgreSQL answers at $PG_URL and no throwaway server could be started: the PostgreSQL tests cannot run, so this run fails" >&2
  exit 1
else
  echo "== PostgreSQL tests: no server at $PG_URL and none could be started; they will be left out (JOBDECK_REQUIRE_PG=1 makes that an error)"
fi
export JOBDECK_TEST_DATABASE_URL="$PG_URL"
