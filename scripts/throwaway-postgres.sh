# Sourced by scripts/test and scripts/bench: starts a throwaway PostgreSQL cluster on loopback
# for this run (stopped and deleted on exit) and sets `throwaway_postgres_url` to its admin URL.
# PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user.
start_throwaway_postgres() {
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  pgdir=$(mktemp -d /tmp/yilian-pg.XXXXXX)
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_pg=()
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$pgdir"
    as_pg=(runuser -u postgres --)
  fi
  "${as_pg[@]}" "$pgbin/initdb" -D "$pgdir/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
    -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
  trap 'stop_throwaway_postgres $?' EXIT
  throwaway_postgres_url="postgres://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL for this run: $("$pgbin/postgres" --version), $throwaway_postgres_url"
}

# On a failed run, says whether the server outlived the tests and shows the end of its log (a server
# that died mid-run fails tests that have nothing to do with it); then stops it and deletes it.
stop_throwaway_postgres() {
  local status=$1
  if [ "$status" -ne 0 ]; then
    if "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" status >/dev/null 2>&1; then
      echo "PostgreSQL for this run was still up at the end"
    else
      echo "PostgreSQL for this run had stopped before the end; the end of its log:"
    fi
    tail -n 20 "$pgdir/log" || true
    df -h "$pgdir" || true
  fi
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$pgdir"
}
