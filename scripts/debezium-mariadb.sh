#!/usr/bin/env bash
# What the MariaDB differential tests need besides scripts/debezium.sh: Debian's MariaDB JDBC
# driver (libmariadb-java) for Debezium's MariaDB connector (shared/debezium/README.md).
# Idempotent: installs with apt only when the jar is missing.
set -euo pipefail
jar=/usr/share/java/mariadb-java-client.jar
if [ ! -f "$jar" ]; then
  echo "debezium-mariadb: installing libmariadb-java" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmariadb-java >&2
fi
echo "$jar"
