#!/usr/bin/env bash
# Make sure the services the integration tests use are there, without systemd.
#
# - PostgreSQL on 127.0.0.1:5432 with a role maint/maint that may CREATE DATABASE (the tests make
#   one database per test). Debian's cluster tools start it as a plain process.
# - nginx, docker-registry and skopeo are only checked: the tests start their own instances.
#
# Idempotent: a second run changes nothing. With CI=true a missing piece is an error (the
# integration layer must not skip there); elsewhere it is a warning and the tests skip.
set -euo pipefail

ci=false
case "${CI:-}" in 1 | true | TRUE | True | yes) ci=true ;; esac
problems=0

say() { echo "ensure-services: $*" >&2; }
lack() {  # what how
  problems=$((problems + 1))
  if $ci; then say "ERROR: $1 is missing: $2"; else say "warning: $1 is missing: $2 (tests needing it skip)"; fi
}

as_postgres() {  # run a command as the postgres OS user (peer authentication)
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  elif [ "$(id -un)" = postgres ]; then
    "$@"
  else
    sudo -n -u postgres -- "$@"
  fi
}
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n -- "$@"; fi
}

ensure_postgres() {
  if [ -n "${MAINT_TEST_POSTGRES_URL:-}" ]; then
    say "PostgreSQL: MAINT_TEST_POSTGRES_URL is set, not managing a local server"
    return
  fi
  if ! command -v pg_lsclusters >/dev/null; then
    lack "PostgreSQL" "apt-get install postgresql (or set MAINT_TEST_POSTGRES_URL)"
    return
  fi
  local version
  version=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1 || true)
  if [ -z "$version" ]; then
    lack "PostgreSQL server binaries" "apt-get install postgresql"
    return
  fi
  if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$version main"; then
    say "PostgreSQL: creating cluster $version/main"
    as_root pg_createcluster --port 5432 "$version" main >/dev/null || {
      lack "a PostgreSQL cluster" "pg_createcluster $version main failed (needs root)"
      return
    }
  fi
  if pg_isready -q -h 127.0.0.1 -p 5432; then
    say "PostgreSQL: already running on 127.0.0.1:5432"
  else
    say "PostgreSQL: starting cluster $version/main"
    # --skip-systemctl-redirect: there is no systemd here (containers, CI runners).
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    local i
    for i in $(seq 1 30); do
      pg_isready -q -h 127.0.0.1 -p 5432 && break
      sleep 0.5
    done
    pg_isready -q -h 127.0.0.1 -p 5432 || {
      lack "a running PostgreSQL" "see /var/log/postgresql/postgresql-$version-main.log"
      return
    }
  fi
  # Debian's default of 100 connections is tight when a test runs several `maint run`
  # processes, each with its own pool: raise it once (needs a restart), never lower it.
  local connections
  connections=$(as_postgres psql -p 5432 -tAc "SHOW max_connections" 2>/dev/null || echo 0)
  if [ "${connections:-0}" -lt 300 ] 2>/dev/null; then
    say "PostgreSQL: max_connections $connections -> 300 (restart)"
    as_postgres psql -p 5432 -qc "ALTER SYSTEM SET max_connections = 300" &&
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" main restart || true
    local i
    for i in $(seq 1 30); do
      pg_isready -q -h 127.0.0.1 -p 5432 && break
      sleep 0.5
    done
  fi
  local exists verb
  exists=$(as_postgres psql -p 5432 -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'maint'") || {
    lack "access to PostgreSQL as its superuser" "run as root (or postgres) once"
    return
  }
  # ALTER on an existing role re-asserts password and CREATEDB: repairs a hand-edited role.
  if [ "$exists" = 1 ]; then verb=ALTER; else verb=CREATE; fi
  if as_postgres psql -p 5432 -q -c "$verb ROLE maint WITH LOGIN CREATEDB PASSWORD 'maint'"; then
    say "PostgreSQL: role maint $([ "$verb" = CREATE ] && echo created || echo present) (password maint, CREATEDB)"
  else
    lack "the PostgreSQL role maint" "CREATE ROLE maint WITH LOGIN CREATEDB PASSWORD 'maint'"
  fi
}

check_binary() {  # name package
  if command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; then
    say "$1: present"
  else
    lack "$1" "apt-get install $2"
  fi
}

ensure_postgres
check_binary nginx nginx
check_binary docker-registry docker-registry
check_binary skopeo skopeo

if [ "$problems" -gt 0 ] && $ci; then
  say "$problems missing piece(s); CI=true, so this is fatal"
  exit 1
fi
exit 0
