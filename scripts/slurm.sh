#!/usr/bin/env bash
# A real one-node Slurm cluster with accounting, on this machine, without systemd:
#
#   bash scripts/slurm.sh up       # install what is missing, configure, start, wait until usable
#   bash scripts/slurm.sh status   # what runs, the partitions, the node, whether sacct answers
#   bash scripts/slurm.sh down     # stop exactly what `up` started (by PID), remove its state
#
# `up` installs the missing Debian packages (slurm-wlm, slurmdbd, munge, mariadb-server; needs
# root), writes /etc/slurm/slurm.conf and slurmdbd.conf (where Slurm looks by default, so plain
# sinfo, sbatch, squeue, sacct and scontrol work from any shell), and starts MariaDB (its own
# data folder, on 127.0.0.1:$LRBENCH_SLURM_DB_PORT), munged (unless one already answers),
# slurmdbd, slurmctld and slurmd. It registers the cluster and an account with sacctmgr and waits
# until the node is idle and sacct answers. Both commands are idempotent; a step that fails says
# which one and why, with the end of its log.
#
# Partitions: `batch` (the default) holds jobs that can be preempted and requeued
# (PreemptMode=REQUEUE, GraceTime 30 s, the job's --signal sent at preemption so submitit can
# checkpoint); `urgent` has a higher PriorityTier and preempts them.
#
# LRBENCH_SLURM_STATE (default /var/lib/lrbench-slurm) holds the PIDs, logs, database and Slurm's
# state; `down` removes it.
set -euo pipefail

STATE=${LRBENCH_SLURM_STATE:-/var/lib/lrbench-slurm}
DB_PORT=${LRBENCH_SLURM_DB_PORT:-3307}
ETC=/etc/slurm
MARK="# written by lrbench scripts/slurm.sh; 'bash scripts/slurm.sh down' removes it"
CLUSTER=lrbench
ACCOUNT=lrbench
GRACE_S=30
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
DAEMONS=(mariadb munged slurmdbd slurmctld slurmd)  # started in this order, stopped in reverse
MUNGE_SOCKET=/run/munge/munge.socket.2
NODE=$(hostname -s)
ACTION=${1:-}

say() { echo "slurm.sh $ACTION: $*"; }
die() {  # step, why[, log file]
    echo "slurm.sh $ACTION: $1 failed: $2" >&2
    if [ -n "${3:-}" ] && [ -s "$3" ]; then
        echo "--- last lines of $3:" >&2
        tail -n 15 "$3" >&2
    fi
    exit 1
}

pidfile() { echo "$STATE/run/$1.pid"; }
binary() {  # the executable name a daemon runs as (what /proc/PID/comm says, 15 chars at most)
    case $1 in
        mariadb) echo mariadbd ;;
        *) echo "$1" ;;
    esac
}
# The PID this script recorded for daemon $1, if that process still runs that daemon.
ours() {
    local file pid
    file=$(pidfile "$1")
    [ -f "$file" ] || return 1
    pid=$(cat "$file")
    [[ "$pid" =~ ^[0-9]+$ ]] && [ "$pid" -gt 0 ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$(binary "$1")" ] || return 1
    echo "$pid"
}
# Start daemon $1 (the command follows) in the background, in a session of its own, in the
# foreground mode of the daemon, so that $! is the daemon's own PID.
start() {
    local name=$1
    shift
    setsid "$@" </dev/null >>"$STATE/log/$name.out" 2>&1 &
    echo $! >"$(pidfile "$name")"
    sleep 0.2
    ours "$name" >/dev/null || die "starting $name" "it exited at once ($*)" "$STATE/log/$name.out"
}
# Wait up to $2 seconds for the command after it to succeed; $1 names what is awaited.
wait_for() {
    local what=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.5
    done
    say "$what"
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" -eq 0 ] || die "installing ${missing[*]}" "needs root (apt-get)"
    say "installing ${missing[*]}"
    local log="$STATE/log/apt.log"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1 \
        || die "apt-get update" "see below" "$log"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >>"$log" 2>&1 || die "apt-get install ${missing[*]}" "see below" "$log"
}

# A config file of ours: refused if someone else's file is there.
write_config() {  # path, mode, content
    if [ -f "$1" ] && ! grep -qF "$MARK" "$1"; then
        die "writing $1" "a $1 not written by this script is there; move it away first"
    fi
    install -m "$2" /dev/null "$1.lrbench-tmp"
    printf '%s\n%s\n' "$MARK" "$3" >"$1.lrbench-tmp"
    mv "$1.lrbench-tmp" "$1"
}

configure() {
    mkdir -p "$ETC" "$STATE"/{run,log,ctld,slurmd}
    local cpus password
    cpus=$(nproc)
    [ -f "$STATE/db.password" ] || head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE/db.password"
    chmod 600 "$STATE/db.password"
    password=$(cat "$STATE/db.password")
    write_config "$ETC/slurm.conf" 644 "ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.daemon.pid
SlurmdPidFile=$STATE/run/slurmd.daemon.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# one machine, no cgroups: processes tracked by their parents, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# tests wait on the scheduler: it looks every 2 s (not 60; preemption happens in that loop), and a
# requeued job may start again 15 s after it ended (not 120: the step credentials' lifetime)
SchedulerParameters=sched_interval=2,bf_interval=2
AuthInfo=cred_expire=15
ReturnToService=2
# a job that ignores SIGTERM (submitit's does) is killed 5 s after it, not 30
KillWait=5
# accounting, as on a real cluster (sacct answers; submitit reads job states from it)
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# preemption: jobs of a higher PriorityTier requeue those of a lower one; the job's --signal
# (submitit's USR2) comes at preemption time, GraceTime seconds before the kill
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=batch Nodes=$NODE Default=YES MaxTime=INFINITE State=UP PriorityTier=1 PreemptMode=REQUEUE GraceTime=$GRACE_S
PartitionName=urgent Nodes=$NODE MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF"
    write_config "$ETC/slurmdbd.conf" 600 "AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE/run/slurmdbd.daemon.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$password
StorageLoc=slurm_acct_db"
}

DB="$STATE/mariadb"  # MariaDB's folder: it runs as the user mysql, who owns it
SQL() { mariadb --no-defaults --socket="$DB/mariadbd.sock" -uroot -e "$1"; }

start_mariadb() {
    mkdir -p "$DB"
    chown mysql:mysql "$DB"
    if [ ! -d "$DB/data/mysql" ]; then
        mariadb-install-db --no-defaults --datadir="$DB/data" --user=mysql \
            --auth-root-authentication-method=socket --skip-test-db >"$STATE/log/mariadb-init.log" 2>&1 \
            || die "initialising MariaDB's data folder" "see below" "$STATE/log/mariadb-init.log"
    fi
    start mariadb mariadbd --no-defaults --datadir="$DB/data" --user=mysql \
        --socket="$DB/mariadbd.sock" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --pid-file="$DB/mariadbd.pid" --log-error="$DB/mariadb.log" \
        --skip-log-bin --innodb-buffer-pool-size=64M --innodb-use-native-aio=0
    wait_for "MariaDB answers on 127.0.0.1:$DB_PORT" 60 \
        mariadb-admin --no-defaults --socket="$DB/mariadbd.sock" -uroot ping \
        || die "starting MariaDB" "no answer within 60 s" "$DB/mariadb.log"
    local password
    password=$(cat "$STATE/db.password")
    SQL "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$password';
         CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$password';
         GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
         GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" \
        || die "creating the database user slurm" "the SQL was refused" "$DB/mariadb.log"
}

munge_answers() { munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; }

start_munged() {
    if munge_answers; then  # someone else's munged (e.g. the system's): used, never stopped
        say "munged already runs (not started by this script; left alone)"
        return
    fi
    [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key \
        || die "creating /etc/munge/munge.key" "mungekey failed"
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge/munge.key
    chmod 755 /run/munge
    chmod 400 /etc/munge/munge.key
    start munged setpriv --reuid=munge --regid=munge --init-groups \
        munged --foreground --socket="$MUNGE_SOCKET" --key-file=/etc/munge/munge.key \
        --pid-file="$STATE/run/munged.daemon.pid" --log-file="$STATE/log/munged.log" \
        --seed-file=/var/lib/munge/munged.seed
    wait_for "munged answers" 30 munge_answers \
        || die "starting munged" "no answer within 30 s" "$STATE/log/munged.log"
}

sacctmgr_add() {  # what, sacctmgr args: succeeds when added or already there
    local out
    if ! out=$(sacctmgr -i "${@:2}" 2>&1); then
        grep -qiE "nothing new added|already exists" <<<"$out" \
            || die "registering $1 with sacctmgr" "$out"
    fi
}

start_slurmdbd() {
    start slurmdbd slurmdbd -D
    wait_for "slurmdbd answers" 60 sacctmgr -n list cluster \
        || die "starting slurmdbd" "sacctmgr got no answer within 60 s" "$STATE/log/slurmdbd.log"
    sacctmgr_add "the cluster $CLUSTER" add cluster "$CLUSTER"
    sacctmgr_add "the account $ACCOUNT" add account "$ACCOUNT" Cluster="$CLUSTER" \
        Description="lrbench tests" Organization=lrbench
    sacctmgr_add "user $(id -un) in $ACCOUNT" add user "$(id -un)" Account="$ACCOUNT" \
        Cluster="$CLUSTER"
}

node_idle() { [ "$(sinfo -h -n "$NODE" -o %T 2>/dev/null)" = idle ]; }
sacct_answers() { sacct -n -X --starttime=now-1hour >/dev/null 2>&1; }

up() {
    mkdir -p "$STATE"/{run,log}
    install_packages
    for bin in mariadbd munged slurmdbd slurmctld slurmd; do  # anyone else's daemons in the way?
        local name=$bin
        [ "$bin" = mariadbd ] && name=mariadb
        [ "$bin" = munged ] && continue  # a running munged is reused
        if ! ours "$name" >/dev/null && [ "$bin" != mariadbd ] && pgrep -x "$bin" >/dev/null; then
            die "checking for other Slurm daemons" \
                "a $bin not started by this script runs (PID $(pgrep -x "$bin" | tr '\n' ' ')); stop it first"
        fi
    done
    configure
    ours mariadb >/dev/null || start_mariadb
    ours munged >/dev/null || start_munged
    ours slurmdbd >/dev/null || start_slurmdbd
    ours slurmctld >/dev/null || start slurmctld slurmctld -D
    ours slurmd >/dev/null || start slurmd slurmd -D
    wait_for "node $NODE is idle" 60 node_idle \
        || die "waiting for node $NODE" "not idle within 60 s: $(sinfo -h -N -o '%N %T %E' 2>&1)" \
            "$STATE/log/slurmd.log"
    wait_for "sacct answers" 30 sacct_answers \
        || die "waiting for sacct" "$(sacct -n -X 2>&1 | head -3)" "$STATE/log/slurmdbd.log"
    status
}

stop_pid() {  # name, pid: TERM, then KILL after 15 s
    local name=$1 pid=$2 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 150); do
        [ -d "/proc/$pid" ] || { say "stopped $name (PID $pid)"; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    say "killed $name (PID $pid): it did not stop within 15 s of SIGTERM"
}

down() {
    if ours slurmctld >/dev/null; then  # the jobs first, through Slurm (their processes are its)
        local jobs
        jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
        if [ -n "${jobs// /}" ]; then
            say "cancelling jobs $jobs"
            # shellcheck disable=SC2086  # one argument per job id
            scancel $jobs 2>/dev/null || true
            wait_for "the jobs ended" 20 bash -c '[ -z "$(squeue -h -o %A)" ]' || true
        fi
    fi
    local stopped=0 i name pid
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        name=${DAEMONS[$i]}
        if pid=$(ours "$name"); then
            stop_pid "$name" "$pid"
            stopped=$((stopped + 1))
        fi
        rm -f "$(pidfile "$name")"
    done
    [ $stopped -gt 0 ] || say "nothing of ours was running"
    for file in "$ETC/slurm.conf" "$ETC/slurmdbd.conf"; do
        if [ -f "$file" ] && grep -qF "$MARK" "$file"; then
            rm -f "$file"
        fi
    done
    rm -rf "$STATE"
    say "removed $STATE and the configuration this script wrote"
}

status() {
    local name pid any=0
    for name in "${DAEMONS[@]}"; do
        if pid=$(ours "$name"); then
            echo "$name: running, PID $pid (started by this script)"
            any=1
        elif [ "$name" = munged ] && munge_answers; then
            echo "munged: running (not started by this script)"
        else
            echo "$name: not running"
        fi
    done
    [ $any -eq 1 ] || { echo "cluster: down"; return 0; }
    echo "logs and state: $STATE"
    sinfo -o "%P %a %l %D %T %N" 2>&1 || true
    scontrol show partition -o 2>/dev/null | sed -E \
        's/^PartitionName=([^ ]+).*PriorityTier=([0-9]+).*PreemptMode=([A-Z]+).*/partition \1: PriorityTier=\2 PreemptMode=\3/' \
        | grep '^partition' || true
    if sacct_answers; then
        echo "sacct: answers (accounting through slurmdbd, cluster $CLUSTER)"
    else
        echo "sacct: no answer"
    fi
}

case "$ACTION" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: bash scripts/slurm.sh up|down|status" >&2; exit 2 ;;
esac
