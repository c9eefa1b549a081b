#!/usr/bin/env bash
# Stand up a one-node SLURM cluster on this machine, run the demo workflow through workflow/profiles/slurm and
# locally, and compare the two: the same files, schedules, records and figure numbers but for wall-clock times, the
# same MLflow runs. Then check that every sbatch call carried a partition, a time limit and memory; that a job asking
# for more memory than the node has fails at once with sbatch's message; and that Ctrl-C cancels a run's jobs.
# Exits non-zero on any difference; prints how long each part took.
#
#   sudo workflow/tests/slurm_local.sh            # as root, on Debian: installs slurm-wlm and munge if missing
#   KEEP=1 sudo workflow/tests/slurm_local.sh     # keep the temporary directory (logs, every run's results)
#
# Everything lives in one temporary directory: slurm.conf, the state and spool folders, the daemons' logs and PID
# files, munge's socket, every run. The daemons (munged, slurmctld, slurmd) are this script's children, stopped by
# their own PIDs on exit, on their own ports and munge socket; slurm.conf and cgroup.conf are linked into
# /etc/slurm/ for the run (the script refuses where a configuration is there already) and unlinked on exit.
set -euo pipefail
set -m # job control: each background process its own process group, Ctrl-C not ignored (the Ctrl-C check below)

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
snake() { # snake <name> <target> <snakemake options...>: the demo in $TMP/<name>, its own MLflow store and log
  local dir=$TMP/$1 target=$2
  shift 2
  mkdir -p "$dir"
  "$PYTHON" - "$REPO/config/demo.yaml" "$dir" > "$dir.yaml" << 'EOF'
import sys

import yaml

config = yaml.safe_load(open(sys.argv[1]))
config.update(results="results", tracking={"uri": f"sqlite:///{sys.argv[2]}/mlflow.db", "experiment": "ios-core"})
print(yaml.safe_dump(config))
EOF
  PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m snakemake "$target" -s "$REPO/Snakefile" -d "$dir" \
    --configfile "$dir.yaml" "$@" > "$dir.log" 2>&1
}
fail() { # fail <message> <log>: say what went wrong, show the end of the log, stop
  echo "slurm_local.sh: $1; the end of $2:" >&2
  tail -40 "$2" >&2
  exit 1
}
# The route workflow/README.md gives: the profile (its status command, squeue, works without the accounting database
# this cluster lacks), the partition from sbatch's own variable. The first status check after 2 s rather than 40:
# these jobs take seconds.
SLURM=(--profile "$REPO/workflow/profiles/slurm" --slurm-init-seconds-before-status-checks 2)
begin=$(date +%s)
SBATCH_PARTITION=debug snake slurm all "${SLURM[@]}" --verbose || fail "the SLURM run failed" "$TMP/slurm.log"
jobs=$(grep -c "^sbatch call:" "$TMP/slurm.log" || true)
echo "slurm_local.sh: the SLURM run took $(($(date +%s) - begin)) s ($jobs sbatch calls)"
# Every job asked for the partition, a time limit and memory: the profile's and the rules' resources reached sbatch.
complete=$(grep "^sbatch call:" "$TMP/slurm.log" | grep -- " -p debug " | grep -- " -t [0-9]" | grep -c -- " --mem [0-9]")
((jobs > 0 && jobs == complete)) || fail "$((jobs - complete)) of $jobs sbatch calls lack -p, -t or --mem" "$TMP/slurm.log"
begin=$(date +%s)
snake local all --cores "$(nproc)" || fail "the local run failed" "$TMP/local.log"
echo "slurm_local.sh: the local run took $(($(date +%s) - begin)) s"
"$PYTHON" "$REPO/workflow/tests/compare_runs.py" "$TMP/slurm" "$TMP/local"

# --- a job asking for more memory than the node has: refused at once, with sbatch's message -----------------------
# Given on the command line, --default-resources replaces the profile's block, and the rule's own runtime stays.
memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<< "$NODE_LINE")
begin=$(date +%s)
snake oversized results/sim/fp32/schedules/h100/demo/b1/sequential.json "${SLURM[@]}" --verbose \
  --default-resources slurm_partition=debug --set-resources "optimize:mem_mb=$((2 * memory))" &
run=$!
for _ in $(seq 120); do
  kill -0 "$run" 2> /dev/null || break
  sleep 1
done
if kill -0 "$run" 2> /dev/null; then
  kill -INT -- "-$run"
  wait "$run"
  fail "a job asking for $((2 * memory)) MB was still waiting after 120 s" "$TMP/oversized.log"
fi
wait "$run" && fail "a job asking for $((2 * memory)) MB ran on a node of $memory MB" "$TMP/oversized.log"
grep -q "Memory specification can not be satisfied" "$TMP/oversized.log" \
  || fail "a job asking for too much memory did not fail with sbatch's message" "$TMP/oversized.log"
grep "^sbatch call:" "$TMP/oversized.log" | grep -q -- " -t 30 " \
  || fail "--default-resources on the command line dropped the rule's runtime" "$TMP/oversized.log"
echo "slurm_local.sh: a job asking for $((2 * memory)) MB failed after $(($(date +%s) - begin)) s with sbatch's message"

# --- Ctrl-C cancels the jobs a run submitted ------------------------------------------------------------------------
snake interrupted all "${SLURM[@]}" &
run=$!
for _ in $(seq 60); do
  [[ -n $(squeue -h -o %i) ]] && break
  sleep 1
done
[[ -n $(squeue -h -o %i) ]] || fail "the run to interrupt submitted no job in 60 s" "$TMP/interrupted.log"
# Ctrl-C once no sbatch has run for a second (the first burst of submissions over): a job whose sbatch is under way
# at the Ctrl-C escapes the plugin's cancel (workflow/README.md, "Stopping a run"), a race of the plugin's, not a job
# this check could ask the run to cancel.
quiet=0
for _ in $(seq 300); do
  if pgrep -x sbatch > /dev/null; then quiet=0; else quiet=$((quiet + 1)); fi
  ((quiet >= 10)) && break
  sleep 0.1
done
kill -INT -- "-$run" # Ctrl-C reaches the whole foreground process group: here the job's own
wait "$run" || true
left=$(squeue -h -o %i | wc -l)
((left == 0)) || fail "$left jobs still queued or running after Ctrl-C" "$TMP/interrupted.log"
echo "slurm_local.sh: Ctrl-C cancelled every job its run had submitted"
echo "slurm_local.sh: passed in $(($(date +%s) - started)) s"
