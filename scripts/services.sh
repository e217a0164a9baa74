#!/usr/bin/env bash
# Turns on what Tidemark's sources need on this machine kind (PostgreSQL 15 and MariaDB 10.11 from
# Debian, started outside systemd) or on a plain Debian/Ubuntu host. Idempotent: run it as often as
# you like; it restarts a server only when a setting it needs actually changed.
#
#   PostgreSQL: wal_level=logical, enough replication slots and WAL senders, a SCRAM-authenticated
#               replication role `tidemark` (password `tidemark`, override with TIDEMARK_PG_PASSWORD),
#               pg_hba lines for replication connections.
#   MariaDB:    log_bin, binlog_format=ROW, binlog_row_image=FULL, binlog_row_metadata=FULL.
#
# Packages are installed with apt only where a command is missing.
set -euo pipefail

log() { printf 'services: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

PG_PASSWORD=${TIDEMARK_PG_PASSWORD:-tidemark}

ensure_packages() {
  local missing=()
  command -v psql >/dev/null || missing+=(postgresql postgresql-client)
  command -v mariadb >/dev/null || missing+=(mariadb-server mariadb-client)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
}

pg_cluster() {
  # The first (usually only) cluster: "15 main".
  pg_lsclusters -h | awk 'NR==1 {print $1, $2}'
}

pg_running() { pg_isready -h 127.0.0.1 -p 5432 -q; }

pg_start() {
  local ver name
  read -r ver name < <(pg_cluster)
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start 2>/dev/null \
    || as_root pg_ctlcluster "$ver" "$name" start
}

pg_restart() {
  local ver name
  read -r ver name < <(pg_cluster)
  log "restarting PostgreSQL $ver/$name"
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" restart 2>/dev/null \
    || as_root pg_ctlcluster "$ver" "$name" restart
}

psql_admin() { as_root su postgres -c "psql -X -q -v ON_ERROR_STOP=1 -At $*"; }

setup_postgres() {
  local ver name conf_dir changed=0
  read -r ver name < <(pg_cluster)
  conf_dir=/etc/postgresql/$ver/$name
  pg_running || pg_start
  for i in $(seq 1 30); do pg_running && break; sleep 1; done

  # Settings through a conf.d file, so the main config stays as the package shipped it.
  local want
  want=$(cat <<CONF
# Written by Tidemark's scripts/services.sh
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
wal_sender_timeout = 60s
password_encryption = scram-sha-256
CONF
)
  mkdir -p "$conf_dir/conf.d"
  if [ "$(cat "$conf_dir/conf.d/tidemark.conf" 2>/dev/null)" != "$want" ]; then
    printf '%s\n' "$want" | as_root tee "$conf_dir/conf.d/tidemark.conf" >/dev/null
    changed=1
  fi
  grep -q "^include_dir = 'conf.d'" "$conf_dir/postgresql.conf" \
    || grep -q "^include_dir" "$conf_dir/postgresql.conf" \
    || { echo "include_dir = 'conf.d'" | as_root tee -a "$conf_dir/postgresql.conf" >/dev/null; changed=1; }

  # pg_hba: the SCRAM role must really use SCRAM (the machine's default is trust), and
  # replication connections need their own lines ("all" does not match them).
  local hba=$conf_dir/pg_hba.conf marker="# tidemark: scram role"
  if ! grep -q "$marker" "$hba"; then
    local tmp; tmp=$(mktemp)
    {
      echo "$marker"
      echo "host    all             tidemark        127.0.0.1/32            scram-sha-256"
      echo "host    replication     tidemark        127.0.0.1/32            scram-sha-256"
      echo "host    all             tidemark        ::1/128                 scram-sha-256"
      echo "host    replication     tidemark        ::1/128                 scram-sha-256"
      echo "# tidemark: replication for local test roles"
      echo "local   replication     all                                     trust"
      echo "host    replication     all             127.0.0.1/32            trust"
      echo "host    replication     all             ::1/128                 trust"
      cat "$hba"
    } > "$tmp"
    as_root cp "$tmp" "$hba"; rm -f "$tmp"
    as_root chown postgres:postgres "$hba" 2>/dev/null || true
    changed=1
  fi

  if [ "$changed" = 1 ] || [ "$(psql_admin "-c 'show wal_level'")" != logical ]; then
    pg_restart
    for i in $(seq 1 30); do pg_running && break; sleep 1; done
  fi
  [ "$(psql_admin "-c 'show wal_level'")" = logical ] || { log "PostgreSQL wal_level is not logical"; exit 1; }

  psql_admin "-c \"DO \\\$\\\$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tidemark') THEN
      CREATE ROLE tidemark LOGIN REPLICATION SUPERUSER;
    END IF; END \\\$\\\$;\""
  psql_admin "-c \"SET password_encryption = 'scram-sha-256'; ALTER ROLE tidemark PASSWORD '$PG_PASSWORD'\""
  psql_admin "-c \"SELECT 1 FROM pg_database WHERE datname = 'tidemark'\"" | grep -q 1 \
    || psql_admin "-c 'CREATE DATABASE tidemark OWNER tidemark'"
  log "PostgreSQL ready: wal_level=logical, role tidemark (SCRAM), database tidemark"
}

mariadb_running() { mariadb -uroot -h127.0.0.1 -e 'select 1' >/dev/null 2>&1; }

mariadb_restart() {
  log "restarting MariaDB"
  if command -v mariadb-admin >/dev/null && mariadb_running; then
    mariadb-admin -uroot shutdown || true
  fi
  for i in $(seq 1 30); do pgrep -x mariadbd >/dev/null || break; sleep 1; done
  if [ -d /run/systemd/system ] && systemctl is-enabled mariadb >/dev/null 2>&1; then
    as_root systemctl restart mariadb
  else
    as_root mkdir -p /run/mysqld; as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  fi
  for i in $(seq 1 60); do mariadb_running && break; sleep 1; done
}

setup_mariadb() {
  command -v mariadb >/dev/null || return 0
  mariadb_running || mariadb_restart
  local cnf=/etc/mysql/mariadb.conf.d/90-tidemark.cnf want
  want=$(cat <<CNF
# Written by Tidemark's scripts/services.sh
[mariadbd]
server_id = 1
log_bin = mariadb-bin
binlog_format = ROW
binlog_row_image = FULL
binlog_row_metadata = FULL
CNF
)
  if [ "$(cat "$cnf" 2>/dev/null)" != "$want" ]; then
    as_root mkdir -p "$(dirname "$cnf")"
    printf '%s\n' "$want" | as_root tee "$cnf" >/dev/null
  fi
  # Debian's stock my.cnf includes mariadb.conf.d; a trimmed one (as on this machine kind) may not.
  if [ -f /etc/mysql/my.cnf ] && ! grep -qE '^!includedir /etc/mysql/mariadb.conf.d/?$' /etc/mysql/my.cnf; then
    echo '!includedir /etc/mysql/mariadb.conf.d/' | as_root tee -a /etc/mysql/my.cnf >/dev/null
  fi
  if [ "$(mariadb -uroot -h127.0.0.1 -N -e 'select @@log_bin, @@binlog_format, @@binlog_row_metadata' 2>/dev/null)" != "$(printf '1\tROW\tFULL')" ]; then
    mariadb_restart
  fi
  log "MariaDB ready: log_bin, binlog_format=ROW, binlog_row_image=FULL, binlog_row_metadata=FULL"
}

ensure_packages
setup_postgres
setup_mariadb
