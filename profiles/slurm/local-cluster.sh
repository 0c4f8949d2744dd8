#!/usr/bin/env bash
# A real single-node Slurm on this machine, for testing profiles/slurm (CI, laptops, VMs).
# Debian/Ubuntu, as root, no systemd needed: the daemons are started directly.
#
#   profiles/slurm/local-cluster.sh start    install if missing, configure, start, wait for the node
#   profiles/slurm/local-cluster.sh stop     stop slurmd, slurmctld, munged (by PID file)
#   profiles/slurm/local-cluster.sh status   daemons and `sinfo`
#
# No accounting database: job status comes from `squeue`, so finished jobs must stay
# visible to squeue long enough (MinJobAge=300; the profile sets slurm-status-command: squeue).
# Not for production: one node, one partition named "debug", root-owned everything.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE_DIR=/var/lib/slurm-local
RUN_DIR=/run/slurm-local
LOG_DIR=/var/log/slurm-local
PARTITION=${SLURM_LOCAL_PARTITION:-debug}
WAIT_SECONDS=${SLURM_LOCAL_WAIT:-60}

die() { echo "local-cluster: $*" >&2; exit 1; }
say() { echo "local-cluster: $*"; }

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root"; }

alive() { # alive PIDFILE: the process in PIDFILE is running
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_packages() {
    local missing=()
    command -v munged >/dev/null || missing+=(munge)
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sinfo >/dev/null || missing+=(slurm-client)
    [ ${#missing[@]} -eq 0 ] && return
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d: do not let the packages try to start services (no systemd here).
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' >$policy; chmod +x $policy; created_policy=1; fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ $created_policy -eq 1 ] && rm -f $policy
    return 0
}

node_name() {
    local host
    host=$(hostname -s)
    if ! getent hosts "$host" >/dev/null; then
        say "hostname $host does not resolve; adding it to /etc/hosts"
        echo "127.0.1.1 $host" >>/etc/hosts
    fi
    echo "$host"
}

write_conf() {
    local host cpus mem_total real_mem def_mem
    host=$(node_name)
    cpus=$(nproc)
    mem_total=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    # slurmd rejects the node if RealMemory exceeds what it measures: keep a margin.
    real_mem=$((mem_total * 95 / 100))
    def_mem=$((real_mem / cpus / 2))
    mkdir -p "$CONF_DIR" "$STATE_DIR/ctld" "$STATE_DIR/d" "$RUN_DIR" "$LOG_DIR"
    cat >"$CONF.new" <<EOF
# Written by profiles/slurm/local-cluster.sh: a single-node test cluster. Rewritten on every start.
ClusterName=featscope-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/d
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# No cgroups without systemd: memory limits are not enforced, only scheduled.
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Reject jobs that can never run here (too many CPUs, too much memory) at submission
# instead of leaving them pending forever.
EnforcePartLimits=ALL
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Finished jobs stay visible to squeue this long: the Snakemake plugin reads their state there.
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$real_mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=$def_mem
EOF
    if [ -f "$CONF" ] && cmp -s "$CONF" "$CONF.new"; then
        rm "$CONF.new"
        return 1 # unchanged
    fi
    mv "$CONF.new" "$CONF"
    return 0
}

start_munge() {
    local pidfile=/run/munge/munged.pid
    if alive $pidfile; then return; fi
    [ -s /etc/munge/munge.key ] || { say "creating munge key"; mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    say "starting munged"
    su -s /bin/sh munge -c "munged --pid-file=$pidfile" || runuser -u munge -- munged --pid-file=$pidfile
    munge -n | unmunge >/dev/null || die "munge does not work"
}

start_daemon() { # start_daemon NAME PIDFILE
    if alive "$2"; then return; fi
    say "starting $1"
    "$1" -f "$CONF" || die "$1 failed to start; see $LOG_DIR/$1.log"
}

wait_idle() {
    local host=$1 state deadline=$((SECONDS + WAIT_SECONDS))
    while :; do
        state=$(sinfo -h -n "$host" -o %T 2>/dev/null | head -n1 || true)
        case $state in
        idle | mixed | allocated)
            # The saved node state can read idle before slurmd has registered: run a job.
            if timeout 20 srun --quiet -N1 -n1 -t 1 true 2>/dev/null; then
                say "node $host is $state and runs jobs"
                return 0
            fi
            ;;
        esac
        if [ $SECONDS -ge $deadline ]; then
            sinfo >&2 || true
            tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
            die "node $host not idle after ${WAIT_SECONDS}s (state: ${state:-none})"
        fi
        # A node left down/drained by an earlier run: resume it.
        case $state in
        down* | drain* | fail*) scontrol update NodeName="$host" State=RESUME 2>/dev/null || true ;;
        esac
        sleep 1
    done
}

cmd_start() {
    need_root
    install_packages
    if write_conf; then
        # New or changed config: restart Slurm daemons that run with the old one.
        if alive $RUN_DIR/slurmctld.pid || alive $RUN_DIR/slurmd.pid; then
            say "slurm.conf changed; restarting"
            stop_slurm
        fi
    fi
    start_munge
    start_daemon slurmctld $RUN_DIR/slurmctld.pid
    start_daemon slurmd $RUN_DIR/slurmd.pid
    wait_idle "$(node_name)"
}

stop_pid() { # stop_pid NAME PIDFILE
    alive "$2" || { rm -f "$2"; return 0; }
    local pid i
    pid=$(cat "$2")
    say "stopping $1 ($pid)"
    kill "$pid"
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$2"
}

stop_slurm() {
    stop_pid slurmd $RUN_DIR/slurmd.pid
    stop_pid slurmctld $RUN_DIR/slurmctld.pid
}

cmd_stop() {
    need_root
    stop_slurm
    stop_pid munged /run/munge/munged.pid
}

cmd_status() {
    local rc=0 name pidfile
    for name in munged slurmctld slurmd; do
        case $name in munged) pidfile=/run/munge/munged.pid ;; *) pidfile=$RUN_DIR/$name.pid ;; esac
        if alive $pidfile; then echo "$name: running (pid $(cat $pidfile))"; else echo "$name: stopped"; rc=1; fi
    done
    if command -v sinfo >/dev/null && [ $rc -eq 0 ]; then sinfo || rc=1; fi
    return $rc
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
