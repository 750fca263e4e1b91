#!/usr/bin/env bash
# Autobahn|Testsuite fuzzingclient against headrace serving the echo app, size limits 16 MiB.
#
#   benchmarks/websocket/autobahn.sh [OUTDIR]              # all 517 cases (~15 min)
#   EXCLUDE='["12.*","13.*"]' benchmarks/websocket/autobahn.sh   # fast subset (~30 s)
#
# Needs wstest (Python 2.7): ../shared/tools/autobahn/install_autobahn.sh PY27 /tmp/ab-venv,
# then WSTEST=/tmp/ab-venv/bin/wstest (the default here). Extra headrace flags: HEADRACE_ARGS.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
tools="${AUTOBAHN_TOOLS:-$repo/../shared/tools/autobahn}"
outdir="${1:-/tmp/headrace-autobahn}"
export WSTEST="${WSTEST:-/tmp/ab-venv/bin/wstest}"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cd "$repo"
python3 -m headrace -b 127.0.0.1 -p "$port" -v 0 \
    --websocket-max-message-size 16MiB --websocket-max-frame-size 16MiB \
    ${HEADRACE_ARGS:-} benchmarks.websocket.echo_app:app &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
    sleep 0.2
done
"$tools/autobahn_fuzzingclient.sh" 127.0.0.1 "$port" headrace "$outdir"
