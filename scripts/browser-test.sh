#!/usr/bin/env bash
# The browser peer (wasm32) against a native peer on loopback.
#
#   scripts/browser-test.sh          # install what is missing, build, run the wasm-bindgen-test
#                                    # suite in headless Chromium, then check the example page
#   scripts/browser-test.sh --demo   # build the example page, start a native peer and a web
#                                    # server, print the page's URL; Ctrl-C stops everything
#
# Toolchain (see docs in examples/browser/): Debian's rustc-web 1.96 with rust-web-src and
# `-Z build-std`, linked by wasm-ld-22, glue by wasm-bindgen-cli (pinned to the crate's
# wasm-bindgen), tests by wasm-bindgen-test-runner driving chromedriver. The wasm build has
# its own target dir and environment, so the host's rustup builds are untouched.
# Everything this script starts is stopped when it exits, and each has a time limit of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MODE=test
case "${1:-}" in
    "") ;;
    --demo) MODE=demo ;;
    *) echo "usage: $0 [--demo]" >&2; exit 2 ;;
esac

WASM_BINDGEN_VERSION=0.2.130
# Built once per machine (about 5 minutes), outside the checkout so fresh clones reuse it.
CACHE=${XDG_CACHE_HOME:-${HOME:-$ROOT/target-tools}/.cache}
TOOLS=${DS_TOOLS_DIR:-$CACHE/distributed-scope}/wasm-bindgen-$WASM_BINDGEN_VERSION
WASM_TARGET_DIR=$ROOT/target-wasm
HOST_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CRATE=$ROOT/examples/browser
LIMIT=${BROWSER_TEST_LIMIT:-1200}   # seconds any started process may live

step() { printf '== %s\n' "$*"; }
seconds() { echo $(( $(date +%s) - $1 ))s; }

# --- what is missing ------------------------------------------------------------------------
step "toolchain"
missing=()
for package in rustc-web cargo-web rust-web-src lld-22 chromium chromium-driver; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    started=$(date +%s)
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    echo "installed ${missing[*]} in $(seconds "$started")"
fi
if [[ "$("$TOOLS/bin/wasm-bindgen" --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]]; then
    started=$(date +%s)
    # Not --locked: its lockfile pins a webpki-roots version the registry here lacks. The CLI
    # must equal the crate's `wasm-bindgen = "=0.2.130"`.
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --root "$TOOLS"
    echo "installed wasm-bindgen-cli $WASM_BINDGEN_VERSION in $(seconds "$started")"
fi
/usr/bin/rustc --version
"$TOOLS/bin/wasm-bindgen" --version

# The wasm build's environment: Debian's compiler (not the rustup proxies first on PATH),
# build-std on stable through RUSTC_BOOTSTRAP (always set: toggling it rebuilds everything).
wasm_cargo() {
    (cd "$CRATE" && env RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
        CARGO_TARGET_DIR="$WASM_TARGET_DIR" "$@" timeout "$LIMIT" /usr/bin/cargo "${CARGO_ARGS[@]}")
}

# --- processes we start, and their cleanup ---------------------------------------------------
WORK=$(mktemp -d)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits for `pattern` in `file` (written by process `pid`) and prints its first match.
wait_for_line() {
    local file=$1 pattern=$2 pid=$3 line
    for _ in $(seq 300); do
        line=$(sed -n "s/$pattern/\\1/p" "$file" | head -n 1)
        if [[ -n $line ]]; then
            echo "$line"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "no '$pattern' from $file:" >&2
    cat "$file" "$file.err" 2>/dev/null >&2 || true
    return 1
}

start_peer() {
    step "native peer (cargo build --example peer, host toolchain)"
    local started
    started=$(date +%s)
    cargo build --example peer
    echo "built in $(seconds "$started")"
    # The binary itself rather than `cargo run`, so that the pid we stop is the peer's.
    # The pages that may link: the test runner's and the example page's (the peer refuses
    # upgrades from any other origin with 403).
    timeout "$LIMIT" "$HOST_TARGET_DIR/debug/examples/peer" --id server --listen 127.0.0.1:0 \
        --allow-origin "http://127.0.0.1:$TEST_PORT" --allow-origin "http://127.0.0.1:$PAGE_PORT" \
        >"$WORK/peer" 2>"$WORK/peer.err" &
    pids+=($!)
    SERVER_URL=$(wait_for_line "$WORK/peer" '^listening on \(.*\)$' "$!")
    echo "server listening on $SERVER_URL"
}

build_page() {
    step "example page (wasm32 release build + wasm-bindgen)"
    local started
    started=$(date +%s)
    CARGO_ARGS=(build --release --lib)
    wasm_cargo
    rm -rf "$WASM_TARGET_DIR/www"
    mkdir -p "$WASM_TARGET_DIR/www"
    cp "$CRATE/www/index.html" "$WASM_TARGET_DIR/www/"
    "$TOOLS/bin/wasm-bindgen" --target web --no-typescript --out-dir "$WASM_TARGET_DIR/www/pkg" \
        "$WASM_TARGET_DIR/wasm32-unknown-unknown/release/browser_example.wasm"
    echo "built in $(seconds "$started"): $(du -k "$WASM_TARGET_DIR/www/pkg/browser_example_bg.wasm" | cut -f1) KiB of wasm"
}

serve_page() {
    local port=$PAGE_PORT
    timeout "$LIMIT" python3 -u -m http.server "$port" --bind 127.0.0.1 \
        --directory "$WASM_TARGET_DIR/www" >"$WORK/http" 2>&1 &
    pids+=($!)
    wait_for_line "$WORK/http" '^\(Serving HTTP\).*$' "$!" >/dev/null
    PAGE_URL="http://127.0.0.1:$port/index.html?server=$SERVER_URL"
}

TEST_PORT=$(free_port)
PAGE_PORT=$(free_port)
start_peer

if [[ $MODE == demo ]]; then
    build_page
    serve_page
    step "demo"
    echo "open $PAGE_URL"
    echo "(Ctrl-C stops the peer and the web server; they stop by themselves after ${LIMIT}s)"
    wait "${pids[0]}" || true
    exit 0
fi

step "wasm-bindgen-test in headless Chromium"
started=$(date +%s)
CARGO_ARGS=(test --release --tests)
wasm_cargo CHROMEDRIVER=/usr/bin/chromedriver \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$TOOLS/bin/wasm-bindgen-test-runner" \
    WASM_BINDGEN_TEST_TIMEOUT=60 WASM_BINDGEN_TEST_ADDRESS="127.0.0.1:$TEST_PORT" \
    DS_SERVER_URL="$SERVER_URL"
echo "build and tests took $(seconds "$started")"

build_page
serve_page
step "example page in headless Chromium"
port=$(free_port)
timeout "$LIMIT" /usr/bin/chromedriver --port="$port" >"$WORK/chromedriver" 2>&1 &
pids+=($!)
wait_for_line "$WORK/chromedriver" '^\(ChromeDriver was started\).*$' "$!" >/dev/null
timeout 120 python3 - "http://127.0.0.1:$port" "$PAGE_URL" <<'PY'
"""Loads the page through chromedriver and polls #result until it is no longer pending."""
import json
import sys
import time
import urllib.request

driver, page = sys.argv[1], sys.argv[2]


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(driver + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["value"]


args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
session = call("POST", "/session", {"capabilities": {"alwaysMatch": {
    "browserName": "chrome", "goog:chromeOptions": {"args": args}}}})["sessionId"]
try:
    call("POST", f"/session/{session}/url", {"url": page})
    script = """const r = document.getElementById("result");
        return [r.dataset.status, r.textContent,
                [...document.querySelectorAll("#hops li")].map(li => li.textContent)];"""
    deadline = time.time() + 60
    while True:
        status, result, hops = call("POST", f"/session/{session}/execute/sync",
                                    {"script": script, "args": []})
        if status != "pending" or time.time() > deadline:
            break
        time.sleep(0.2)
    for hop in hops:
        print("  page:", hop)
    print("  page result:", status, result)
    sys.exit(0 if status == "ok" and result == "([42; 43], 44)" else 1)
finally:
    call("DELETE", f"/session/{session}")
PY
step "browser tests passed"
