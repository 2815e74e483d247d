#!/usr/bin/env bash
# The scale-out services, idempotently, on Debian as root (no systemd needed):
#   1. installs postgresql and rabbitmq-server with apt when missing;
#   2. RabbitMQ: disables consumer_timeout (/etc/rabbitmq/advanced.config) so that a task held by a daemon worker
#      for longer than 30 min (a long DFT job) is not cancelled by the broker — AiiDA's requirement for RabbitMQ
#      >= 3.8.15; binds the broker to localhost;
#   3. starts PostgreSQL (pg_ctlcluster) and RabbitMQ (rabbitmq-server -detached) when they are not running and
#      waits until both accept connections;
#   4. makes a PostgreSQL login role that may create users and databases, the credentials `verdi presto
#      --use-postgres --postgres-username ... --postgres-password ...` uses to create one database per profile
#      (GRIMPERIUM_PG_ADMIN / GRIMPERIUM_PG_PASSWORD, default aiida_admin / aiida_admin; reachable from
#      localhost only, Debian's default listen_addresses).
# Prints `SCALEOUT=ready` on its last line when both services answer. See docs/scaleout.md.
set -euo pipefail

PG_ADMIN=${GRIMPERIUM_PG_ADMIN:-aiida_admin}
PG_PASSWORD=${GRIMPERIUM_PG_PASSWORD:-aiida_admin}
TIMEOUT=${GRIMPERIUM_SCALEOUT_TIMEOUT:-120}   # seconds to wait for each service
log() { echo "scaleout: $*" >&2; }

# 1. packages
missing=()
for p in postgresql rabbitmq-server; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Without systemd, the packages' postinst cannot start the services (policy-rc.d denies it): harmless here.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi

# AiiDA creates each profile's database with LC_COLLATE/LC_CTYPE 'en_US.UTF-8': the locale must exist on the
# server's OS (minimal images only have C.UTF-8).
if ! locale -a 2>/dev/null | grep -qi '^en_US\.utf-\?8$'; then
  log "generating the en_US.UTF-8 locale"
  dpkg -s locales >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq locales >/dev/null
  sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' /etc/locale.gen
  grep -q '^en_US.UTF-8 UTF-8' /etc/locale.gen || echo 'en_US.UTF-8 UTF-8' >> /etc/locale.gen
  locale-gen >/dev/null
  PG_RESTART=1  # a running server only sees locales that existed when it started
fi

# 2. RabbitMQ configuration (only written when absent: an administrator's own file is left alone)
mkdir -p /etc/rabbitmq
if [ ! -f /etc/rabbitmq/advanced.config ]; then
  log "writing /etc/rabbitmq/advanced.config (consumer_timeout disabled)"
  cat > /etc/rabbitmq/advanced.config <<'EOF'
%% Written by aiida-grimperium scripts/scaleout.sh. AiiDA daemon workers hold a task (one process) until it
%% finishes, which can take days; RabbitMQ >= 3.8.15 otherwise closes the channel after 30 min.
[{rabbit, [{consumer_timeout, undefined}]}].
EOF
elif ! grep -q consumer_timeout /etc/rabbitmq/advanced.config; then
  log "WARNING: /etc/rabbitmq/advanced.config exists without consumer_timeout; add {consumer_timeout, undefined}"
fi
if [ ! -f /etc/rabbitmq/rabbitmq.conf ]; then
  cat > /etc/rabbitmq/rabbitmq.conf <<'EOF'
# Written by aiida-grimperium scripts/scaleout.sh: the broker serves this machine only.
listeners.tcp.local = 127.0.0.1:5672
EOF
fi

wait_until() {  # wait_until DESCRIPTION COMMAND...: retry COMMAND for up to $TIMEOUT s
  local what=$1; shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then log "$what did not come up within ${TIMEOUT} s"; return 1; fi
    sleep 1
  done
}

# 3a. PostgreSQL: the first cluster pg_lsclusters lists (Debian makes `main` at install time)
if ! pg_lsclusters -h | grep -q .; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  log "creating PostgreSQL cluster $version/main"
  pg_createcluster "$version" main >/dev/null
fi
while read -r version cluster port status _; do
  if [ "$status" = online ] && [ "${PG_RESTART:-0}" = 1 ]; then
    log "restarting PostgreSQL $version/$cluster (new locale)"
    pg_ctlcluster "$version" "$cluster" restart
  elif [ "$status" != online ]; then
    log "starting PostgreSQL $version/$cluster (port $port)"
    pg_ctlcluster "$version" "$cluster" start
  fi
  PG_PORT=$port
done < <(pg_lsclusters -h | head -n 1)
wait_until "PostgreSQL" pg_isready -q -h localhost -p "$PG_PORT"

# 3b. RabbitMQ
if ! rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
  log "starting RabbitMQ"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  # `await_startup` waits for the node to boot; the port check below confirms it takes AMQP connections.
  wait_until "the RabbitMQ node" rabbitmq-diagnostics -q ping
  rabbitmqctl -q await_startup --timeout "$TIMEOUT" >/dev/null
fi
wait_until "RabbitMQ (AMQP port 5672)" bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672'

# 4. the role that provisions one database per profile
as_postgres() { runuser -u postgres -- psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qAt "$@"; }
if [ "$(as_postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_ADMIN'")" != 1 ]; then
  log "creating PostgreSQL role $PG_ADMIN (CREATEDB CREATEROLE)"
  as_postgres -c "CREATE ROLE \"$PG_ADMIN\" LOGIN CREATEDB CREATEROLE PASSWORD '$PG_PASSWORD'"
fi

echo "SCALEOUT=ready"
