#!/usr/bin/env bash
# Builds deploy/Dockerfile for real and runs the image: no Docker engine or registry is reachable
# where quantserve is built, so buildah builds it and podman runs it, from a Debian base image made
# locally with debootstrap.
#
#   tools/image-test.sh            # as root; installs buildah podman runc debootstrap if missing
#
# Steps: (1) the base image `debian:bookworm-slim` is `debootstrap --variant=minbase bookworm`
# imported with podman, made once and kept (cached tarball in $WORK); (2) the release binary is
# built on the host (`cargo build --release`) and handed to the Dockerfile's `BINARY=prebuilt`
# stage, since no rust image can be pulled, and the translation models are fetched into ./models
# when missing (the image has no pip); (3) `buildah bud --pull=never --isolation=chroot` builds
# the image with the models baked in (MODELS=baked); (4) podman runs it, the test waits for
# /health/ready, runs the image's HEALTHCHECK, classifies, translates, scrapes /metrics, reads the
# server's resident memory, then stops it with SIGTERM while a request is in flight and checks that
# the request is answered and the server exits 0.
#
# Environment:
#   IMAGE_TEST_MODELS=mounted   build without models and mount ./models at /models read-only
#   IMAGE_TEST_KEEP=1           keep the image (localhost/quantserve:image-test) afterwards
#   IMAGE_TEST_READY_SECONDS    how long to wait for /health/ready (default 300)
#   IMAGE_TEST_DIR              work directory (default target/image-test)
#   IMAGE_TEST_FRESH_BASE=1     remake the base image from scratch (a cold run)
#   IMAGE_TEST_IMAGE=TAG        test an image built elsewhere (e.g. by the standard build stage)
#                               instead of building one; it is kept. With IMAGE_TEST_MODELS=mounted
#                               when it has no models.
#
# Everything the script creates except the base image and its tarball is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${IMAGE_TEST_DIR:-$ROOT/target/image-test}
MODELS=${IMAGE_TEST_MODELS:-baked}
READY_SECONDS=${IMAGE_TEST_READY_SECONDS:-300}
BASE=docker.io/library/debian:bookworm-slim
TAG=localhost/quantserve:image-test
CTR=quantserve-image-test-$$
PREBUILT=deploy/.prebuilt/quantserve

say() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

case $MODELS in baked | mounted) ;; *) fail "IMAGE_TEST_MODELS must be baked or mounted" ;; esac
[ "$(id -u)" = 0 ] || fail "run as root: debootstrap, buildah and podman (rootful) need it"

missing=()
for tool in buildah podman runc debootstrap curl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman runc debootstrap curl >/dev/null
fi

# runc (crun is not usable on this VM) and explicit ulimits (podman's defaults exceed the limits
# of the container this test itself runs in, and runc refuses to raise them).
mkdir -p "$WORK"
: >"$WORK/podman.log"
cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF=$WORK/containers.conf

cleanup() {
    local rc=$?
    set +e
    if podman container exists "$CTR" 2>/dev/null; then
        [ $rc = 0 ] || { echo "--- container log (last 40 lines)"; podman logs "$CTR" 2>&1 | tail -40; }
        podman rm -f -t 0 "$CTR" >/dev/null 2>&1
    fi
    [ -n "${KEEP:-}" ] || podman rmi -f "$TAG" >/dev/null 2>&1
    [ -n "${dangling_before+set}" ] && remove_new_dangling
    rm -f "$PREBUILT"
    rmdir deploy/.prebuilt 2>/dev/null
    [ $rc = 0 ] && echo "image-test: OK (${SECONDS}s)" || echo "image-test: FAILED (${SECONDS}s)" >&2
}
KEEP=${IMAGE_TEST_KEEP:-}
trap cleanup EXIT
trap 'exit 130' INT TERM   # so that the EXIT trap cleans up on Ctrl-C and kill too

# Containers of an earlier run that was killed before it could clean up.
podman ps -a --format '{{.Names}}' | grep '^quantserve-image-test-' | xargs -r podman rm -f -t 0 >/dev/null 2>&1 || true

# Stage images of the multi-stage build stay behind as dangling images: remove the new ones.
dangling_before=$(podman images -q --filter dangling=true | sort)
remove_new_dangling() {
    comm -13 <(echo "$dangling_before") <(podman images -q --filter dangling=true | sort) |
        xargs -r podman rmi -f >/dev/null 2>&1
}

# ---- (1) base image ----------------------------------------------------------------------------
make_base() {
    if [ -n "${IMAGE_TEST_FRESH_BASE:-}" ]; then
        say "IMAGE_TEST_FRESH_BASE: removing $BASE and its cached tarball"
        podman rmi -f "$BASE" >/dev/null 2>&1 || true
        rm -f "$WORK/bookworm-minbase.tar"
    fi
    if podman image exists "$BASE"; then
        say "base image $BASE present"
    else
        tarball=$WORK/bookworm-minbase.tar
        if [ ! -s "$tarball" ]; then
            say "debootstrap --variant=minbase bookworm"
            rootfs=$WORK/rootfs
            rm -rf "$rootfs"
            debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 ||
                { tail -20 "$WORK/debootstrap.log"; fail "debootstrap failed (log: $WORK/debootstrap.log)"; }
            # What the official slim image leaves out (its dpkg path excludes): documentation
            # but the copyright files, man pages, translations; and package caches and lists.
            find "$rootfs/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
            rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/* \
                "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
            tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
            rm -rf "$rootfs"
        fi
        say "podman import $tarball as $BASE"
        podman import --change 'CMD ["bash"]' "$tarball" "$BASE" >/dev/null
    fi
}

# ---- (2) binary and (3) build --------------------------------------------------------------------
build_image() {
    say "cargo build --release"
    cargo build --release --quiet
    # The image gets no pip, so the translation models must be in ./models before it is built
    # (or mounted); a no-op when they are there already.
    env -u QUANTSERVE_MODELS target/release/quantserve fetch --models models >/dev/null
    mkdir -p deploy/.prebuilt
    # The Dockerfile's own build stage compiles without debug info; strip it here to match.
    objcopy --strip-debug target/release/quantserve "$PREBUILT"

    say "buildah bud (MODELS=$MODELS)"
    build_start=$SECONDS
    buildah bud --pull=never --isolation=chroot --format docker --quiet \
        -f deploy/Dockerfile --build-arg BINARY=prebuilt --build-arg MODELS="$MODELS" -t "$TAG" . >/dev/null
    base_size=$(podman image inspect --format '{{.Size}}' "$BASE")
    echo "built in $((SECONDS - build_start))s on the base image $BASE ($((base_size / 1000000)) MB)"
}

if [ -n "${IMAGE_TEST_IMAGE:-}" ]; then
    TAG=$IMAGE_TEST_IMAGE
    KEEP=1
    podman image exists "$TAG" || fail "no image $TAG"
    [ "$MODELS" = baked ] || [ -d models/en-pt/fp32 ] || fail "models/ lacks the translation models (quantserve fetch)"
    say "testing the existing image $TAG"
else
    make_base
    build_image
fi
size=$(podman image inspect --format '{{.Size}}' "$TAG")
echo "image $TAG: $((size / 1000000)) MB ($size bytes)"
[ "$(podman image inspect --format '{{.Config.User}}' "$TAG")" = "10001:10001" ] || fail "image does not run as uid 10001"
[ "$(podman image inspect --format '{{.Config.StopSignal}}' "$TAG")" = "SIGTERM" ] || fail "STOPSIGNAL is not SIGTERM"
podman image inspect --format '{{.Config.Healthcheck.Test}}' "$TAG" | grep -q health/live || fail "no HEALTHCHECK on /health/live"

# ---- (4) run ------------------------------------------------------------------------------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$port
# Run it as the Kubernetes Deployment does: read-only root file system, no capabilities, no
# privilege escalation, the ConfigMap's config file mounted over the image's, threads from the
# CPU limit. --health-interval=disable: podman schedules healthchecks with systemd timers, and
# there is no systemd here; the check itself still runs below with `podman healthcheck run`.
run_args=(-d --name "$CTR" -p "127.0.0.1:$port:8080" --health-interval=disable
    --read-only --cap-drop=ALL --security-opt=no-new-privileges
    -v "$ROOT/deploy/k8s/base/quantserve.toml:/etc/quantserve/quantserve.toml:ro"
    -e QUANTSERVE_WORKERS=1 -e QUANTSERVE_THREADS=2)
[ "$MODELS" = mounted ] && run_args+=(-v "$ROOT/models:/models:ro")
say "podman run ($URL)"
# podman's stderr goes to a file: without systemd it complains about healthcheck timers.
podman run "${run_args[@]}" "$TAG" >/dev/null 2>>"$WORK/podman.log" || { cat "$WORK/podman.log"; fail "podman run failed"; }

ready_start=$SECONDS
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health/ready")" = 200 ]; do
    [ "$(podman inspect --format '{{.State.Running}}' "$CTR")" = true ] || fail "the container exited before it was ready"
    [ $((SECONDS - ready_start)) -lt "$READY_SECONDS" ] || fail "not ready after ${READY_SECONDS}s"
    sleep 1
done
echo "ready after $((SECONDS - ready_start))s"

say "HEALTHCHECK"
podman healthcheck run "$CTR" || fail "the image's HEALTHCHECK failed"
echo "healthy"

say "classify"
out=$(curl -sS --max-time 30 "$URL/classify" -H 'content-type: application/json' \
    -d '{"inputs": ["A gorgeous, witty, seductive movie.", "A dull, lifeless mess."]}')
echo "$out"
echo "$out" | grep -q '"label":"positive"' && echo "$out" | grep -q '"label":"negative"' || fail "classify: unexpected answer"

say "translate"
out=$(curl -sS --max-time 30 "$URL/translate" -H 'content-type: application/json' \
    -d '{"q": "How are you today?", "source": "en", "target": "pt"}')
echo "$out"
echo "$out" | grep -q 'Como você está hoje?' || fail "translate: unexpected answer"

say "/metrics"
metrics=$(curl -sS --max-time 10 "$URL/metrics")
grep -E '^quantserve_requests_total\{.*model="sentiment".*status="200"' <<<"$metrics" || fail "no sentiment request counted in /metrics"
grep -E '^quantserve_requests_total\{.*model="en-pt".*status="200"' <<<"$metrics" || fail "no en-pt request counted in /metrics"
rss=$(podman exec "$CTR" sh -c 'grep VmRSS /proc/1/status')
echo "server (pid 1 in the container) $rss after loading the default config and serving these requests"
[ "$(podman exec "$CTR" id -u)" = 10001 ] || fail "the server does not run as uid 10001"

say "SIGTERM with a request in flight"
# 64 texts of 4 sentences through fp32 take several seconds on 2 cores: the stop lands while
# the request runs, and the drain must let it finish.
body=$(python3 -c 'import json; t = "The quick brown fox jumps over the lazy dog near the river bank. " * 4; print(json.dumps({"q": [f"{i}. {t}" for i in range(64)], "source": "en", "target": "pt", "variant": "fp32"}))')
curl -s -o "$WORK/inflight.json" -w '%{http_code}' --max-time 120 "$URL/translate" \
    -H 'content-type: application/json' -d "$body" >"$WORK/inflight.status" &
inflight=$!
sleep 1
stop_start=$SECONDS
podman stop -t 45 "$CTR" >/dev/null 2>>"$WORK/podman.log"
wait "$inflight" || true
echo "stopped in $((SECONDS - stop_start))s; in-flight request answered $(cat "$WORK/inflight.status")"
[ "$(cat "$WORK/inflight.status")" = 200 ] || fail "the in-flight request was not answered during the drain"
code=$(podman inspect --format '{{.State.ExitCode}}' "$CTR")
logs=$(podman logs "$CTR" 2>&1)
grep -E 'SIGTERM|draining|stopped' <<<"$logs" || true
[ "$code" = 0 ] || fail "exit code $code after SIGTERM (expected a clean drain and 0)"
grep -q 'SIGTERM received' <<<"$logs" || fail "the server did not log SIGTERM"
grep -q 'in_flight=[1-9]' <<<"$logs" || echo "note: the request finished before SIGTERM arrived; the drain was not exercised"
