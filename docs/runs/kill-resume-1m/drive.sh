#!/bin/bash
# issue 14 "done when": the README's main command, 1M steps, killed with kill -9 mid-run, then resumed
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"  # the repository root
OUT=runs/kill1m/out
echo "start $(date)"
.venv/bin/python strpo.py --env-id SafetyCarCircle1-v0 --output-dir $OUT > runs/kill1m/first.log 2>&1 &
pid=$!
while sleep 5; do
  f=$(ls $OUT/*/progress.csv 2>/dev/null | head -1)
  [ -n "$f" ] && [ $(($(wc -l < $f) - 1)) -ge 33 ] && break
done
sleep 7
kill -9 $pid
echo "killed $(date): rows $(($(wc -l < $f) - 1)), resume.pt epoch $(.venv/bin/python -c "import torch,sys;print(torch.load(sys.argv[1],weights_only=False)['epoch'])" $(dirname $f)/resume.pt)"
ls $(dirname $f)
.venv/bin/python strpo.py --resume $(dirname $f) > runs/kill1m/resume.log 2>&1
echo "resumed run exit $? $(date)"
.venv/bin/python -c "
import csv,sys; rows=list(csv.DictReader(open(sys.argv[1]))); e=[int(r['epoch']) for r in rows]
print('rows', len(rows), 'epochs 1..N once each:', e==list(range(1,len(e)+1)), 'last', rows[-1]['global_step'], rows[-1]['ep_ret'], rows[-1]['ep_cost'])" $f
ls -la $(dirname $f)
