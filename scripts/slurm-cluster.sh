#!/usr/bin/env bash
# slurm-cluster.sh -- a throwaway, REAL multi-node Slurm cluster on this one machine (loopback only, no
# systemd) for Codeswarm's tests and benchmarks. Adapted from the verified reference scripts in
# ../shared/notes/slurm/ (Debian 12, Slurm 22.05.8 built with --enable-multiple-slurmd). Runs as root.
#
#   slurm-cluster.sh start [DIR]      install packages if missing, start munged + slurmctld + N slurmd
#                                     (each slurmd in its own UTS namespace: `hostname` = node name),
#                                     wait until every node is idle, write DIR/env.sh, print its lines
#   slurm-cluster.sh stop [DIR]       cancel jobs, then stop every process of the cluster by PID
#   slurm-cluster.sh env [DIR]        print DIR/env.sh (the `export ...` lines)
#   slurm-cluster.sh status [DIR]     exit 0 when munged, slurmctld and every slurmd are alive
#   slurm-cluster.sh ctld-stop [DIR]  stop slurmctld alone ("controller down"; jobs keep running)
#   slurm-cluster.sh ctld-start [DIR] start slurmctld again (recovers its state; waits until it answers)
#   slurm-cluster.sh ctld-pause|ctld-resume [DIR]  SIGSTOP/SIGCONT slurmctld (client commands hang)
#
# stdout carries only `export VAR=...` lines (start/env), so `eval "$(slurm-cluster.sh start D)"` works.
# Processes are found through DIR/run/*.pid, an exact environment marker SLURM_CI_CLUSTER=DIR and their
# descendants; nothing is ever killed by name.
#
# Knobs (environment, defaults in brackets): SLURM_CI_NODES [4], SLURM_CI_CPUS [2], SLURM_CI_MEM_MB [2048],
# SLURM_CI_PORT [16817] (slurmd i gets PORT+10+i), SLURM_CI_MIN_JOB_AGE [5] (finished jobs leave squeue
# this fast; sacct -c still has them), SLURM_CI_REUSE [0], SLURM_CI_TIMEOUT [60], SLURM_CI_UTS [1],
# SLURM_CI_ETC_CONF [1] (symlink /etc/slurm/slurm.conf when free),
# SLURM_CI_ETC_HOSTS [1] (a marked '127.0.0.1 node1..' line in /etc/hosts; slurmd needs it here), SLURM_CI_DEBUG [info].
set -uo pipefail
umask 022

CMD=${1:-}
DIR=${2:-${SLURM_CI_DIR:-/tmp/codeswarm-slurm}}
case "$DIR" in /*) ;; *) DIR=$(pwd)/$DIR ;; esac
DIR=${DIR%/}
NODES=${SLURM_CI_NODES:-4}
CPUS=${SLURM_CI_CPUS:-2}
MEM=${SLURM_CI_MEM_MB:-2048}
PORT=${SLURM_CI_PORT:-16817}
MIN_JOB_AGE=${SLURM_CI_MIN_JOB_AGE:-5}
TIMEOUT=${SLURM_CI_TIMEOUT:-60}
USE_UTS=${SLURM_CI_UTS:-1}
ETC_CONF=${SLURM_CI_ETC_CONF:-1}
ETC_HOSTS=${SLURM_CI_ETC_HOSTS:-1}
REUSE=${SLURM_CI_REUSE:-0}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONF=$DIR/slurm.conf
PREFIX=node

log() { printf '[slurm-cluster %s] %s\n' "$(date +%T.%3N)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# --- process helpers (PID-based only) -------------------------------------------------------------
stat_field() {  # stat_field PID N -> Nth field after "(comm)" (1=state, 2=ppid)
    local rest
    rest=$({ sed 's/^.*) //' "/proc/$1/stat"; } 2>/dev/null) || return 1
    [ -n "$rest" ] || return 1
    set -- $rest "$2"; local n=${!#}; echo "${!n}"
}
alive() {  # live and not a zombie (PID 1 here may reap late, so kill -0 is not enough)
    local st; st=$(stat_field "$1" 1) || return 1
    [ "$st" != Z ] && [ "$st" != X ]
}
has_marker() { { tr '\0' '\n' < "/proc/$1/environ"; } 2>/dev/null | grep -qxF "SLURM_CI_CLUSTER=$DIR"; }
cmd_has()    { { tr '\0' ' ' < "/proc/$1/cmdline"; } 2>/dev/null | grep -qF -- "$2"; }
pid_from() {  # pid_from FILE -> the pid, if live and really ours (guards against PID reuse)
    local p
    [ -s "$1" ] || return 0
    p=$(tr -dc '0-9' < "$1")
    [ -n "$p" ] && alive "$p" && { has_marker "$p" || cmd_has "$p" "$DIR"; } && echo "$p"
    return 0
}
stop_pids() {  # SIGTERM, wait up to ${2:-10} s, then SIGKILL
    local pids=$1 wait=${2:-10} p left i
    [ -n "${pids// /}" ] || return 0
    for p in $pids; do kill -TERM "$p" 2>/dev/null; done
    for i in $(seq 1 $((wait * 10))); do
        left=""
        for p in $pids; do alive "$p" && left="$left $p"; done
        [ -z "$left" ] && return 0
        sleep 0.1
    done
    log "SIGKILL$left"
    for p in $left; do kill -KILL "$p" 2>/dev/null; done
}
port_in_use() {  # LISTEN sockets from /proc/net/tcp{,6}; no iproute2 needed
    local hex; hex=$(printf '%04X' "$1")
    awk -v h=":$hex" 'NR>1 && $4=="0A" && substr($2, length($2)-4)==h {f=1} END{exit !f}' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
nodes_idle() {
    SLURM_CONF=$CONF timeout 10 sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2=="idle"' | sort -u | wc -l
}
healthy() {
    [ -f "$CONF" ] || return 1
    [ -n "$(pid_from "$DIR/run/munged.pid")" ] || return 1
    [ -n "$(pid_from "$DIR/run/slurmctld.pid")" ] || return 1
    local i
    for i in $(seq 1 "$NODES"); do [ -n "$(pid_from "$DIR/run/slurmd-$PREFIX$i.pid")" ] || return 1; done
}

# --- start -------------------------------------------------------------------------------------------
write_conf() {
    local nodelist="$PREFIX[1-$NODES]" ports="[$((PORT + 11))-$((PORT + 10 + NODES))]"
    [ "$NODES" = 1 ] && { nodelist="${PREFIX}1"; ports=$((PORT + 11)); }
    cat > "$CONF" <<EOF
# Generated by scripts/slurm-cluster.sh -- throwaway single-host multi-node cluster for Codeswarm tests.
ClusterName=codeswarm-ci
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/run/munge.sock
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmctldDebug=${SLURM_CI_DEBUG:-info}
SlurmdDebug=${SLURM_CI_DEBUG:-info}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
# Batch jobs start from slurmctld's 1 s background loop; batch_sched_delay=0 gives <= 1 s latency.
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# No slurmdbd: plain sacct says "accounting storage is disabled"; sacct -c reads JobCompLoc.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
ReturnToService=2
# Nodes claim the CPUs/RealMemory written below, whatever the hardware has.
SlurmdParameters=config_overrides
# Short, so that tests see finished jobs age out of squeue (then only sacct -c knows them).
MinJobAge=$MIN_JOB_AGE
KillWait=5
InactiveLimit=0
MessageTimeout=10
CommunicationParameters=NoInAddrAny
NodeName=$nodelist NodeHostname=localhost NodeAddr=127.0.0.1 Port=$ports CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=second Nodes=ALL Default=NO MaxTime=INFINITE State=UP
EOF
}

emit_env() {
    cat > "$DIR/env.sh" <<EOF
export SLURM_CONF=$CONF
export SLURM_CI_DIR=$DIR
export SLURM_CI_NODES=$NODES
EOF
    cat "$DIR/env.sh"
}

start_ctld() {  # slurmctld carries the marker so `stop` finds it (and its slurmscriptd)
    SLURM_CI_CLUSTER=$DIR SLURM_CONF=$CONF slurmctld -f "$CONF" \
        || die "slurmctld failed: $(tail -5 "$DIR/log/slurmctld.log" 2>/dev/null)"
}

wait_ctld() {  # until a client command answers (<= TIMEOUT s)
    local deadline=$(( $(date +%s) + TIMEOUT ))
    until SLURM_CONF=$CONF timeout 5 squeue -h -o %i >/dev/null 2>&1; do
        [ "$(date +%s)" -ge "$deadline" ] && die "slurmctld does not answer after ${TIMEOUT}s"
        sleep 0.1
    done
}

cmd_start() {
    local t0; t0=$(now_ms)
    [ "$(id -u)" = 0 ] || die "must run as root"
    case "$DIR" in *[[:space:]]*) die "DIR must not contain spaces: $DIR" ;; esac
    [[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "SLURM_CI_NODES must be a positive integer"
    bash "$HERE/install-slurm.sh" || die "cannot install the Slurm packages"

    if [ -d "$DIR" ]; then
        if [ "$REUSE" = 1 ] && healthy && grep -qxF "MinJobAge=$MIN_JOB_AGE" "$CONF" \
            && grep -qxF "SlurmctldPort=$PORT" "$CONF" && SLURM_CONF=$CONF timeout 10 sinfo -h >/dev/null 2>&1; then
            log "cluster in $DIR already running; reusing it"
            emit_env; return 0
        fi
        cmd_stop 2>/dev/null || true   # leftovers of an earlier (maybe crashed) run, by their PID files
    fi
    local p
    for p in "$PORT" $(seq $((PORT + 11)) $((PORT + 10 + NODES))); do
        port_in_use "$p" && die "TCP port $p is already in use; set SLURM_CI_PORT to a free base port"
    done

    # Wipe only what this script creates: state from an earlier run would resurrect jobs.
    rm -rf "$DIR/state" "$DIR/spool" "$DIR/run" "$DIR/log"
    mkdir -p "$DIR/munge" "$DIR/run" "$DIR/log" "$DIR/state" "$DIR/spool" || die "cannot create $DIR"
    chmod 700 "$DIR/munge"     # munged: the key dir must not be group/other accessible
    chmod 755 "$DIR" "$DIR/run"  # munged: the socket dir needs execute for all
    for i in $(seq 1 "$NODES"); do mkdir -p "$DIR/spool/$PREFIX$i"; done
    [ -s "$DIR/munge/munge.key" ] || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
    write_conf
    # slurmd resolves its node name at start-up: map node1..N to loopback (a marked line, removed by stop).
    if [ "$ETC_HOSTS" = 1 ] && ! grep -qF "# slurm-ci:$DIR" /etc/hosts; then
        [ -z "$(tail -c1 /etc/hosts)" ] || echo >> /etc/hosts
        printf '127.0.0.1 %s# slurm-ci:%s\n' "$(for i in $(seq 1 "$NODES"); do printf '%s%s ' "$PREFIX" "$i"; done)" "$DIR" >> /etc/hosts
    fi
    if [ "$ETC_CONF" = 1 ]; then  # so that commands work even where SLURM_CONF got lost
        if [ ! -e /etc/slurm/slurm.conf ] || [ -L /etc/slurm/slurm.conf ]; then
            mkdir -p /etc/slurm && ln -sfn "$CONF" /etc/slurm/slurm.conf
        fi
    fi

    trap 'rc=$?; if [ $rc != 0 ]; then log "start failed (rc=$rc); logs: $DIR/log"; cmd_stop || true; fi' EXIT
    export SLURM_CONF=$CONF
    log "starting munged"
    SLURM_CI_CLUSTER=$DIR munged --socket="$DIR/run/munge.sock" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed" --num-threads=4 \
        || die "munged failed: $(tail -3 "$DIR/log/munged.log" 2>/dev/null)"
    log "starting slurmctld"
    local t_ctld; t_ctld=$(now_ms)
    start_ctld
    local uts=0
    if [ "$USE_UTS" = 1 ] && unshare --uts true 2>/dev/null; then uts=1; fi
    log "starting $NODES slurmd (own hostnames: $([ $uts = 1 ] && echo yes || echo no))"
    for i in $(seq 1 "$NODES"); do
        local n=$PREFIX$i
        if [ $uts = 1 ]; then
            SLURM_CI_CLUSTER=$DIR unshare --uts /bin/sh -c "hostname '$n' && exec slurmd -f '$CONF' -N '$n'" \
                || die "slurmd $n failed: $(tail -5 "$DIR/log/slurmd-$n.log" 2>/dev/null)"
        else
            SLURM_CI_CLUSTER=$DIR slurmd -f "$CONF" -N "$n" \
                || die "slurmd $n failed: $(tail -5 "$DIR/log/slurmd-$n.log" 2>/dev/null)"
        fi
    done

    local deadline=$(( $(date +%s) + TIMEOUT )) idle
    while :; do
        idle=$(nodes_idle)
        [ "$idle" -ge "$NODES" ] && break
        if [ "$(date +%s)" -ge "$deadline" ]; then
            SLURM_CONF=$CONF sinfo -N -l >&2 || true
            tail -n 20 "$DIR/log/slurmctld.log" >&2 || true
            die "only $idle of $NODES nodes idle after ${TIMEOUT}s"
        fi
        sleep 0.1
    done
    # Warm-up: a real step on every node proves munge, credentials and step launch.
    ( cd "$DIR" && timeout 30 srun -J slurm-ci-warmup -N "$NODES" -n "$NODES" true ) >&2 \
        || die "warm-up srun across $NODES nodes failed (see $DIR/log)"
    : > "$DIR/log/jobcomp.txt"   # sacct -c then lists only the caller's jobs
    # slurmctld starts no batch job during its first ~3 s: wait that out once here.
    local age=$(( $(now_ms) - t_ctld ))
    if [ "$age" -lt 3200 ]; then
        sleep "$(printf '%d.%03d' $(( (3200 - age) / 1000 )) $(( (3200 - age) % 1000 )))"
    fi
    trap - EXIT
    log "cluster ready in $(( $(now_ms) - t0 )) ms: $NODES nodes; source $DIR/env.sh"
    emit_env
}

# --- stop --------------------------------------------------------------------------------------------
cmd_stop() {
    [ -d "$DIR" ] || { log "no $DIR; nothing to stop"; return 0; }
    local ctld munged
    ctld=$(pid_from "$DIR/run/slurmctld.pid")
    munged=$(pid_from "$DIR/run/munged.pid")
    # 1. cancel every job while slurmctld is up, so slurmstepd cleans up its own tasks
    if [ -n "$ctld" ] && [ -f "$CONF" ] && [ "$(stat_field "$ctld" 1)" != T ]; then
        local jobs
        jobs=$(SLURM_CONF=$CONF timeout 10 squeue -h -o %i 2>/dev/null | tr '\n' ' ')
        if [ -n "${jobs// /}" ]; then
            log "cancelling jobs: $jobs"
            SLURM_CONF=$CONF timeout 10 scancel $jobs 2>/dev/null
            for _ in $(seq 1 100); do
                [ -z "$(SLURM_CONF=$CONF timeout 5 squeue -h -o %i 2>/dev/null | head -1)" ] && break
                sleep 0.1
            done
        fi
    fi
    [ -n "$ctld" ] && kill -CONT "$ctld" 2>/dev/null   # a paused controller cannot exit
    # 2. snapshot the process tree before killing: roots = PID files + env marker, then descendants
    declare -A kids=()
    local roots=" $ctld $munged " s p pp f
    for f in "$DIR"/run/slurmd-*.pid; do [ -e "$f" ] && roots="$roots $(pid_from "$f") "; done
    for s in /proc/[0-9]*/stat; do
        p=${s#/proc/}; p=${p%/stat}
        [ "$p" = $$ ] && continue
        pp=$(stat_field "$p" 2) || continue
        kids[$pp]="${kids[$pp]:-} $p"
        case "$roots" in *" $p "*) ;; *) has_marker "$p" && roots="$roots $p " ;; esac
    done
    local tree="" queue=$roots
    while [ -n "${queue// /}" ]; do
        set -- $queue; p=$1; shift; queue="$*"
        case " $tree " in *" $p "*) continue ;; esac
        tree="$tree $p"
        [ "$p" = "$ctld" ] && continue   # slurmctld stops its own slurmscriptd; killing that first hangs it
        queue="$queue ${kids[$p]:-}"
    done
    # 3. slurmd first (no new steps), then job/step processes, then slurmctld, then munged
    local slurmds="" rest=""
    for p in $tree; do
        alive "$p" || continue
        if [ "$p" = "$ctld" ] || [ "$p" = "$munged" ] || [ "$p" = $$ ]; then continue; fi
        if cmd_has "$p" "slurmd " || cmd_has "$p" "slurmd-wlm"; then slurmds="$slurmds $p"; else rest="$rest $p"; fi
    done
    log "stopping slurmd:${slurmds:- none}"; stop_pids "$slurmds"
    [ -n "${rest// /}" ] && { log "stopping job/step processes:$rest"; stop_pids "$rest" 3; }
    log "stopping slurmctld: ${ctld:-none}"; stop_pids "$ctld"
    log "stopping munged: ${munged:-none}"; stop_pids "$munged"
    if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$CONF" ]; then
        rm -f /etc/slurm/slurm.conf
    fi
    if grep -qF "# slurm-ci:$DIR" /etc/hosts 2>/dev/null; then
        # rewrite in place (cat >): /etc/hosts may be a bind mount that cannot be replaced by rename
        grep -vF "# slurm-ci:$DIR" /etc/hosts > "$DIR/hosts.tmp" && cat "$DIR/hosts.tmp" > /etc/hosts
        rm -f "$DIR/hosts.tmp"
    fi
    rm -f "$DIR"/run/*.pid
    log "stopped"
}

# --- controller only ---------------------------------------------------------------------------------
cmd_ctld_stop() {
    local ctld; ctld=$(pid_from "$DIR/run/slurmctld.pid")
    [ -n "$ctld" ] || { log "slurmctld is not running"; return 0; }
    kill -CONT "$ctld" 2>/dev/null
    log "stopping slurmctld $ctld (jobs keep running on the nodes)"
    stop_pids "$ctld"
}
cmd_ctld_start() {
    [ -f "$CONF" ] || die "no cluster config in $DIR"
    if [ -z "$(pid_from "$DIR/run/slurmctld.pid")" ]; then
        log "starting slurmctld"
        start_ctld
    fi
    wait_ctld
    # A restarted controller sees the nodes as not responding ("*") until each slurmd re-registers;
    # batch jobs wait for that, so tests that restart it wait too.
    local deadline=$(( $(date +%s) + TIMEOUT ))
    while SLURM_CONF=$CONF timeout 5 sinfo -h -N -o '%t' 2>/dev/null | grep -qE '\*|unk|down'; do
        [ "$(date +%s)" -ge "$deadline" ] && { log "nodes still not responding after ${TIMEOUT}s"; break; }
        sleep 0.2
    done
    log "slurmctld answers"
}
cmd_ctld_signal() {
    local ctld; ctld=$(pid_from "$DIR/run/slurmctld.pid")
    if [ -z "$ctld" ]; then
        [ "$1" = CONT ] && return 0   # resuming a stopped controller: nothing to do
        die "slurmctld is not running"
    fi
    kill "-$1" "$ctld"
}

case "$CMD" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    env) [ -f "$DIR/env.sh" ] || die "no $DIR/env.sh (start the cluster first)"; cat "$DIR/env.sh" ;;
    status) healthy ;;
    ctld-stop) cmd_ctld_stop ;;
    ctld-start) cmd_ctld_start ;;
    ctld-pause) cmd_ctld_signal STOP ;;
    ctld-resume) cmd_ctld_signal CONT ;;
    *) echo "usage: $0 start|stop|env|status|ctld-stop|ctld-start|ctld-pause|ctld-resume [DIR]" >&2; exit 2 ;;
esac
