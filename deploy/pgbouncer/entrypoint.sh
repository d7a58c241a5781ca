#!/usr/bin/env bash
# PgBouncer in front of hpo's PostgreSQL: writes its configuration from the environment, then
# runs it in the foreground. Used by the compose profile "pgbouncer", by deploy/k8s and by
# tests/deploy/test_pgbouncer.py, so the configuration the tests check is the one that ships.
#
# Pool mode: transaction. A server connection is lent to a client for one transaction only,
# and hpo's transactions last milliseconds, so thousands of worker connections (2 per worker)
# share a pool of a few dozen server connections. hpo never uses session state that this would
# break: it turns off psycopg's server-side prepared statements (prepare_threshold=None, see
# hpo/storage.py) and its --total lock is a transaction-level advisory lock.
#
# Environment (DB_PASSWORD is required and never printed):
#   DB_HOST (postgres)  DB_PORT (5432)  DB_NAME (hpo)  DB_USER (hpo)  DB_PASSWORD
#   LISTEN_ADDR (0.0.0.0)  LISTEN_PORT (6432)
#   POOL_SIZE (20): server connections at most, for all workers together
#   MAX_CLIENT_CONN (1000): client connections accepted: 2 per worker process and 1 per
#                           `hpo worker`/`hpo launch` command, plus a few
#   CONFIG_DIR (/etc/pgbouncer/hpo): where the configuration is written
set -euo pipefail

: "${DB_PASSWORD:?set DB_PASSWORD (the PostgreSQL password of DB_USER)}"
DB_HOST="${DB_HOST:-postgres}"
DB_PORT="${DB_PORT:-5432}"
DB_NAME="${DB_NAME:-hpo}"
DB_USER="${DB_USER:-hpo}"
LISTEN_ADDR="${LISTEN_ADDR:-0.0.0.0}"
LISTEN_PORT="${LISTEN_PORT:-6432}"
POOL_SIZE="${POOL_SIZE:-20}"
MAX_CLIENT_CONN="${MAX_CLIENT_CONN:-1000}"
CONFIG_DIR="${CONFIG_DIR:-/etc/pgbouncer/hpo}"

for number in DB_PORT LISTEN_PORT POOL_SIZE MAX_CLIENT_CONN; do
  if ! [[ "${!number}" =~ ^[1-9][0-9]*$ ]]; then
    echo "pgbouncer: $number must be a positive whole number, not '${!number}'." >&2
    exit 2
  fi
done

umask 077  # the user list holds the password
mkdir -p "$CONFIG_DIR"
# auth_file format: "user" "password", with a double quote inside doubled.
printf '"%s" "%s"\n' "${DB_USER//\"/\"\"}" "${DB_PASSWORD//\"/\"\"}" > "$CONFIG_DIR/userlist.txt"
cat > "$CONFIG_DIR/pgbouncer.ini" <<INI
[databases]
; PgBouncer logs in to PostgreSQL with the password from the user list.
$DB_NAME = host=$DB_HOST port=$DB_PORT dbname=$DB_NAME user=$DB_USER

[pgbouncer]
listen_addr = $LISTEN_ADDR
listen_port = $LISTEN_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $CONFIG_DIR/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_db_connections = $POOL_SIZE
reserve_pool_size = 0
max_client_conn = $MAX_CLIENT_CONN
; libpq clients may send this at startup; PgBouncer would otherwise refuse them.
ignore_startup_parameters = extra_float_digits
INI

echo "pgbouncer: transaction pooling on $LISTEN_ADDR:$LISTEN_PORT -> $DB_HOST:$DB_PORT/$DB_NAME," \
     "$POOL_SIZE server connection(s), up to $MAX_CLIENT_CONN client(s)" >&2
exec pgbouncer "$CONFIG_DIR/pgbouncer.ini"
