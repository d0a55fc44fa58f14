#!/usr/bin/env bash
# install-slurm.sh -- install Debian's Slurm packages for the test cluster (scripts/slurm-cluster.sh).
#
# Idempotent and quiet: does nothing when every binary is already present. Runs as root (CI) or
# through sudo when available. Package postinst scripts are kept from starting system daemons.
# Debian 12 ships Slurm 22.05.8; the test cluster (docs/SLURM.md) relies on that build.
set -euo pipefail

BINS="munged slurmctld slurmd slurmstepd sbatch srun squeue sinfo scontrol scancel sacct unshare"
PKGS="munge slurmctld slurmd slurm-client"

missing=""
for b in $BINS; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || missing="$missing $b"
done
[ -z "$missing" ] && exit 0

log() { printf '[install-slurm] %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { log "need root (or sudo) to install:$missing"; exit 1; }
    SUDO="sudo -n"
fi
command -v apt-get >/dev/null 2>&1 || { log "no apt-get: install $PKGS by hand (missing:$missing)"; exit 1; }

log "installing $PKGS (missing:$missing)"
# A policy-rc.d that denies everything keeps postinst from starting munge/slurmd system-wide.
own_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
fi
cleanup() { if [ $own_policy = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt_install() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PKGS util-linux >/dev/null; }
# Try without `apt-get update` first: on a machine with fresh lists it saves seconds.
if ! apt_install 2>/dev/null; then
    $SUDO apt-get update -qq >/dev/null
    apt_install
fi
for b in $BINS; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || { log "still missing after install: $b"; exit 1; }
done
log "installed: slurm $(dpkg-query -W -f "\${Version}" slurm-client 2>/dev/null)"
