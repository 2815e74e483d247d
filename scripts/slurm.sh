#!/usr/bin/env bash
# A real one-node SLURM cluster on localhost (as root), idempotent: install slurm-wlm + munge when missing,
# write /etc/slurm/slurm.conf (2 CPUs, one partition `debug`), start munged, slurmctld and slurmd when they
# are not running, and wait until `sinfo` shows the node idle and `sbatch` accepts a job.
# Prints nothing on success but a final `SLURM=ready` line; diagnostics go to stderr.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm
NODE=$(hostname -s)
CPUS=${SLURM_CPUS:-2}
# 90 % of the RAM, in MB: jobs asking for --mem up to this are accepted (a node claiming more is drained).
MEMORY=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) * 9 / 10 / 1024 ))

say() { echo "slurm.sh: $*" >&2; }

# 1. packages
missing=()
for p in slurm-wlm munge; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi

# 2. configuration: rewritten only when it differs (a changed file needs the daemons restarted)
mkdir -p "$CONF_DIR" "$STATE" "$SPOOL" "$LOGS" /run/munge /var/log/munge /var/lib/munge
conf=$(cat <<EOF
# Written by aiida-grimperium scripts/slurm.sh: a one-node cluster on localhost for tests and demos.
ClusterName=grimperium
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Finished jobs stay in scontrol show job for 10 minutes (tests count submissions from them).
MinJobAge=600
MaxJobCount=100000
# Fast scheduling: short sleeps between scheduler passes, quick node health pings.
SchedulerType=sched/backfill
SchedulerParameters=defer_batch=0,sched_min_interval=0,batch_sched_delay=0
SchedulerTimeSlice=5
MessageTimeout=20
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
# A job without a time limit gets DefaultTime (minutes) of the partition.
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEMORY State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE DefaultTime=60 State=UP OverSubscribe=NO
EOF
)
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$conf" ]; then
  printf '%s\n' "$conf" > "$CONF"
  changed=1
else
  changed=0
fi

# 3. munge: a key once, then the daemon
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
chmod 0700 /etc/munge /var/lib/munge /var/log/munge; chmod 0400 /etc/munge/munge.key; chmod 0755 /run/munge
munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
  if id munge >/dev/null 2>&1; then runuser -u munge -- munged 2>/dev/null || munged --force; else munged --force; fi
  for _ in $(seq 50); do munge_ok && break; sleep 0.2; done
fi
munge -n </dev/null | unmunge >/dev/null || { say "munged does not work"; exit 1; }

# 4. slurmctld and slurmd (restarted when the configuration changed)
running() { pgrep -x "$1" >/dev/null 2>&1; }
stop() { if running "$1"; then kill "$(pgrep -x "$1")" 2>/dev/null || true; for _ in $(seq 50); do running "$1" || break; sleep 0.2; done; fi; }
if [ "$changed" = 1 ]; then stop slurmd; stop slurmctld; fi
running slurmctld || slurmctld
running slurmd || slurmd

# 5. wait until the node is usable and a job really runs
ready=0
for _ in $(seq 120); do
  state=$(sinfo -h -n "$NODE" -o '%t' 2>/dev/null | head -n 1 || true)
  case "$state" in
    idle*|mix*|alloc*) ready=1; break ;;
    down*|drain*|drng*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
[ "$ready" = 1 ] || { say "node $NODE not up (state: ${state:-none}); see $LOGS/"; exit 1; }
# A job must be accepted and run; when the node is busy with other jobs, being queued behind them is enough.
out=$(mktemp)
job=$(sbatch --parsable -J slurm-sh-check -t 1 -o "$out" --wrap 'echo ok' 2>&1) || { say "sbatch failed: $job"; exit 1; }
for _ in $(seq 120); do
  [ "$(cat "$out" 2>/dev/null)" = ok ] && break
  if [ "$(squeue -h -j "$job" -o '%t %r' 2>/dev/null)" = "PD Resources" ] || [ "$(squeue -h -j "$job" -o '%t %r' 2>/dev/null)" = "PD Priority" ]; then
    scancel "$job"; echo ok > "$out"; break
  fi
  sleep 0.25
done
[ "$(cat "$out" 2>/dev/null)" = ok ] || { say "test job $job did not run; see $LOGS/"; exit 1; }
rm -f "$out"
echo "SLURM=ready"
