#!/usr/bin/env bash
# Stop the local test cluster started by tests/slurm/start_cluster.sh: cancel leftover jobs, then
# stop exactly the daemons that script recorded in /run/prunelimit-slurm/started (by PID, checking
# the PID still belongs to that daemon). Daemons it did not start are left alone. Idempotent.
set -uo pipefail

RUN_DIR=/run/prunelimit-slurm
STARTED=$RUN_DIR/started

say() { echo "stop_cluster: $*"; }

if [[ ! -s $STARTED ]]; then
  say "nothing to stop (no $STARTED)"
  exit 0
fi

# Leftover jobs would survive in the state directory; cancel them while slurmctld still answers.
if command -v scancel >/dev/null 2>&1 && grep -q '^slurmctld ' "$STARTED"; then
  jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
  if [[ -n $jobs ]]; then
    say "cancelling leftover jobs: $(echo $jobs)"
    timeout 10 scancel $jobs || true
  fi
fi

# Stop in reverse start order (slurmd, slurmctld, munged): the daemons still need munge to exit.
tac "$STARTED" | while read -r name pid; do
  [[ -n ${pid:-} ]] || continue
  if ! kill -0 "$pid" 2>/dev/null; then
    say "$name ($pid) already gone"
    continue
  fi
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
  if [[ $comm != "$name" ]]; then
    say "pid $pid is now '$comm', not $name; leaving it alone"
    continue
  fi
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name ($pid) ignored SIGTERM for 10 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  say "stopped $name ($pid)"
done
rm -f "$STARTED"
