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
  trap '"${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$pgdir"' EXIT
  throwaway_postgres_url="postgres://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL for this run: $("$pgbin/postgres" --version), $throwaway_postgres_url"
}
