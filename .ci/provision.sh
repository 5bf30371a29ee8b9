# shellcheck shell=bash
# Everything the test suite needs outside the venv, shared by `make test` (.ci/test.sh) and CI
# (.ci/run, which runs `make test`). Source this file, then call `kit_provision`. It:
#
#  1. installs with apt-get only what is missing (nothing at all when everything is present):
#       chromium    with its Recommends (fonts) for the browser test,
#       postgresql  for the distributed-tuning tests,
#       default-jre-headless  (Java >= 17) for PySpark local[2],
#       prometheus  (prometheus + promtool) for the monitoring and alert-rule tests;
#     as root, or through sudo; otherwise it stops and says what to install;
#  2. starts a throwaway PostgreSQL cluster on a free 127.0.0.1 port with password auth, and an
#     EXIT trap that stops and deletes it, also when the tests fail or are interrupted;
#  3. exports KIT_TEST_POSTGRES_URL, JAVA_HOME, KIT_TEST_CHROMIUM, KIT_TEST_PROMETHEUS,
#     KIT_TEST_PROMTOOL, and KIT_REQUIRE_ALL=1 (tests needing one of these fail instead of skipping);
#  4. prints one line with the versions it found.
#
# The EXIT/INT/TERM/HUP traps belong to the sourcing shell: do not set other ones after this.

set -euo pipefail

# PySpark 4 needs Java 17 or newer (3.5 accepts 17 too); Debian 12's default-jre-headless is 17.
KIT_MIN_JAVA=17
_KIT_PGDATA=""
_KIT_PGBIN=""
_KIT_PGPORT=""
_KIT_POLICY_SHIM=""

_kit_say() { echo "provision: $*"; }
_kit_die() { echo "provision: error: $*" >&2; exit 1; }

# Run a command as root: directly when we are root, else through sudo (which may ask a password).
_kit_as_root() {
  if ((EUID == 0)); then
    "$@"
  else
    sudo -- "$@"
  fi
}

# Run a PostgreSQL server program as the cluster owner. initdb and pg_ctl refuse to run as root,
# so root hands them to the `postgres` user (created by the Debian package); anyone else owns the
# throwaway cluster themselves and needs no privilege at all.
_kit_pg_run() {
  if ((EUID == 0)); then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# Newest /usr/lib/postgresql/<version>/bin holding a complete server, or nothing.
_kit_find_pgbin() {
  local dir best=""
  for dir in /usr/lib/postgresql/*/bin; do
    [[ -x $dir/postgres && -x $dir/initdb && -x $dir/pg_ctl && -x $dir/psql ]] || continue
    if [[ -z $best ]] || [[ $(printf '%s\n%s\n' "$best" "$dir" | sort -V | tail -n 1) == "$dir" ]]; then
      best=$dir
    fi
  done
  echo "$best"
}

# Full version of the Java at $1 (a JAVA_HOME), from its `release` file (no JVM start), else `java -version`.
_kit_java_version() {
  local home=$1 version=""
  [[ -x $home/bin/java ]] || return 0
  if [[ -r $home/release ]]; then
    version=$(sed -n 's/^JAVA_VERSION="\([^"]*\)".*/\1/p' "$home/release")
  fi
  if [[ -z $version ]]; then
    version=$("$home/bin/java" -version 2>&1 | sed -n '1s/.*version "\([^"]*\)".*/\1/p')
  fi
  echo "$version"
}

# A JAVA_HOME holding Java >= KIT_MIN_JAVA: the caller's JAVA_HOME if it is one (setup-java,
# SDKMAN), else the one behind the `java` on PATH (Debian's alternatives symlink). Nothing if none.
_kit_find_java_home() {
  local home java version major
  for home in "${JAVA_HOME:-}" "$(java=$(command -v java) && readlink -f "$java" | sed 's|/bin/java$||')"; do
    [[ -n $home ]] || continue
    version=$(_kit_java_version "$home")
    version=${version#1.}          # 1.8.0_402 -> 8.0_402
    major=${version%%[!0-9]*}
    if [[ -n $major ]] && ((major >= KIT_MIN_JAVA)); then
      echo "$home"
      return 0
    fi
  done
}

# Processes named prometheus that run as the package's `prometheus` user: the packaged daemon
# (a test's own Prometheus runs as the test user). Read from /proc: slim images have no procps.
_kit_prometheus_daemons() {
  local uid dir
  uid=$(id -u prometheus 2>/dev/null) || return 0
  for dir in /proc/[0-9]*; do
    [[ $(cat "$dir/comm" 2>/dev/null) == prometheus ]] || continue
    [[ $(awk '/^Uid:/ {print $2}' "$dir/status" 2>/dev/null) == "$uid" ]] && echo "${dir#/proc/}"
  done
  return 0
}

# Whether pid $1 still runs (a killed daemon nobody reaps stays a zombie in /proc).
_kit_alive() {
  [[ -r /proc/$1/status ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# Install packages with apt-get. $1 is "recommends" or "no-recommends"; the rest are packages.
_kit_apt_install() {
  local recommends=$1 log
  shift
  local opts=(-y -q -o DPkg::Lock::Timeout=600)   # wait for another apt run instead of failing
  [[ $recommends == recommends ]] || opts+=(--no-install-recommends)
  log=$(mktemp /tmp/kit-provision-apt.XXXXXX)
  if ! _kit_as_root env DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -f "$log"
    _kit_die "apt-get install ${*} failed (output above)"
  fi
  rm -f "$log"
}

# Stop the packaged Prometheus daemons that are not in $1 (the pids running before the install).
_kit_stop_new_prometheus_daemons() {
  local before=" $1 " pid started=() alive=()
  for pid in $(_kit_prometheus_daemons); do
    [[ $before == *" $pid "* ]] || started+=("$pid")
  done
  ((${#started[@]})) || return 0
  _kit_say "stopping the Prometheus daemon the package started (pid ${started[*]})"
  _kit_as_root kill "${started[@]}" 2>/dev/null || true
  for _ in {1..20}; do
    alive=()
    for pid in "${started[@]}"; do ! _kit_alive "$pid" || alive+=("$pid"); done
    ((${#alive[@]})) || return 0
    sleep 0.5
  done
  _kit_die "the Prometheus daemon started by apt (pid ${alive[*]}) did not stop"
}

# Install what is missing, with no package daemon left running afterwards.
_kit_install_missing() {
  local with_recommends=() without=() all
  command -v chromium >/dev/null 2>&1 || with_recommends+=(chromium)
  [[ -n $(_kit_find_pgbin) ]] || without+=(postgresql)
  [[ -n $(_kit_find_java_home) ]] || without+=(default-jre-headless)
  { command -v prometheus && command -v promtool; } >/dev/null 2>&1 || without+=(prometheus)
  all=("${with_recommends[@]}" "${without[@]}")
  ((${#all[@]})) || return 0

  local how="apt-get install ${with_recommends[*]:+${with_recommends[*]}; }"
  how+="${without[*]:+apt-get install --no-install-recommends ${without[*]}}"
  command -v apt-get >/dev/null 2>&1 ||
    _kit_die "missing ${all[*]} and there is no apt-get here; install them yourself (Debian: $how)"
  if ((EUID != 0)) && ! command -v sudo >/dev/null 2>&1; then
    _kit_die "missing ${all[*]}; run as root or with sudo available, or install them first: $how"
  fi

  _kit_say "installing ${all[*]} with apt-get"
  # Package scripts must not start services: Docker-style containers have no init to own them, and
  # a Prometheus daemon would hold port 9090 (PostgreSQL's would hold 5432). The standard way is a
  # policy-rc.d answering 101 ("action forbidden"), honoured by invoke-rc.d and deb-systemd-invoke;
  # one is put in place for the install only, unless the system already has its own.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    _KIT_POLICY_SHIM=/usr/sbin/policy-rc.d
    _kit_as_root sh -c 'printf "#!/bin/sh\n# kit .ci/provision.sh: no service starts during its install\nexit 101\n" \
      > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
  fi
  local before
  before=$(_kit_prometheus_daemons | tr '\n' ' ')
  # openjdk's postinst registers man-page alternatives and fails where slim images dropped the folder.
  if [[ " ${without[*]} " == *" default-jre-headless "* ]]; then _kit_as_root mkdir -p /usr/share/man/man1; fi
  _kit_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=600 >/dev/null ||
    _kit_die "apt-get update failed"
  ((${#with_recommends[@]} == 0)) || _kit_apt_install recommends "${with_recommends[@]}"
  ((${#without[@]} == 0)) || _kit_apt_install no-recommends "${without[@]}"
  if [[ -n $_KIT_POLICY_SHIM ]]; then
    _kit_as_root rm -f "$_KIT_POLICY_SHIM"
    _KIT_POLICY_SHIM=""
  fi

  # Belt and braces: a systemd host still enables the unit (started at the next boot), and a host
  # whose own policy-rc.d allows starts gets a running daemon. Stop what this install started.
  if [[ " ${without[*]} " == *" prometheus "* ]]; then
    if [[ -d /run/systemd/system ]]; then
      _kit_as_root systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
    _kit_stop_new_prometheus_daemons "$before"
  fi
}

# A free TCP port on 127.0.0.1 (the kernel picks it). Any Python will do: the system's, else the venv's.
_kit_free_port() {
  local python
  python=$(command -v python3 || command -v .venv/bin/python) || _kit_die "no python3 to pick a free port with"
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Start the throwaway cluster; sets _KIT_PGDATA/_KIT_PGBIN and exports KIT_TEST_POSTGRES_URL.
_kit_start_postgres() {
  local password attempt
  _KIT_PGBIN=$(_kit_find_pgbin)
  [[ -n $_KIT_PGBIN ]] || _kit_die "no PostgreSQL server under /usr/lib/postgresql/*/bin after the install"
  _KIT_PGDATA=$(mktemp -d /tmp/kit-test-pg.XXXXXX)   # short: it also holds the Unix socket (108-byte limit)
  if ((EUID == 0)); then chown postgres: "$_KIT_PGDATA"; fi
  # Password auth over TCP (what the tests exercise); trust only on the private Unix socket.
  _kit_pg_run "$_KIT_PGBIN/initdb" -D "$_KIT_PGDATA" -U postgres -E UTF8 --locale=C --no-sync \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  # A free port can be taken between the probe and the bind: try a few.
  for attempt in 1 2 3; do
    _KIT_PGPORT=$(_kit_free_port)
    # Durability is pointless for a cluster deleted at exit: fsync off keeps the tests fast.
    if _kit_pg_run "$_KIT_PGBIN/pg_ctl" -D "$_KIT_PGDATA" -l "$_KIT_PGDATA/server.log" -w -t 60 \
        -o "-p $_KIT_PGPORT -k $_KIT_PGDATA -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
            -c full_page_writes=off" start >/dev/null; then
      break
    fi
    ((attempt < 3)) || { tail -n 20 "$_KIT_PGDATA/server.log" >&2; _kit_die "PostgreSQL did not start"; }
  done
  password="kit-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
  _kit_pg_run "$_KIT_PGBIN/psql" -h "$_KIT_PGDATA" -p "$_KIT_PGPORT" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE kit LOGIN PASSWORD '$password'" -c "CREATE DATABASE kit_test OWNER kit" >/dev/null
  export KIT_TEST_POSTGRES_URL="postgresql+psycopg2://kit:$password@127.0.0.1:$_KIT_PGPORT/kit_test"
}

# Stop and delete the throwaway cluster (and a leftover policy-rc.d shim). Safe to call twice.
kit_provision_cleanup() {
  if [[ -n $_KIT_PGDATA && -d $_KIT_PGDATA ]]; then
    _kit_pg_run "$_KIT_PGBIN/pg_ctl" -D "$_KIT_PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$_KIT_PGDATA"
  fi
  _KIT_PGDATA=""
  if [[ -n $_KIT_POLICY_SHIM ]]; then
    _kit_as_root rm -f "$_KIT_POLICY_SHIM" || true
    _KIT_POLICY_SHIM=""
  fi
}

kit_provision() {
  # Cleanup on every way out. An interrupt becomes a normal exit so the EXIT trap runs (a signal
  # that was already ignored when the shell started cannot be trapped, and then never arrives).
  trap kit_provision_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP

  _kit_install_missing

  local chromium prometheus promtool
  chromium=$(command -v chromium) || _kit_die "chromium is still missing after the install"
  prometheus=$(command -v prometheus) || _kit_die "prometheus is still missing after the install"
  promtool=$(command -v promtool) || _kit_die "promtool is still missing after the install"
  JAVA_HOME=$(_kit_find_java_home)
  [[ -n $JAVA_HOME ]] || _kit_die "no Java >= $KIT_MIN_JAVA after installing default-jre-headless" \
    "(check \`update-alternatives --display java\` or set JAVA_HOME)"
  export JAVA_HOME KIT_TEST_CHROMIUM=$chromium KIT_TEST_PROMETHEUS=$prometheus KIT_TEST_PROMTOOL=$promtool
  export KIT_REQUIRE_ALL=1

  _kit_start_postgres

  local v_chromium v_postgres v_prometheus v_promtool
  v_chromium=$("$chromium" --version 2>/dev/null | awk '{print $2}') || true
  v_postgres=$("$_KIT_PGBIN/postgres" --version | awk '{print $3}')
  v_prometheus=$("$prometheus" --version 2>&1 | awk 'NR == 1 {print $3}')
  v_promtool=$("$promtool" --version 2>&1 | awk 'NR == 1 {print $3}')
  _kit_say "chromium ${v_chromium:-?}, postgres $v_postgres (127.0.0.1:$_KIT_PGPORT)," \
    "java $(_kit_java_version "$JAVA_HOME") ($JAVA_HOME), prometheus $v_prometheus, promtool $v_promtool"
}
