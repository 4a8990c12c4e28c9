#!/usr/bin/env bash
# Apache Flink for lacy, from PyPI and Maven Central alone: Flink 1.19's own distribution (the
# apache-flink wheel's bin/ and conf/ plus apache-flink-libraries' jars) and Beam's Flink job
# server (deploy/flink/jobserver/pom.xml), both cached outside the checkout and built on first use.
#
#   flink.sh install          Flink and the job server into the cache (later calls are free)
#   flink.sh jobserver        the job server alone; prints the launcher jar's path
#   flink.sh up               a standalone cluster on loopback: a JobManager and a TaskManager
#                             (2 slots) as separate JVMs; harmless when it is already up
#   flink.sh add-taskmanager  one more TaskManager in the running cluster
#   flink.sh down             stop exactly what `up` and `add-taskmanager` started
#   flink.sh status           the cluster's REST overview
#
# Environment: LACY_CACHE (default ~/.cache/lacy; Flink lives in $LACY_CACHE/flink),
# LACY_FLINK_RUN (the cluster's folder: conf/, log/, pid/, tmp/; default
# $LACY_CACHE/flink/cluster), LACY_FLINK_PORT (REST and web UI, 8081), LACY_FLINK_RPC_PORT
# (JobManager RPC, 6123). Needs java (17) and, for the job server, mvn.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${LACY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lacy}/flink
FLINK_VERSION=1.19.3
DIST=$CACHE/flink-$FLINK_VERSION
JOBSERVER=$CACHE/jobserver
JAR=$JOBSERVER/lacy-flink-job-server.jar
RUN=${LACY_FLINK_RUN:-$CACHE/cluster}
PORT=${LACY_FLINK_PORT:-8081}
RPC_PORT=${LACY_FLINK_RPC_PORT:-6123}
PYPI=https://files.pythonhosted.org/packages
# bin/ and conf/ are the same in every wheel of a release; this one is pinned by its hash.
WHEEL_URL=$PYPI/ee/81/fa94a06b822e289dc0f538e82bf916a7bc4d10fb386ebc48b40fbfbf3198/apache_flink-1.19.3-cp311-cp311-manylinux_2_5_x86_64.manylinux1_x86_64.manylinux_2_17_x86_64.manylinux2014_x86_64.whl
WHEEL_SHA=ff572c6ffa3867c21b8a455aefb50c53c91973fd0408df594ca26cb0a7bebc77
LIBS_URL=$PYPI/4e/35/1c4e72f5930a92d0cb107c28fc25f757ce0d69f6c1b6a00c6daf27cc7bed/apache-flink-libraries-1.19.3.tar.gz
LIBS_SHA=4a58e3a1fb7d83340bc96b6c080624c6d792d69fae5d294b96224775204a9c60

say() { echo "flink.sh: $*" >&2; }
die() { say "$*"; exit 1; }
need() { for c in "$@"; do command -v "$c" >/dev/null 2>&1 || die "needs $c (OpenJDK 17 and Maven 3.8+ on PATH)"; done; }

fetch() {  # URL SHA256 FILE
  curl -fsSL --retry 3 -o "$3" "$1" || die "download failed: $1"
  echo "$2  $3" | sha256sum -c --quiet - || die "checksum mismatch: $1"
}

install_flink() {
  [ -f "$DIST/lib/flink-dist-$FLINK_VERSION.jar" ] && return 0
  need java curl python3
  mkdir -p "$CACHE"
  local tmp
  tmp=$(mktemp -d "$CACHE/.flink-download.XXXXXX")
  say "downloading Flink $FLINK_VERSION from PyPI (apache-flink, apache-flink-libraries: 233 MB)"
  fetch "$WHEEL_URL" "$WHEEL_SHA" "$tmp/flink.whl"
  fetch "$LIBS_URL" "$LIBS_SHA" "$tmp/libs.tar.gz"
  python3 -m zipfile -e "$tmp/flink.whl" "$tmp/wheel"
  tar xzf "$tmp/libs.tar.gz" -C "$tmp"
  local deps=$tmp/apache-flink-libraries-$FLINK_VERSION/deps
  mkdir "$tmp/dist"
  mv "$tmp/wheel/pyflink/bin" "$tmp/wheel/pyflink/conf" "$deps/lib" "$deps/opt" "$deps/plugins" \
    "$tmp/dist/"
  mv "$deps/bin/bash-java-utils.jar" "$tmp/dist/bin/"
  chmod +x "$tmp/dist/bin/"*.sh "$tmp/dist/bin/flink"
  rm -rf "$DIST" && mv "$tmp/dist" "$DIST" && rm -rf "$tmp"
  say "Flink $FLINK_VERSION in $DIST"
}

build_jobserver() {
  local pom=$HERE/jobserver/pom.xml sum
  sum=$(sha256sum "$pom" | cut -d' ' -f1)
  if [ -f "$JAR" ] && [ "$(cat "$JOBSERVER/pom.sha256" 2>/dev/null)" = "$sum" ]; then return 0; fi
  need java mvn
  say "building Beam's Flink job server with Maven (first use: resolves about 160 jars)"
  rm -rf "$JOBSERVER.tmp"
  mvn -B -q -f "$pom" -Dmaven.repo.local="$CACHE/m2" -Dlacy.build="$CACHE/build" \
    -Djobserver.dir="$JOBSERVER.tmp" package 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2 \
    || die "Maven failed (see above)"
  echo "$sum" >"$JOBSERVER.tmp/pom.sha256"
  rm -rf "$JOBSERVER" && mv "$JOBSERVER.tmp" "$JOBSERVER"
  say "job server: $JAR"
}

flink() {  # SCRIPT ARGS...: a script of the distribution, on this cluster's folders
  FLINK_CONF_DIR=$RUN/conf FLINK_LOG_DIR=$RUN/log FLINK_PID_DIR=$RUN/pid FLINK_IDENT_STRING=lacy \
    "$DIST/bin/$1" "${@:2}"
}

pids() { cat "$RUN"/pid/*.pid 2>/dev/null || true; }
cmdline() {  # PID: its command line ('' when it is gone)
  if [ -r "/proc/$1/cmdline" ]; then tr '\0' ' ' <"/proc/$1/cmdline"; else ps -o args= -p "$1" 2>/dev/null || true; fi
}
ours() {  # PID: a JVM of this cluster (a Flink entry point reading this cluster's conf/), not
  # whatever process got the pid after a reboot or a crash
  case "$(cmdline "$1")" in
    *java*org.apache.flink.*"--configDir $RUN/conf"*) return 0 ;;
    *) return 1 ;;
  esac
}
alive() { for p in $(pids); do ours "$p" && return 0; done; return 1; }
rest_port() { cat "$RUN/port" 2>/dev/null || echo "$PORT"; }
overview() { curl -fsS -m 5 "http://localhost:$(rest_port)/overview" 2>/dev/null; }
field() { overview | grep -o "\"$1\":[0-9]*" | cut -d: -f2; }

wait_for_taskmanagers() {  # N: wait until N TaskManagers are registered
  local deadline=$((SECONDS + 120))
  until [ "$(field taskmanagers || echo 0)" -ge "$1" ] 2>/dev/null; do
    if [ $SECONDS -ge $deadline ] || ! alive; then
      tail -n 30 "$RUN"/log/*.log >&2 || true
      die "the cluster did not come up with $1 TaskManager(s); logs in $RUN/log"
    fi
    sleep 1
  done
}

start_taskmanager() {
  flink taskmanager.sh start -D jobmanager.rpc.port="$(cat "$RUN/rpc_port")" \
    -D io.tmp.dirs="$RUN/tmp" >/dev/null
}

up() {
  install_flink
  build_jobserver
  if alive && overview >/dev/null; then
    say "already up: http://localhost:$(rest_port) (logs and pids in $RUN)"
    echo "$(rest_port)"
    return 0
  fi
  alive && down
  rm -rf "$RUN/conf" "$RUN/tmp" "$RUN/pid"
  mkdir -p "$RUN/conf" "$RUN/log" "$RUN/pid" "$RUN/tmp"
  cp "$DIST"/conf/log4j*.properties "$RUN/conf/"
  cp "$HERE/conf/config.yaml" "$RUN/conf/config.yaml"
  echo "$PORT" >"$RUN/port" && echo "$RPC_PORT" >"$RUN/rpc_port"
  flink jobmanager.sh start -D rest.port="$PORT" -D jobmanager.rpc.port="$RPC_PORT" \
    -D io.tmp.dirs="$RUN/tmp" >/dev/null
  start_taskmanager
  wait_for_taskmanagers 1
  say "Flink $FLINK_VERSION up: web UI and REST http://localhost:$PORT" \
    "(lacy-label --runner=FlinkRunner --flink_master=localhost:$PORT); logs and pids in $RUN"
  echo "$PORT"
}

add_taskmanager() {
  alive || die "no cluster is up in $RUN"
  local n
  n=$(field taskmanagers)
  start_taskmanager
  wait_for_taskmanagers $((n + 1))
  say "TaskManager $((n + 1)) registered"
}

stop_pid() {  # PID: TERM, then KILL after 30 s, a JVM of this cluster (checked by the caller)
  kill "$1" 2>/dev/null || return 0
  local deadline=$((SECONDS + 30))
  while kill -0 "$1" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
  if ours "$1"; then kill -9 "$1" 2>/dev/null; fi
  while kill -0 "$1" 2>/dev/null && [ $SECONDS -lt $((deadline + 10)) ]; do sleep 0.2; done
  return 0
}

down() {
  # Each pid of the pid files is checked to be this cluster's JVM before it is signalled (Flink's
  # own stop-all would signal whatever process has that pid now); a stale entry is dropped.
  local stopped=0 f p
  for f in "$RUN"/pid/*.pid; do
    [ -f "$f" ] || continue
    for p in $(cat "$f"); do
      if ours "$p"; then
        stop_pid "$p"
        stopped=$((stopped + 1))
      else
        say "stale pid $p in $f (not this cluster's JVM): left alone, entry removed"
      fi
    done
  done
  if [ "$stopped" -eq 0 ]; then
    say "no cluster running from $RUN"
  else
    say "stopped the cluster in $RUN ($stopped JVMs; logs stay in $RUN/log)"
  fi
  rm -rf "$RUN/pid" "$RUN/tmp"
}

case "${1:-}" in
  install) install_flink && build_jobserver ;;
  jobserver) build_jobserver && echo "$JAR" ;;
  up) up ;;
  add-taskmanager) add_taskmanager ;;
  down) down ;;
  status) overview && echo || die "no cluster answers on http://localhost:$(rest_port)" ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
