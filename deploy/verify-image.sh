#!/usr/bin/env bash
# Builds the real Dockerfile and runs the image end to end, with no Docker engine and no
# container registry: Debian's buildah/podman (rootful, chroot isolation, runc).
#
#   1. base image   debootstrap a minimal Debian bookworm with python3 and tag it with the
#                   Dockerfile's FROM name in local storage, so nothing is pulled (skipped when
#                   that name already exists locally; REBUILD_BASE=1 forces it)
#   2. build        buildah bud of ./Dockerfile (docker format: OCI images drop HEALTHCHECK)
#   3. inspect      non-root USER, HEALTHCHECK, STOPSIGNAL, entrypoint; no moto, no pip inside
#   4. run          moto and a recording HTTP sink on the host; the container on the host
#                   network with a read-only root filesystem, like the ECS task definition
#   5. checks       events reach the sink; /healthz answers 200 from the host and through the
#                   image's own HEALTHCHECK; the process runs as a non-root uid
#   6. stop         `podman stop -t 30` (SIGTERM, like docker stop and ECS): exit code 0 within
#                   CWC_SHUTDOWN_TIMEOUT plus a margin
#   7. restart      new events, start again on the same volume: only the new ones are shipped
#   8. standby      a second container on the same volume waits as a hot standby (and its
#                   HEALTHCHECK must pass, or ECS would keep replacing it); stopping the
#                   first hands over the database lease and new events flow through the second
#
# Usage (as root):  deploy/verify-image.sh [--build-only]
# Needs: apt-get install -y buildah podman debootstrap runc; a Python with moto[server] and
# botocore (PYTHON=..., default python3). Environment knobs: PYTHON, IMAGE (tag to build),
# DEBIAN_MIRROR, REBUILD_BASE=1, BUILD_CA (CA bundle handed to the build as a secret; default:
# the host's bundle, which matters behind a TLS-intercepting proxy), KEEP=1 (leave container).
# `[[ test ]] && ok ... || fail ...` is safe here because ok() cannot fail (SC2015); cleanup
# runs from the EXIT trap (SC2317); awk programs are single-quoted on purpose (SC2016).
# shellcheck disable=SC2015,SC2016,SC2317
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
helpers="$repo/deploy/image/verify_helpers.py"
PYTHON="${PYTHON:-python3}"
IMAGE="${IMAGE:-localhost/cwconsumer:verify}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BUILD_CA="${BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}"
SHUTDOWN_TIMEOUT_S=20   # CWC_SHUTDOWN_TIMEOUT default, which the image keeps
STOP_MARGIN_S=5
CONTAINER="cwc-verify-$$"
STANDBY="cwc-verify-standby-$$"
VOLUME="cwc-verify-state-$$"
GROUP="/verify/app"
STREAM="verify-stream"
build_only=0
[[ "${1:-}" == "--build-only" ]] && build_only=1

# Rootful podman/buildah with settings that work without systemd, nested cgroups or a
# container network stack (CNI/netavark are not needed with --network=host).
# Without systemd, podman 4 complains on every start that it cannot set up health-check
# timers; that line is noise here (`podman healthcheck run` works on demand) and is dropped.
podman_() {
    podman --cgroup-manager=cgroupfs --runtime=runc "$@" 2> >(grep -v 'get systemd connection' >&2)
}
# runc cannot raise rlimits above the sandbox's own (podman's defaults are higher, and the
# sandbox may lack CAP_SYS_RESOURCE), so the container gets explicit ones.
read -r -a ulimits <<< "${CONTAINER_ULIMITS:---ulimit nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit nproc=4096:4096}"
run_() { podman_ run "${ulimits[@]}" "$@"; }

work="$(mktemp -d /tmp/cwc-verify.XXXXXX)"
pids=()
started=$(date +%s)
step_started=$started
failures=0

step() {
    local now
    now=$(date +%s)
    if [[ -n "${current_step:-}" ]]; then
        printf '    (%s: %ss)\n' "$current_step" "$((now - step_started))"
    fi
    current_step="$1"
    step_started=$now
    printf '\n==> %s\n' "$1"
}
ok() { printf '    ok   %s\n' "$*"; }
fail() { printf '    FAIL %s\n' "$*"; failures=$((failures + 1)); }
die() { printf '    FAIL %s\n' "$*"; exit 1; }

cleanup() {
    local rc=$?
    if [[ -n "${container_created:-}" && "${KEEP:-0}" != 1 ]]; then
        if [[ $rc -ne 0 || $failures -ne 0 ]]; then
            echo "--- last container log lines ---"
            podman_ logs --tail 40 "$CONTAINER" 2>&1 || true
        fi
        if [[ -n "${standby_created:-}" ]]; then
            if [[ $rc -ne 0 || $failures -ne 0 ]]; then
                echo "--- last standby log lines ---"
                podman_ logs --tail 20 "$STANDBY" 2>&1 || true
            fi
            podman_ rm -f -t 0 "$STANDBY" >/dev/null 2>&1 || true
        fi
        podman_ rm -f -t 0 "$CONTAINER" >/dev/null 2>&1 || true
        podman_ volume rm -f "$VOLUME" >/dev/null 2>&1 || true
    fi
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

[[ $(id -u) -eq 0 ]] || die "run as root (rootful podman; debootstrap needs root)"
for tool in podman buildah runc; do
    command -v "$tool" >/dev/null || die "$tool missing: apt-get install -y buildah podman debootstrap runc"
done

base="$(awk 'toupper($1) == "FROM" { print $2; exit }' "$repo/Dockerfile")"
[[ -n "$base" ]] || die "no FROM line in Dockerfile"

# ---------------------------------------------------------------------------------------------
step "1. base image $base"
if [[ "${REBUILD_BASE:-0}" != 1 ]] && podman_ image exists "$base"; then
    ok "already in local storage"
else
    command -v debootstrap >/dev/null || die "debootstrap missing"
    rootfs="$work/rootfs"
    # python3-venv brings ensurepip, which `python3 -m venv` needs (the official image has it).
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$DEBIAN_MIRROR" > "$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log"; die "debootstrap failed"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc "$rootfs"/usr/share/man "$rootfs"/usr/share/locale
    # Same image config as the official python image where it matters.
    tar -C "$rootfs" -c . | podman_ import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        - "$base" >/dev/null
    # Short names resolve to docker.io/library/...; tag that too so no lookup leaves the host.
    podman_ tag "$base" "docker.io/library/$base"
    ok "debootstrapped bookworm, imported as $base ($(run_ --rm "$base" python3 --version))"
fi

# ---------------------------------------------------------------------------------------------
step "2. build $IMAGE from Dockerfile"
secret_args=()
if [[ -s "$BUILD_CA" ]]; then
    secret_args=(--secret "id=build_ca,src=$BUILD_CA")
fi
if ! buildah bud --isolation=chroot --format=docker --pull=false --layers \
        "${secret_args[@]}" -f "$repo/Dockerfile" -t "$IMAGE" "$repo" > "$work/build.log" 2>&1; then
    tail -40 "$work/build.log"
    die "build failed"
fi
grep -i 'warn' "$work/build.log" | sed 's/^/    build: /' || true
ok "built; size $(podman_ image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"

# ---------------------------------------------------------------------------------------------
step "3. inspect the image"
podman_ image inspect "$IMAGE" > "$work/image.json"
# Podman's Go templates differ between versions; read the JSON instead.
inspect() { "$PYTHON" -c 'import json, sys; d = json.load(open(sys.argv[1]))[0]; print(json.dumps(eval(sys.argv[2])))' "$work/image.json" "$1"; }
user="$(inspect 'd["Config"].get("User", "")')"
[[ "$user" =~ ^\"[0-9]+(:[0-9]+)?\"$ && "$user" != '"0"'* ]] && ok "USER $user (numeric, non-root)" || fail "USER is $user"
[[ "$(inspect 'd["Config"].get("StopSignal")')" == '"SIGTERM"' ]] && ok "STOPSIGNAL SIGTERM" || fail "STOPSIGNAL is $(inspect 'd["Config"].get("StopSignal")')"
[[ "$(inspect 'd["Config"].get("Entrypoint")')" == '["cwconsumer"]' ]] && ok 'ENTRYPOINT ["cwconsumer"]' || fail "ENTRYPOINT $(inspect 'd["Config"].get("Entrypoint")')"
[[ "$(inspect 'd["Config"].get("Cmd")')" == '["run"]' ]] && ok 'CMD ["run"]' || fail "CMD $(inspect 'd["Config"].get("Cmd")')"
hc="$(inspect '(d.get("Healthcheck") or {}).get("Test")')"
[[ "$hc" == '["CMD", "cwconsumer", "healthcheck", "--standby-ok"]' ]] && ok "HEALTHCHECK $hc" || fail "HEALTHCHECK is $hc (built as OCI? it needs --format=docker)"
[[ "$(inspect '"CWC_DB_PATH=/var/lib/cwconsumer/state.db" in d["Config"]["Env"]')" == true ]] \
    && ok "CWC_DB_PATH=/var/lib/cwconsumer/state.db" || fail "CWC_DB_PATH not set in the image"
[[ "$(inspect 'list(d["Config"].get("Volumes") or {})')" == '["/var/lib/cwconsumer"]' ]] \
    && ok "VOLUME /var/lib/cwconsumer" || fail "VOLUME is $(inspect 'list(d["Config"].get("Volumes") or {})')"
probe='import importlib.util as u, sys; bad = [m for m in ("moto", "pip", "pytest") if u.find_spec(m)]; print(bad or "none"); sys.exit(bool(bad))'
found="$(run_ --rm --network=none --entrypoint /opt/venv/bin/python "$IMAGE" -c "$probe" 2>&1)" \
    && ok "no moto/pip/pytest in /opt/venv" || fail "found in the image: $found"
sql="$(run_ --rm --network=none --entrypoint /opt/venv/bin/python "$IMAGE" -c \
    'import importlib.resources as r; print(sorted(p.name for p in r.files("cwconsumer").joinpath("migrations").iterdir() if p.name.endswith(".sql")))')"
ok "migrations in the package: $sql"

if [[ $build_only -eq 1 ]]; then
    step "done (--build-only)"
    echo "total $(( $(date +%s) - started ))s, failures: $failures"
    exit $(( failures > 0 ))
fi

# ---------------------------------------------------------------------------------------------
step "4. run against moto and a local sink"
"$PYTHON" -c 'import moto.server, botocore' 2>/dev/null \
    || die "$PYTHON lacks moto[server]/botocore (set PYTHON=/path/to/venv/bin/python)"
moto_port="$("$PYTHON" "$helpers" free-port)"
"$PYTHON" -m moto.server -H 127.0.0.1 -p "$moto_port" > "$work/moto.log" 2>&1 &
pids+=($!)
"$PYTHON" "$helpers" sink "$work/sink.port" "$work/sink.jsonl" &
pids+=($!)
for _ in $(seq 100); do
    [[ -s "$work/sink.port" && "$("$PYTHON" "$helpers" http-status "http://127.0.0.1:$moto_port/moto-api/")" != 000 ]] && break
    sleep 0.2
done
sink_port="$(cat "$work/sink.port")"
admin_port="$("$PYTHON" "$helpers" free-port)"
ok "moto on 127.0.0.1:$moto_port, sink on 127.0.0.1:$sink_port, admin on 127.0.0.1:$admin_port"

"$PYTHON" "$helpers" seed "http://127.0.0.1:$moto_port" "$GROUP" "$STREAM" 25 0
ok "put 25 events into $GROUP/$STREAM"

podman_ volume create "$VOLUME" >/dev/null
# Dummy credentials for moto; the image itself carries none.
run_ -d --name "$CONTAINER" --network=host --read-only --tmpfs /tmp \
    -v "$VOLUME:/var/lib/cwconsumer" \
    -e CWC_LOG_GROUPS="$GROUP" \
    -e CWC_SINK_URL="http://127.0.0.1:$sink_port/ingest" \
    -e CWC_ADMIN_ADDR="127.0.0.1:$admin_port" \
    -e CWC_POLL_INTERVAL=1s -e CWC_DISCOVERY_INTERVAL=2s -e CWC_BATCH_MAX_WAIT=250ms \
    -e AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" -e AWS_REGION=us-east-1 \
    -e AWS_ACCESS_KEY_ID=AKIAVERIFYIMAGEDUMMY -e AWS_SECRET_ACCESS_KEY=dummy-secret-for-moto-only \
    "$IMAGE" >/dev/null
container_created=1
ok "container $CONTAINER started"

# ---------------------------------------------------------------------------------------------
step "5. checks while running"
if counts="$("$PYTHON" "$helpers" wait-events "$work/sink.jsonl" 25 60)"; then
    ok "events at the sink: $counts"
else
    fail "events at the sink: $counts"
fi
status="000"
for _ in $(seq 60); do
    status="$("$PYTHON" "$helpers" http-status "http://127.0.0.1:$admin_port/healthz")"
    [[ "$status" == 200 ]] && break
    sleep 0.5
done
[[ "$status" == 200 ]] && ok "GET /healthz -> 200" || fail "GET /healthz -> $status"
podman_ healthcheck run "$CONTAINER" >/dev/null 2>&1 \
    && ok "image HEALTHCHECK (cwconsumer healthcheck) passes" \
    || fail "image HEALTHCHECK fails: $(podman_ exec "$CONTAINER" cwconsumer healthcheck 2>&1 | tail -1)"
uid_exec="$(podman_ exec "$CONTAINER" id -u)"
uid_main="$(podman_ exec "$CONTAINER" awk '/^Uid:/ { print $2 }' /proc/1/status)"
[[ "$uid_exec" != 0 && "$uid_main" != 0 ]] && ok "id -u = $uid_exec; PID 1 uid = $uid_main" \
    || fail "running as root (id -u = $uid_exec, PID 1 uid = $uid_main)"

# ---------------------------------------------------------------------------------------------
step "6. podman stop -t 30 (SIGTERM)"
t0=$(date +%s%N)
podman_ stop -t 30 "$CONTAINER" >/dev/null
elapsed_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
code="$(podman_ inspect --format '{{.State.ExitCode}}' "$CONTAINER")"
[[ "$code" == 0 ]] && ok "exit code 0" || fail "exit code $code (137 means it had to be killed)"
(( elapsed_ms < (SHUTDOWN_TIMEOUT_S + STOP_MARGIN_S) * 1000 )) \
    && ok "stopped in ${elapsed_ms} ms (limit $((SHUTDOWN_TIMEOUT_S + STOP_MARGIN_S)) s)" \
    || fail "stop took ${elapsed_ms} ms"

# ---------------------------------------------------------------------------------------------
step "7. restart on the same volume"
"$PYTHON" "$helpers" seed "http://127.0.0.1:$moto_port" "$GROUP" "$STREAM" 5 25
podman_ start "$CONTAINER" >/dev/null
if counts="$("$PYTHON" "$helpers" wait-events "$work/sink.jsonl" 30 60)"; then
    ok "after restart: $counts"
    [[ "$counts" == "received=30 "* ]] && ok "nothing re-delivered after the graceful stop" \
        || fail "re-deliveries after a graceful stop: $counts"
else
    fail "after restart: $counts"
fi
podman_ stop -t 30 "$CONTAINER" >/dev/null
code="$(podman_ inspect --format '{{.State.ExitCode}}' "$CONTAINER")"
[[ "$code" == 0 ]] && ok "second stop: exit code 0" || fail "second stop: exit code $code"

# ---------------------------------------------------------------------------------------------
step "8. hot standby on the same volume"
podman_ start "$CONTAINER" >/dev/null
for _ in $(seq 60); do
    [[ "$("$PYTHON" "$helpers" health-role "http://127.0.0.1:$admin_port/healthz")" == active ]] && break
    sleep 0.5
done
standby_port="$("$PYTHON" "$helpers" free-port)"
run_ -d --name "$STANDBY" --network=host --read-only --tmpfs /tmp \
    -v "$VOLUME:/var/lib/cwconsumer" \
    -e CWC_LOG_GROUPS="$GROUP" \
    -e CWC_SINK_URL="http://127.0.0.1:$sink_port/ingest" \
    -e CWC_ADMIN_ADDR="127.0.0.1:$standby_port" \
    -e CWC_POLL_INTERVAL=1s -e CWC_DISCOVERY_INTERVAL=2s -e CWC_BATCH_MAX_WAIT=250ms \
    -e AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" -e AWS_REGION=us-east-1 \
    -e AWS_ACCESS_KEY_ID=AKIAVERIFYIMAGEDUMMY -e AWS_SECRET_ACCESS_KEY=dummy-secret-for-moto-only \
    "$IMAGE" >/dev/null
standby_created=1
role=none
for _ in $(seq 60); do
    role="$("$PYTHON" "$helpers" health-role "http://127.0.0.1:$standby_port/healthz")"
    [[ "$role" == standby ]] && break
    sleep 0.5
done
[[ "$role" == standby ]] && ok "second container reports role=standby" || fail "second container role=$role"
podman_ healthcheck run "$STANDBY" >/dev/null 2>&1 \
    && ok "standby passes the image HEALTHCHECK (ECS keeps it)" \
    || fail "standby fails the image HEALTHCHECK: ECS would replace it again and again ($(podman_ exec "$STANDBY" cwconsumer healthcheck 2>&1 | tail -1))"
"$PYTHON" "$helpers" seed "http://127.0.0.1:$moto_port" "$GROUP" "$STREAM" 5 30
podman_ stop -t 30 "$CONTAINER" >/dev/null
code="$(podman_ inspect --format '{{.State.ExitCode}}' "$CONTAINER")"
[[ "$code" == 0 ]] && ok "active stopped: exit code 0" || fail "active stopped: exit code $code"
if counts="$("$PYTHON" "$helpers" wait-events "$work/sink.jsonl" 35 60)"; then
    ok "after takeover: $counts"
else
    fail "after takeover: $counts"
fi
role="$("$PYTHON" "$helpers" health-role "http://127.0.0.1:$standby_port/healthz")"
[[ "$role" == active ]] && ok "second container is now active" || fail "second container role=$role"
podman_ stop -t 30 "$STANDBY" >/dev/null
code="$(podman_ inspect --format '{{.State.ExitCode}}' "$STANDBY")"
[[ "$code" == 0 ]] && ok "second container stopped: exit code 0" || fail "second container: exit code $code"

step "done"
echo "total $(( $(date +%s) - started ))s, failures: $failures"
exit $(( failures > 0 ))
