#!/bin/sh
# Roost agent installer, served by the Roost hub at @HUB_URL@/install.sh.
#
#   curl -fsSLk --pinnedpubkey 'sha256//…' @HUB_URL@/install.sh | sudo sh -s -- --join rjt_…
#
# It downloads the agent from this hub only (over the same pinned connection),
# checks the release's operator signature and SHA-256, creates the `roost`
# system user, installs /opt/roost/<version>/roost with a `current` symlink,
# writes /etc/roost/agent.toml (read-only ceiling) and the systemd unit,
# enrols with the join token and starts the agent. Running it again is
# harmless; `--uninstall` removes what it made. See docs/install.md.
set -eu

HUB_URL=@HUB_URL_Q@
PIN=@PIN_Q@
OPERATOR_KEYS=@OPERATOR_KEYS_Q@
RELEASES=@RELEASES_Q@

PREFIX=/opt/roost
CONF_DIR=/etc/roost
CONF=$CONF_DIR/agent.toml
STATE_DIR=/var/lib/roost-agent
# Root's own place: the agent user may write /opt/roost (to stage updates), never what root runs.
SUPERVISOR_DIR=/usr/local/lib/roost
UNIT=/etc/systemd/system/roost-agent.service
RECORD=$CONF_DIR/.installed-by-roost
SERVICE_USER=roost

say() { printf 'roost install: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

JOIN=""
NAME=""
UNINSTALL=0
SIG_CHECK=1
DOCKER=0
while [ $# -gt 0 ]; do
    case "$1" in
        --join) [ $# -ge 2 ] || die "--join needs a token (rjt_…)"; JOIN=$2; shift 2 ;;
        --name) [ $# -ge 2 ] || die "--name needs a value"; NAME=$2; shift 2 ;;
        --uninstall) UNINSTALL=1; shift ;;
        --no-signature-check) SIG_CHECK=0; shift ;;
        --docker) DOCKER=1; shift ;;
        -h|--help) sed -n '2,12p' "$0" 2>/dev/null || true; exit 0 ;;
        *) die "unknown option $1 (expected --join TOKEN, --name NAME, --docker, --uninstall)" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run me as root (… | sudo sh -s -- --join …)"
[ -z "$NAME" ] || printf '%s\n' "$NAME" | grep -Eq '^[A-Za-z0-9 ._-]{1,100}$' || die "--name may hold letters, digits, spaces, dots, dashes and underscores (at most 100)"

run_as_roost() {
    if command -v runuser >/dev/null 2>&1; then runuser -u "$SERVICE_USER" -- "$@"
    elif command -v setpriv >/dev/null 2>&1; then setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --init-groups -- "$@"
    else su -s /bin/sh "$SERVICE_USER" -c '"$0" "$@"' -- "$@"; fi
}

have_systemd() { [ -d /run/systemd/system ]; }

uninstall() {
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now roost-agent.service >/dev/null 2>&1 || true
    fi
    rm -f "$UNIT"
    command -v systemctl >/dev/null 2>&1 && systemctl daemon-reload >/dev/null 2>&1 || true
    rm -rf "$PREFIX" "$STATE_DIR" "$SUPERVISOR_DIR"
    if [ -f "$RECORD" ]; then
        if grep -qx 'config=1' "$RECORD"; then rm -f "$CONF"; fi
        if grep -qx 'user=1' "$RECORD" && getent passwd "$SERVICE_USER" >/dev/null 2>&1; then
            userdel "$SERVICE_USER" >/dev/null 2>&1 || say "could not remove user $SERVICE_USER; remove it with userdel"
        fi
        rm -f "$RECORD"
    fi
    rmdir "$CONF_DIR" 2>/dev/null || true
    say "removed the Roost agent (unit, $PREFIX, $SUPERVISOR_DIR, $STATE_DIR and what this script created)"
}

if [ "$UNINSTALL" -eq 1 ]; then uninstall; exit 0; fi

case "$(uname -m)" in
    x86_64|amd64) ARCH=x86_64 ;;
    aarch64|arm64) ARCH=aarch64 ;;
    *) die "no Roost agent build for $(uname -m); see docs/install.md (pip install works anywhere Python 3.11 runs)" ;;
esac
NAME_BIN=roost-linux-$ARCH
case " $RELEASES " in
    *" $NAME_BIN "*) ;;
    *) die "this hub holds no signed $NAME_BIN release (it has: ${RELEASES:-none}); add one on the hub with \`roost release add\`" ;;
esac
command -v curl >/dev/null 2>&1 || die "curl is needed"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum (coreutils) is needed"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT INT TERM

# The hub's certificate is pinned by its public key, so no CA has to be trusted
# first and a host pretending to be the hub is refused before anything is sent.
fetch() {
    curl -fsSL --proto '=https,http' --insecure --pinnedpubkey "$PIN" --retry 2 -o "$2" "$HUB_URL$1" \
        || die "cannot download $1 from $HUB_URL (is the hub reachable, and is this the hub that made the token?)"
}
fetch "/download/$NAME_BIN.manifest" "$WORK/manifest"
fetch "/download/$NAME_BIN.sig" "$WORK/sig"

field() { sed -n "s/^$1: //p" "$WORK/manifest" | head -n 1; }
[ "$(field roost-release)" = 1 ] || die "the release manifest from the hub is not a Roost release manifest"
[ "$(field name)" = "$NAME_BIN" ] || die "the release manifest is for $(field name), not $NAME_BIN"
VERSION=$(field version)
SHA256=$(field sha256)
SIZE=$(field size)
EXPIRES=$(field expires)
printf '%s' "$VERSION" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+[A-Za-z0-9.+-]*$' || die "the release manifest names no valid version"
printf '%s' "$SHA256" | grep -Eq '^[0-9a-f]{64}$' || die "the release manifest has no valid sha256"
[ "$(date +%s)" -le "$EXPIRES" ] || die "the $VERSION release manifest expired; sign the release again on your machine (\`roost release sign\`)"

# The operator signed this manifest on their own machine; the hub cannot make one.
if [ "$SIG_CHECK" -eq 1 ]; then
    command -v openssl >/dev/null 2>&1 || die "openssl is needed to check the release signature (apt-get install openssl), or re-run with --no-signature-check to rely on the pinned connection and SHA-256 alone"
    [ -n "$OPERATOR_KEYS" ] || die "this hub names no operator key ([hub] operator_keys), so no release can be checked"
    { printf 'roost release v1\n'; cat "$WORK/manifest"; } >"$WORK/signed"
    base64 -d "$WORK/sig" >"$WORK/sig.bin" 2>/dev/null || die "the release signature is not base64"
    ok=0
    for key in $OPERATOR_KEYS; do
        # An Ed25519 SubjectPublicKeyInfo is a fixed 12-byte header and the 32-byte key.
        { printf '%s\n' '-----BEGIN PUBLIC KEY-----'; { printf '\060\052\060\005\006\003\053\145\160\003\041\000'; printf '%s' "$key" | base64 -d; } | base64; printf '%s\n' '-----END PUBLIC KEY-----'; } >"$WORK/key.pem"
        if openssl pkeyutl -verify -pubin -inkey "$WORK/key.pem" -rawin -in "$WORK/signed" -sigfile "$WORK/sig.bin" >/dev/null 2>&1; then ok=1; break; fi
    done
    [ "$ok" -eq 1 ] || die "the $NAME_BIN $VERSION release is not signed by an operator key this hub names; nothing was installed"
fi

DEST=$PREFIX/$VERSION
if [ -x "$DEST/roost" ] && [ "$(sha256sum "$DEST/roost" | cut -d' ' -f1)" = "$SHA256" ]; then
    say "roost $VERSION is already installed in $DEST"
else
    fetch "/download/$NAME_BIN" "$WORK/roost"
    got=$(sha256sum "$WORK/roost" | cut -d' ' -f1)
    [ "$(wc -c <"$WORK/roost" | tr -d ' ')" = "$SIZE" ] || die "the download is $(wc -c <"$WORK/roost" | tr -d ' ') bytes, the release has $SIZE (truncated?); nothing was installed"
    [ "$got" = "$SHA256" ] || die "the download's SHA-256 is $got, the signed release says $SHA256; nothing was installed"
fi

created_user=0
if ! getent passwd "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER" \
        || die "cannot create the system user $SERVICE_USER"
    created_user=1
fi
# The docker group is root on that host: only when asked (--docker), for the docker integration.
if [ "$DOCKER" -eq 1 ]; then
    getent group docker >/dev/null 2>&1 || die "--docker: this host has no docker group"
    usermod -a -G docker "$SERVICE_USER"
fi

install -d -m 0755 "$CONF_DIR"
if [ ! -f "$RECORD" ]; then printf 'user=%s\n' "$created_user" >"$RECORD"; fi
if [ ! -f "$CONF" ]; then
    cat >"$CONF" <<EOF
# Roost agent, written by the hub's install.sh. The ceiling is this host's
# limit on what the hub may run here, whatever it grants: read-only until you
# change it (docs/security.md).
[agent]
discovery = false
${NAME:+name = "$NAME"}

[agent.ceiling]
mode = "read-only"
EOF
    chmod 0644 "$CONF"
    echo 'config=1' >>"$RECORD"
fi

install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0755 "$PREFIX"
install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0700 "$STATE_DIR"
if [ ! -x "$DEST/roost" ] || [ "$(sha256sum "$DEST/roost" | cut -d' ' -f1)" != "$SHA256" ]; then
    install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0755 "$DEST"
    install -o root -g root -m 0755 "$WORK/roost" "$DEST/roost.new"
    mv -f "$DEST/roost.new" "$DEST/roost"
fi
install -d -o root -g root -m 0755 "$SUPERVISOR_DIR"
cat >"$SUPERVISOR_DIR/supervise.new" <<'SUPERVISE'
@SUPERVISE@
SUPERVISE
chmod 0755 "$SUPERVISOR_DIR/supervise.new"
mv -f "$SUPERVISOR_DIR/supervise.new" "$SUPERVISOR_DIR/supervise"
cp "$WORK/manifest" "$DEST/release.manifest"
ln -sfn "$VERSION" "$PREFIX/current.new" && mv -Tf "$PREFIX/current.new" "$PREFIX/current"
[ -f "$STATE_DIR/update/good" ] || { install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0700 "$STATE_DIR/update"; printf '%s\n' "$VERSION" >"$STATE_DIR/update/good"; chown "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR/update/good"; }

cat >"$UNIT" <<'UNIT_EOF'
@AGENT_UNIT@
UNIT_EOF
chmod 0644 "$UNIT"

if [ -f "$STATE_DIR/agent.json" ]; then
    say "already enrolled; keeping this host's identity"
elif [ -n "$JOIN" ]; then
    run_as_roost "$PREFIX/current/roost" agent --enrol-only --config "$CONF" --data-dir "$STATE_DIR" --hub "$HUB_URL" --join "$JOIN" \
        || die "enrolment failed (see the message above); the agent is installed but not started — fix it and run this again"
else
    die "not enrolled yet: run this again with --join TOKEN (create one with \`roost join-token create\` on the hub)"
fi

if have_systemd && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload
    systemctl enable roost-agent.service >/dev/null 2>&1 || systemctl enable roost-agent.service
    systemctl restart roost-agent.service
    say "roost $VERSION installed and running: systemctl status roost-agent"
else
    say "roost $VERSION installed; no systemd here, start it with: $PREFIX/current/roost agent --config $CONF --data-dir $STATE_DIR"
fi
