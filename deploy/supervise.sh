#!/bin/sh
# Roost's update supervisor: runs as root before every start of the agent
# (ExecStartPre=+ in roost-agent.service), never from the binary it judges.
#
# The agent stages a new version beside the current one, writes
# <state>/update/pending (version, previous, deadline), switches the `current`
# symlink and exits so systemd starts the new one. The new agent removes the
# pending file itself once it has been connected and collecting for its health
# window. If this step runs again while the file is still there — the new
# version crashed, failed its health window or hung past the deadline and
# was killed by the watchdog — it switches back to the previous version and
# writes <state>/update/failed with the reason, for the agent to report.
set -eu

ROOT=/opt/roost
STATE=/var/lib/roost-agent
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=$2; shift 2 ;;
        --state) STATE=$2; shift 2 ;;
        *) echo "supervise: unknown option $1" >&2; exit 2 ;;
    esac
done
UPDATE=$STATE/update
PENDING=$UPDATE/pending
VERSION_RE='^[0-9]+\.[0-9]+\.[0-9]+[A-Za-z0-9.+-]*$'

valid() { printf '%s' "$1" | grep -Eq "$VERSION_RE" && [ -x "$ROOT/$1/roost" ] && [ ! -L "$ROOT/$1" ]; }
point_at() {
    ln -sfn "$1" "$ROOT/current.supervise" && mv -Tf "$ROOT/current.supervise" "$ROOT/current"
}
value() { sed -n "s/^$1=//p" "$2" 2>/dev/null | head -n 1; }

if [ -f "$PENDING" ] && [ ! -L "$PENDING" ]; then
    new=$(value version "$PENDING")
    previous=$(value previous "$PENDING")
    deadline=$(value deadline "$PENDING")
    starts=$(value starts "$PENDING")
    case "$starts" in ''|*[!0-9]*) starts=0 ;; esac
    case "$deadline" in ''|*[!0-9]*) deadline=0 ;; esac
    starts=$((starts + 1))
    now=$(date +%s)
    if [ "$starts" -ge 2 ] || [ "$now" -gt "$deadline" ]; then
        if valid "$previous"; then
            point_at "$previous"
            why="roost $new did not become healthy (connected and collecting) within its health window"
            [ "$now" -gt "$deadline" ] && why="$why (deadline passed)"
            # A fresh file (mktemp: never one the agent user prepared), readable by the agent.
            tmp=$(mktemp "$UPDATE/.failed.XXXXXX")
            printf 'version=%s\nprevious=%s\nat=%s\nreason=%s; started %s time(s); rolled back to %s\n' \
                "$new" "$previous" "$now" "$why" "$((starts - 1))" "$previous" >"$tmp"
            chmod 0644 "$tmp"
            mv -f "$tmp" "$UPDATE/failed"
            rm -f "$PENDING"
            echo "supervise: $why; switched back to $previous" >&2
        else
            echo "supervise: roost $new is unhealthy but the previous version '$previous' is not installed in $ROOT; leaving it" >&2
            rm -f "$PENDING"
        fi
    else
        tmp=$(mktemp "$UPDATE/.pending.XXXXXX")
        sed "/^starts=/d" "$PENDING" >"$tmp" && printf 'starts=%s\n' "$starts" >>"$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" "$PENDING"
    fi
fi

# A broken `current` (removed or half-written version) falls back to the last good one.
target=$(readlink "$ROOT/current" 2>/dev/null || true)
if ! valid "$target"; then
    good=$(head -n 1 "$UPDATE/good" 2>/dev/null || true)
    if valid "$good"; then
        point_at "$good"
        echo "supervise: $ROOT/current pointed at '$target'; back to the last good version $good" >&2
    fi
fi
exit 0
