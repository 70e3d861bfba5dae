#!/usr/bin/env bash
# A real Slurm (Debian 12's 22.05), one node on 127.0.0.1, running a ptq-tool batch as a job array:
#
#   scripts/test-slurm.sh [BUILD_DIR]      (ctest: slurm_job_array_batch)
#
# Installs slurmctld slurmd slurm-client munge (apt, --no-install-recommends) when missing, starts
# munged (as the munge user), slurmctld and slurmd by hand (no systemd, no cgroups: proctrack/linuxproc,
# task/none), submits `sbatch --array=0-3 scripts/slurm-batch.sbatch` over a manifest of 6 small
# models (the bundled digits CNN under different configs and names), polls squeue until the array is
# gone, checks that every model was done exactly once across the 4 shard summaries and that
# `ptq-tool batch --merge` gives the full summary, then stops the daemons by their recorded PIDs.
# Exit 0 passed, 1 failed, 77 skipped (not root, no apt, packages not installable, daemons not starting).
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build}" 2>/dev/null && pwd) || { echo "test-slurm: SKIPPED: no build folder ${1:-$src/build}"; exit 77; }
tool=$build/apps/ptq-tool/ptq-tool
work=$(mktemp -d /tmp/ptq-slurm.XXXXXX)
pids=()
munged_pid=""

log() { echo "test-slurm: $*"; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  if [ -n "$munged_pid" ]; then kill "$munged_pid" 2>/dev/null; fi
  pids=()
  munged_pid=""
}
trap cleanup EXIT
skip() { log "SKIPPED: $*"; exit 77; }
fail() {
  log "FAILED: $*"
  for f in "$work"/slurmctld.log "$work"/slurmd.log "$work"/job/*.out; do
    [ -f "$f" ] && { echo "--- $f (last 30 lines)"; tail -30 "$f"; }
  done
  exit 1
}

[ -x "$tool" ] || skip "no ptq-tool at $tool (build first)"
command -v python3 >/dev/null || skip "python3 missing (used to check the summaries)"

# 1. Packages.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  [ "$(id -u)" = 0 ] || skip "slurm is not installed and installing it needs root"
  command -v apt-get >/dev/null || skip "slurm is not installed and there is no apt-get"
  log "installing slurmctld slurmd slurm-client munge"
  export DEBIAN_FRONTEND=noninteractive
  if ! timeout 900 apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >"$work/apt.log" 2>&1; then
    timeout 300 apt-get update >>"$work/apt.log" 2>&1
    timeout 900 apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >>"$work/apt.log" 2>&1 ||
      { tail -5 "$work/apt.log"; skip "apt-get install slurmctld slurmd slurm-client munge failed"; }
  fi
fi
[ "$(id -u)" = 0 ] || skip "slurmd and munged must be started as root"
log "$(slurmctld -V)"

# 2. munged as the munge user, on the default socket in /run/munge.
mkdir -p /run/munge /var/lib/munge /var/log/munge /etc/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || skip "no munge user"
chmod 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key >/dev/null 2>&1; fi
  [ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged --force >"$work/munged.out" 2>&1 || { cat "$work/munged.out"; skip "munged did not start"; }
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  munged_pid=$(cat /run/munge/munged.pid 2>/dev/null)
  log "munged started (pid $munged_pid)"
fi
munge -n | unmunge >/dev/null 2>&1 || skip "munge does not work (munge -n | unmunge)"

# 3. A one-node cluster on 127.0.0.1, state under $work.
port=$((20000 + RANDOM % 20000))
mkdir -p "$work/state" "$work/spool" "$work/job"
cat >"$work/slurm.conf" <<CONF
ClusterName=ptqtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmdParameters=config_overrides
CommunicationParameters=NoInAddrAny
SchedulerParameters=batch_sched_delay=0
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=ptqnode NodeAddr=127.0.0.1 NodeHostname=$(hostname) CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=ptqnode Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$work/slurm.conf
slurmctld -D -i -f "$SLURM_CONF" >"$work/slurmctld.out" 2>&1 &
pids+=($!)
log "slurmctld started (pid ${pids[-1]}, port $port)"
slurmd -D -N ptqnode -f "$SLURM_CONF" >"$work/slurmd.out" 2>&1 &
pids+=($!)
log "slurmd started (pid ${pids[-1]})"
up=0
for _ in $(seq 60); do
  if sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then up=1; break; fi
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { cat "$work"/slurmctld.out "$work"/slurmd.out; tail -20 "$work"/slurm*.log 2>/dev/null; skip "a slurm daemon exited at start-up"; }; done
  sleep 1
done
[ $up = 1 ] || { sinfo 2>&1; tail -20 "$work"/slurmctld.log "$work"/slurmd.log; skip "the node did not come up in 60 s"; }
log "node up: $(sinfo -h -N -o '%N %T %c CPUs')"

# 4. The manifest: 6 models, the bundled digits CNN with evaluation and a gate.
data=$src/tests/data
cp "$data/digits_cnn.onnx" "$data/digits_test_x_256x1x20x20_f32.bin" "$data/digits_test_y_256_i64.bin" "$work/job/"
python3 - "$work/job/manifest.json" <<'PY'
import json, sys
models = []
for i, cfg in enumerate(["w8a16", "w4a16", "w8a16", "w4a16", "w8a16", "w4a16"]):
    models.append({"name": f"digits-{i}-{cfg}", "model": "digits_cnn.onnx", "config": cfg, "seed": i})
json.dump({"defaults": {"threads": 1, "eval_data": ["x=digits_test_x_256x1x20x20_f32.bin"],
                        "eval_labels": "digits_test_y_256_i64.bin", "eval_samples": 64, "max_drop": ["top1:-5"]},
           "models": models}, open(sys.argv[1], "w"), indent=1)
PY

# 5. The job array, polled with squeue.
cd "$work/job" || fail "no $work/job"
t0=$(date +%s)
jobid=$(sbatch --parsable --array=0-3 --chdir="$work/job" --output="$work/job/task-%a.out" \
          "$src/scripts/slurm-batch.sbatch" "$work/job/manifest.json" "$work/job/out" "$tool") || fail "sbatch refused the job"
log "submitted job array $jobid"
for _ in $(seq 300); do
  [ -z "$(squeue -h -j "$jobid" 2>/dev/null)" ] && break
  sleep 1
done
[ -z "$(squeue -h -j "$jobid" 2>/dev/null)" ] && log "array finished in $(( $(date +%s) - t0 )) s" || fail "the array was still queued or running after 300 s"
for i in 0 1 2 3; do
  [ -f "$work/job/task-$i.out" ] || fail "no output of array task $i"
  head -1 "$work/job/task-$i.out"
done

# 6. Every model exactly once across the 4 shards, each shard from SLURM_ARRAY_TASK_ID; then --merge.
python3 - "$work/job" <<'PY' || fail "shard summaries"
import json, sys, collections
d = sys.argv[1]
names = [m["name"] for m in json.load(open(d + "/manifest.json"))["models"]]
seen = collections.Counter()
for i in range(4):
    s = json.load(open(f"{d}/out/shards/summary-{i}-of-4.json"))
    assert s["shard"] == {"index": i, "count": 4, "source": "SLURM_ARRAY_TASK_ID"}, s["shard"]
    for m in s["models"]:
        assert m["status"] == "ok", (m["name"], m["status"], m.get("error"))
        seen[m["name"]] += 1
    print(f"test-slurm: shard {i}/4 ran {[m['name'] for m in s['models']]}")
assert sorted(seen) == sorted(names), (sorted(seen), names)
assert all(c == 1 for c in seen.values()), seen
PY
"$tool" batch --merge "$work/job/out" -q || fail "batch --merge exited $?"
python3 - "$work/job" <<'PY' || fail "merged summary"
import json, sys
d = sys.argv[1]
names = sorted(m["name"] for m in json.load(open(d + "/manifest.json"))["models"])
s = json.load(open(d + "/out/summary.json"))
assert sorted(m["name"] for m in s["models"]) == names
assert s["counts"]["ok"] == len(names) and s["missing_shards"] == []
print("test-slurm: merged summary holds all %d models, all ok" % len(names))
PY
cat "$work/job/out/summary.md"
# Resubmitting the same array redoes nothing.
jobid=$(sbatch --parsable --array=0-3 --chdir="$work/job" --output="$work/job/again-%a.out" \
          "$src/scripts/slurm-batch.sbatch" "$work/job/manifest.json" "$work/job/out" "$tool") || fail "sbatch refused the second job"
for _ in $(seq 300); do [ -z "$(squeue -h -j "$jobid" 2>/dev/null)" ] && break; sleep 1; done
python3 - "$work/job" <<'PY' || fail "resubmitted array"
import json, sys
d = sys.argv[1]
st = [m["status"] for i in range(4) for m in json.load(open(f"{d}/out/shards/summary-{i}-of-4.json"))["models"]]
assert st and all(s == "skipped" for s in st), st
print("test-slurm: resubmitted array skipped all %d models" % len(st))
PY
cleanup
log "PASSED"
rm -rf "$work"
exit 0
