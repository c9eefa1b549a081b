#!/usr/bin/env bash
# Stand up a one-node SLURM cluster on this machine, run the demo workflow through workflow/profiles/slurm, run it
# again locally, and compare the two: the same files, the same figure numbers (CSVs equal but for wall-clock
# columns), the same MLflow runs. Exits non-zero on any difference.
#
#   sudo workflow/tests/slurm_local.sh            # as root: installs Debian's slurm-wlm and munge if missing
#   KEEP=1 sudo workflow/tests/slurm_local.sh     # keep the temporary directory (logs, both result trees)
#
# Everything lives in one temporary directory: slurm.conf, the state and spool folders, the daemons' logs and PID
# files, munge's socket, and both runs. The daemons (munged, slurmctld, slurmd) run in the foreground of this
# script's children and are stopped by their own PIDs on exit, so nothing of an existing SLURM or munge installation
# is touched (other ports, another socket). No accounting database: the status command is squeue.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON=${PYTHON:-python3}
PORT=${SLURM_LOCAL_PORT:-16817} # slurmctld; slurmd listens on the next port
started=$(date +%s)

if [[ $(id -u) != 0 ]]; then
  echo "slurm_local.sh: run as root (it starts munged, slurmctld and slurmd)" >&2
  exit 2
fi
if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge > /dev/null
fi
"$PYTHON" -c "import snakemake_executor_plugin_slurm" 2> /dev/null \
  || "$PYTHON" -m pip install -q -e "$REPO[slurm]"

TMP=$(mktemp -d /tmp/slurm_local.XXXXXX)
chmod 755 "$TMP" # munged insists that its socket's directory is not writable by others, and slurmd reads it
PIDS=()
cleanup() {
  local status=$?
  set +e
  # Jobs first (a failed run may leave some), then the daemons in the reverse order of their start, then the
  # configuration links.
  ((${#PIDS[@]} == 3)) && timeout 10 scancel --user root 2> /dev/null
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill "${PIDS[i]}" 2> /dev/null
    wait "${PIDS[i]}" 2> /dev/null
  done
  for name in slurm.conf cgroup.conf; do
    [[ $(readlink "/etc/slurm/$name") == "$TMP/$name" ]] && rm -f "/etc/slurm/$name"
  done
  if [[ ${KEEP:-0} == 1 || $status != 0 ]]; then
    echo "slurm_local.sh: kept $TMP (daemon logs: $TMP/*.log)"
  else
    rm -rf "$TMP"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- munge, on a private socket ---------------------------------------------------------------------------------
mkdir -p "$TMP/munge"
[[ -f /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
munged --foreground --force --socket="$TMP/munge/munge.socket" --key-file=/etc/munge/munge.key \
  --pid-file="$TMP/munge/munged.pid" --seed-file="$TMP/munge/seed" > "$TMP/munged.log" 2>&1 &
PIDS+=($!)

# --- slurm.conf: this node as it is (slurmd -C reports its CPUs, sockets and memory) -------------------------------
NODE=$(hostname -s)
NODE_LINE=$(slurmd -C | head -1) # NodeName=<host> CPUs=.. Boards=.. SocketsPerBoard=.. ... RealMemory=..
mkdir -p "$TMP/state" "$TMP/spool"
cat > "$TMP/slurm.conf" << EOF
ClusterName=local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$TMP/munge/munge.socket
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$TMP/slurmctld.log
SlurmdLogFile=$TMP/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
$NODE_LINE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
# cgroup.conf sits beside slurm.conf; with proctrack/linuxproc and task/none no cgroup is made.
echo "CgroupAutomount=no" > "$TMP/cgroup.conf"
# Both go where every SLURM command looks by default: the executor plugin clears SLURM_* (SLURM_CONF with it)
# before the srun inside each job, so that srun finds no other configuration.
for name in slurm.conf cgroup.conf; do
  if [[ -e /etc/slurm/$name ]]; then
    echo "slurm_local.sh: /etc/slurm/$name exists: this machine has a SLURM configuration of its own" >&2
    exit 2
  fi
  mkdir -p /etc/slurm
  ln -s "$TMP/$name" "/etc/slurm/$name"
done

slurmctld -D > "$TMP/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -N "$NODE" > "$TMP/slurmd.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 60); do
  sinfo -h -N -o %t 2> /dev/null | grep -qx idle && break
  sleep 1
done
if ! sinfo -h -N -o %t | grep -qx idle; then
  echo "slurm_local.sh: the node did not come up; sinfo says:" >&2
  sinfo -N >&2 || true
  tail -20 "$TMP"/slurmctld.log "$TMP"/slurmd.log "$TMP"/*.out >&2 || true
  exit 1
fi
echo "slurm_local.sh: one-node cluster up ($NODE_LINE) after $(($(date +%s) - started)) s"

# --- the demo workflow, through SLURM and locally ------------------------------------------------------------------
run_demo() { # run_demo <name> <snakemake options...>: the demo configuration, its own results and MLflow store
  local dir=$TMP/$1
  shift
  mkdir -p "$dir"
  "$PYTHON" - "$REPO/config/demo.yaml" "$dir" > "$dir.yaml" << 'EOF'
import sys

import yaml

config = yaml.safe_load(open(sys.argv[1]))
config.update(results="results", tracking={"uri": f"sqlite:///{sys.argv[2]}/mlflow.db", "experiment": "ios-core"})
print(yaml.safe_dump(config))
EOF
  local begin=$(date +%s)
  PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m snakemake all -s "$REPO/Snakefile" -d "$dir" \
    --configfile "$dir.yaml" "$@" > "$dir.log" 2>&1 || {
    echo "slurm_local.sh: the $(basename "$dir") run failed; the end of its log ($dir.log):" >&2
    tail -40 "$dir.log" >&2
    return 1
  }
  echo "slurm_local.sh: the $(basename "$dir") run took $(($(date +%s) - begin)) s"
}
# squeue: this cluster has no accounting database (see workflow/README.md, "On a SLURM cluster"); the first status
# check after 5 s rather than 40, since these jobs take seconds.
run_demo slurm --profile "$REPO/workflow/profiles/slurm" --slurm-status-command squeue \
  --slurm-init-seconds-before-status-checks 5
jobs=$(grep -c "^Submitted job .* with external jobid" "$TMP/slurm.log" || true)
run_demo local --cores 2

# --- compare ---------------------------------------------------------------------------------------------------------
"$PYTHON" "$REPO/workflow/tests/compare_runs.py" "$TMP/slurm" "$TMP/local"
echo "slurm_local.sh: $jobs SLURM jobs; outputs identical to the local run; $(($(date +%s) - started)) s in all"
