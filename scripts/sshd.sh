#!/usr/bin/env bash
# A real OpenSSH server on localhost (as root), idempotent, for the tests that reach the SLURM cluster of
# scripts/slurm.sh through AiiDA's core.ssh transport, the way a daemon on a workstation reaches a cluster:
# install openssh-server when missing, host keys, sshd listening on 127.0.0.1:22, a key pair for the test
# (~/.ssh/grimperium_test_ed25519, authorised for root; key authentication only) and localhost's host key in
# ~/.ssh/known_hosts, so that the client checks it (no auto-add).
# Prints nothing on success but a final `SSHD=ready` line; diagnostics go to stderr.
set -euo pipefail
say() { echo "sshd.sh: $*" >&2; }

if ! dpkg -s openssh-server >/dev/null 2>&1 || ! dpkg -s openssh-client >/dev/null 2>&1; then
  say "installing openssh-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null; }
fi
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
conf=/etc/ssh/sshd_config.d/grimperium.conf
mkdir -p "$(dirname "$conf")"
want='# Written by aiida-grimperium scripts/sshd.sh: keys only, loopback only.
ListenAddress 127.0.0.1
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PubkeyAuthentication yes'
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
  printf '%s\n' "$want" > "$conf"
  pkill -x sshd 2>/dev/null || true
  sleep 0.5
fi
/usr/sbin/sshd -t || { say "sshd configuration is invalid"; exit 1; }
pgrep -x sshd >/dev/null || /usr/sbin/sshd

key=$HOME/.ssh/grimperium_test_ed25519
mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh"
[ -f "$key" ] || ssh-keygen -q -t ed25519 -N '' -C grimperium-test -f "$key"
touch "$HOME/.ssh/authorized_keys" && chmod 600 "$HOME/.ssh/authorized_keys"
grep -qF "$(cut -d' ' -f2 "$key.pub")" "$HOME/.ssh/authorized_keys" || cat "$key.pub" >> "$HOME/.ssh/authorized_keys"

for attempt in $(seq 1 20); do
  if ssh-keyscan -T 2 -t ed25519 localhost 2>/dev/null | grep -q ed25519; then break; fi
  sleep 0.5
done
known=$HOME/.ssh/known_hosts
touch "$known"
scanned=$(ssh-keyscan -T 2 -t ed25519 localhost 2>/dev/null)
[ -n "$scanned" ] || { say "sshd does not answer on localhost"; exit 1; }
grep -qF "$(echo "$scanned" | cut -d' ' -f3)" "$known" || echo "$scanned" >> "$known"
ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -i "$key" root@localhost true \
  || { say "key login to root@localhost failed"; exit 1; }
echo "SSHD=ready"
