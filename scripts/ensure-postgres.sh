#!/usr/bin/env bash
# Makes sure a PostgreSQL server is reachable for the test suite and exports DATABASE_URL.
#
# Use either form (both leave DATABASE_URL exported in the calling shell):
#   eval "$(scripts/ensure-postgres.sh)"     # prints `export DATABASE_URL=...` on stdout
#   source scripts/ensure-postgres.sh        # exports it directly; returns non-zero on failure
#
# The tests use #[sqlx::test], which creates throwaway databases, so the role must be allowed to
# create databases. In order of preference:
#   1. DATABASE_URL already set: used as is.
# (ATIENDE_TEST_PG_PRIVATE=1 skips 1 and 2 and goes straight to the private cluster of 3.)
#   2. A server answering on 127.0.0.1:$ATIENDE_TEST_PG_PORT (default 5432) that lets role
#      `postgres` in without a password: postgres://postgres@127.0.0.1:PORT/postgres
#   3. Installed PostgreSQL server binaries (on PATH or /usr/lib/postgresql/*/bin, highest version
#      first): a private cluster in target/test-postgres (override: ATIENDE_TEST_PG_DIR), created on
#      first use, listening only on a Unix socket, run as user `postgres` (or `nobody`) when we are
#      root, and left running for the next run. Delete the directory to start afresh.
#   4. Otherwise: fail, saying to install PostgreSQL or set DATABASE_URL.
# ATIENDE_TEST_PG_PORT and ATIENDE_PG_LIB_ROOT (default /usr/lib/postgresql) also let the script's
# own fallbacks be tested on a machine where a server already runs on 5432.
# Progress goes to stderr, one line for what was chosen.

__atiende_ensure_postgres() (
    set -euo pipefail

    say() { printf 'ensure-postgres: %s\n' "$*" >&2; }
    die() {
        say "error: $*"
        exit 1
    }

    local private="${ATIENDE_TEST_PG_PRIVATE:-}"
    if [[ -n "${DATABASE_URL:-}" && "$private" != 1 ]]; then
        say "using DATABASE_URL from the environment"
        printf '%s\n' "$DATABASE_URL"
        exit 0
    fi

    # PGHOST, PGPORT, PGDATA, PGUSER... would silently redirect the tools below.
    local var
    for var in $(compgen -e); do
        if [[ "$var" == PG* ]]; then unset "$var"; fi
    done

    local repo
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

    # Directories holding initdb, pg_ctl and postgres: PATH first, then /usr/lib/postgresql/*/bin
    # by descending version. A PATH entry that only has symlinks resolves to the real bin dir.
    has_server_bins() { [[ -x "$1/initdb" && -x "$1/pg_ctl" && -x "$1/postgres" ]]; }
    find_bin_dir() {
        local dir real
        local IFS=:
        for dir in $PATH; do
            [[ "$dir" == /* ]] || continue
            if has_server_bins "$dir"; then
                real="$(dirname "$(readlink -f "$dir/pg_ctl")")"
                if has_server_bins "$real"; then printf '%s\n' "$real"; else printf '%s\n' "$dir"; fi
                return 0
            fi
        done
        unset IFS
        local root="${ATIENDE_PG_LIB_ROOT:-/usr/lib/postgresql}"
        if [[ -d "$root" ]]; then
            while IFS= read -r dir; do
                if has_server_bins "$root/$dir/bin"; then
                    printf '%s\n' "$root/$dir/bin"
                    return 0
                fi
            done < <(for dir in "$root"/*; do printf '%s\n' "${dir##*/}"; done | grep -E '^[0-9]+(\.[0-9]+)*$' | sort -V -r)
        fi
        return 1
    }

    # A client tool: from the server bin dir if there is one, else from PATH.
    local bin_dir=""
    bin_dir="$(find_bin_dir || true)"
    client() {
        if [[ -n "$bin_dir" && -x "$bin_dir/$1" ]]; then
            printf '%s\n' "$bin_dir/$1"
        else
            command -v "$1" || true
        fi
    }

    # 2. A server on 127.0.0.1 that takes role postgres without a password.
    local port="${ATIENDE_TEST_PG_PORT:-5432}"
    local url="postgres://postgres@127.0.0.1:$port/postgres"
    local pg_isready psql
    pg_isready="$(client pg_isready)"
    psql="$(client psql)"
    if [[ "$private" == 1 ]]; then
        say "ATIENDE_TEST_PG_PRIVATE=1: using a private cluster"
    elif [[ -n "$pg_isready" && -n "$psql" ]]; then
        if "$pg_isready" -q -h 127.0.0.1 -p "$port" -t 3; then
            local can_create
            can_create="$(PGCONNECT_TIMEOUT=5 "$psql" -X -w -q -tA "$url" \
                -c 'select rolcreatedb or rolsuper from pg_roles where rolname = current_user' \
                2>/dev/null || true)"
            if [[ "$can_create" == t ]]; then
                say "using the PostgreSQL server on 127.0.0.1:$port (role postgres)"
                printf '%s\n' "$url"
                exit 0
            fi
            say "a server answers on 127.0.0.1:$port but role postgres can't log in without a password or create databases; not using it"
        fi
    elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        # No client tools to check with: assume a local server set up the usual way.
        say "using the server listening on 127.0.0.1:$port (role postgres, unchecked: no psql)"
        printf '%s\n' "$url"
        exit 0
    fi

    # 3. A private cluster in the repository's target directory.
    if [[ -z "$bin_dir" ]]; then
        die "no PostgreSQL server found on 127.0.0.1:$port and no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH or under /usr/lib/postgresql/*/bin: install PostgreSQL (e.g. \`apt-get install postgresql\`) or set DATABASE_URL"
    fi

    local cluster="${ATIENDE_TEST_PG_DIR:-$repo/target/test-postgres}"
    mkdir -p "$cluster"
    cluster="$(cd "$cluster" && pwd -P)"
    local pgdata="$cluster/data" log="$cluster/postgresql.log"

    # The socket goes in the cluster dir unless that path is over the 107-byte sun_path limit.
    local sock_dir="$cluster"
    if (( ${#sock_dir} + 14 > 107 )); then
        sock_dir="${TMPDIR:-/tmp}/atiende-test-pg-$(printf '%s' "$cluster" | cksum | cut -d' ' -f1)"
        mkdir -p "$sock_dir"
        (( ${#sock_dir} + 14 <= 107 )) || die "socket directory $sock_dir is too long for a Unix socket; set ATIENDE_TEST_PG_DIR to a shorter path or set DATABASE_URL"
    fi

    # PostgreSQL refuses to run as root: then run it as postgres (or nobody).
    local run=()
    local owner=""
    if [[ "$(id -u)" == 0 ]]; then
        if id -u postgres >/dev/null 2>&1; then
            owner=postgres
        elif id -u nobody >/dev/null 2>&1; then
            owner=nobody
        else
            die "running as root, but neither a postgres nor a nobody user exists to run PostgreSQL as: create one or set DATABASE_URL"
        fi
        run=(runuser -u "$owner" --)
        local dir="$cluster"
        local blocked=""
        while [[ "$dir" != / ]]; do
            dir="$(dirname "$dir")"
            if ! "${run[@]}" test -x "$dir"; then blocked="$dir"; fi
        done
        [[ -z "$blocked" ]] || die "user $owner (which runs PostgreSQL, as it refuses root) cannot enter $blocked: chmod o+x $blocked, set ATIENDE_TEST_PG_DIR elsewhere, or set DATABASE_URL"
        if [[ "$(stat -c %U "$cluster")" != "$owner" ]]; then chown -R "$owner:" "$cluster"; fi
        [[ "$sock_dir" == "$cluster" ]] || chown "$owner:" "$sock_dir"
    fi
    # Only the owner may enter, which is what makes trust authentication on the socket safe.
    chmod 700 "$cluster"
    [[ "$sock_dir" == "$cluster" ]] || chmod 700 "$sock_dir"

    # Runs a server binary as the cluster's owner, from a directory it can enter, without the
    # lock's descriptor (a server started from here would otherwise hold the lock forever).
    as_owner() { (cd "$cluster" && "${run[@]}" "$@" 9>&-); }

    # Two test runs starting at once must not both run initdb or pg_ctl start.
    if command -v flock >/dev/null; then
        exec 9>"$cluster/ensure-postgres.lock"
        flock -w 300 9 || die "timed out waiting for another run holding $cluster/ensure-postgres.lock"
    fi

    if [[ ! -f "$pgdata/PG_VERSION" ]]; then
        say "creating a PostgreSQL test cluster in $pgdata"
        rm -rf "$pgdata"
        local initdb_out
        # Trust: the socket sits in a directory only the owner (and root) can enter.
        if ! initdb_out="$(as_owner "$bin_dir/initdb" -D "$pgdata" -U atiende --auth=trust -E UTF8 --locale=C.UTF-8 2>&1)"; then
            rm -rf "$pgdata"
            initdb_out="$(as_owner "$bin_dir/initdb" -D "$pgdata" -U atiende --auth=trust -E UTF8 --no-locale 2>&1)" ||
                die "initdb failed:"$'\n'"$initdb_out"
        fi
        # A throwaway cluster: durability is traded for speed (the tests create many databases).
        {
            echo
            echo "# Written by scripts/ensure-postgres.sh"
            echo "listen_addresses = ''"
            echo "unix_socket_directories = '${sock_dir//\'/\'\'}'"
            echo "unix_socket_permissions = 0700"
            echo "port = 5432"
            echo "max_connections = 200"
            echo "fsync = off"
            echo "synchronous_commit = off"
            echo "full_page_writes = off"
        } | as_owner tee -a "$pgdata/postgresql.conf" >/dev/null
    fi

    # A killed server nobody has reaped yet (a zombie) still passes pg_ctl's "is it alive" test.
    local pid
    pid="$(head -n 1 "$pgdata/postmaster.pid" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ && "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null || true)" == Z ]]; then
        say "removing the stale lock files of killed server $pid"
        rm -f "$pgdata/postmaster.pid" "$sock_dir/.s.PGSQL.5432.lock"
    fi

    local stop_cmd="${run[*]:+${run[*]} }$bin_dir/pg_ctl stop -D $pgdata -m fast"
    if as_owner "$bin_dir/pg_ctl" status -D "$pgdata" >/dev/null 2>&1; then
        say "using the test PostgreSQL already running in $pgdata (stop it with: $stop_cmd)"
    else
        local offset=0
        [[ -f "$log" ]] && offset="$(stat -c %s "$log")"
        if ! as_owner "$bin_dir/pg_ctl" start -D "$pgdata" -l "$log" -w -t 60 >/dev/null 2>&1; then
            die "could not start PostgreSQL in $pgdata; end of $log:"$'\n'"$(tail -c +"$((offset + 1))" "$log" 2>/dev/null | tail -n 30)"
        fi
        say "started a test PostgreSQL in $pgdata and left it running (stop it with: $stop_cmd)"
    fi

    # The socket directory percent-encoded for the URL's query.
    local enc="" c i LC_ALL=C
    for ((i = 0; i < ${#sock_dir}; i++)); do
        c="${sock_dir:i:1}"
        if [[ "$c" == [A-Za-z0-9/._~-] ]]; then enc+="$c"; else enc+="$(printf '%%%02X' "'$c")"; fi
    done
    printf '%s\n' "postgres:///postgres?host=$enc&user=atiende"
)

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: export into the caller's shell without exiting it on failure.
    if __atiende_ensure_postgres_url="$(__atiende_ensure_postgres)"; then
        export DATABASE_URL="$__atiende_ensure_postgres_url"
        unset __atiende_ensure_postgres_url
        unset -f __atiende_ensure_postgres
    else
        unset __atiende_ensure_postgres_url
        unset -f __atiende_ensure_postgres
        return 1
    fi
else
    url="$(__atiende_ensure_postgres)" || exit 1
    printf "export DATABASE_URL='%s'\n" "${url//\'/\'\\\'\'}"
fi
