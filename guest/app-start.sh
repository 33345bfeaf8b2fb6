#!/bin/sh
# kvmigrate app guest: starts a real application and its load, from the workload spec on the
# kernel command line (kvmw=app:pgbench[:scale[:clients]] or app:memcached[:MiB[:clients[:valueKiB]]]).
# Run by /init in the background, its output on the serial console; the heartbeat and the
# integrity check come from /bin/workload, which /init execs on the console at the same time.
# Everything lives in tmpfs (the initramfs root and /tmp): the guest has no disk.
export PATH=/bin:/usr/bin TZ=UTC LANG=C LC_ALL=C
IFS=: read -r kind app a b c <<EOF
$1
EOF
RUNAS="/bin/appload runas 100 100"
fail() { echo "ERROR app: $*"; exit 1; }

case "$app" in
pgbench)
  scale=${a:-5}
  clients=${b:-4}
  PG=/usr/lib/postgresql/15/bin
  mkdir -p /tmp/pg && chown 100:100 /tmp/pg
  $RUNAS $PG/initdb -D /tmp/pg -U postgres --no-locale -E UTF8 -A trust --no-sync >/tmp/initdb.log 2>&1 ||
    fail "initdb failed: $(tail -n 3 /tmp/initdb.log | tr '\n' ' ')"
  # Durability off (the guest has no disk), frequent checkpoints with full-page writes: the
  # database writes its buffers, its WAL and its data files (page cache in tmpfs) fast.
  cat >>/tmp/pg/postgresql.conf <<CONF
listen_addresses = ''
unix_socket_directories = '/tmp'
shared_buffers = 64MB
fsync = off
synchronous_commit = off
full_page_writes = on
checkpoint_timeout = 30s
max_wal_size = 96MB
min_wal_size = 32MB
autovacuum = off
logging_collector = off
log_min_messages = fatal
dynamic_shared_memory_type = posix
CONF
  $RUNAS $PG/postgres -D /tmp/pg >/tmp/postgres.log 2>&1 &
  i=0
  until $RUNAS $PG/pgbench -h /tmp -U postgres -i -I dtGp -s "$scale" -q postgres >/tmp/pgbench-init.log 2>&1; do
    i=$((i + 1))
    [ $i -lt 60 ] || fail "pgbench -i failed: $(tail -n 3 /tmp/pgbench-init.log | tr '\n' ' ')"
    sleep 1
  done
  echo "APP pgbench initialized scale=$scale"
  cd /tmp || exit 1
  $RUNAS $PG/pgbench -h /tmp -U postgres -c "$clients" -j 1 -M prepared -T 100000000 -l --log-prefix=/tmp/pgb postgres \
    >/tmp/pgbench.log 2>&1 &
  exec /bin/appload tail "/tmp/pgb.$!"
  ;;
memcached)
  mib=${a:-192}
  clients=${b:-4}
  kib=${c:-16}
  # The keys fill ~90% of the cache, so sets overwrite live items rather than evict.
  keys=$((mib * 1024 * 9 / 10 / kib))
  $RUNAS /usr/bin/memcached -m "$((mib + 16))" -l 127.0.0.1 -p 11211 -t 1 -c 64 -I 1m >/tmp/memcached.log 2>&1 &
  exec /bin/appload mc 11211 "$clients" "$keys" "$((kib * 1024))" 50
  ;;
*)
  fail "unknown application '$app' in '$1'"
  ;;
esac
