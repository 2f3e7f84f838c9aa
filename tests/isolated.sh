#!/usr/bin/env bash
# Run a command with loopback as the only network, so a stray connection (the GCE metadata server, a real Google API)
# fails at once and loudly instead of leaving the machine. Needs `unshare -rn` (root, or unprivileged user namespaces);
# elsewhere it runs the command as it is, with a note.
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

# A new network namespace starts with lo down: without it even 127.0.0.1 is unreachable.
if unshare -rn sh -c 'ip link set lo up' 2>/dev/null; then
    export POSTDEPLOY_TEST_NETWORK=loopback-only
    exec unshare -rn sh -c 'ip link set lo up && exec "$@"' isolated "$@"
fi

echo "note: unshare -rn does not work here (needs root or user namespaces, and ip): running $1 with the host network" >&2
export POSTDEPLOY_TEST_NETWORK=host
exec "$@"
