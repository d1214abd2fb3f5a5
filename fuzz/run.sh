#!/usr/bin/env bash
# Fuzzes one target with AFL++ for a bounded time and reports what it found.
#   fuzz/run.sh TARGET SECONDS [WORKDIR]      TARGET: inbound-vxlan | inbound-udp | inbound6-vxlan | inbound6-udp | nd | ip | leases | frame | checksum | coalesce | outbound
# Builds the harness, instruments the assemblies under test with SharpFuzz, runs afl-fuzz from
# the committed seed corpus (fuzz/corpus/TARGET), then prints one line
#   fuzz TARGET: execs=N crashes=N hangs=N seconds=N paths=N
# and the crashing inputs in hex. Exit status 1 when anything crashed.
set -euo pipefail
target=${1:?target}
seconds=${2:?seconds}
root=$(cd "$(dirname "$0")/.." && pwd)
work=${3:-$(mktemp -d "/tmp/dataplane-fuzz-$target-XXXXXX")}
if ! command -v afl-fuzz >/dev/null; then
  echo "afl-fuzz is missing: apt-get install afl++" >&2
  exit 2
fi
cd "$root"
dotnet tool restore >/dev/null
dotnet build fuzz/Dataplane.Fuzz -c Release -o "$work/bin" -nologo -v quiet >/dev/null
for dll in Dataplane.Encap.dll Dataplane.TunTap.dll Dataplane.Node.dll; do
  dotnet tool run sharpfuzz "$work/bin/$dll" >/dev/null
done
export AFL_SKIP_BIN_CHECK=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1
rm -rf "$work/findings"
afl-fuzz -i "fuzz/corpus/$target" -o "$work/findings" -t 5000 -m none -V "$seconds" \
  -- dotnet "$work/bin/Dataplane.Fuzz.dll" "$target" > "$work/afl.log" 2>&1 || { tail -20 "$work/afl.log" >&2; exit 2; }
stats="$work/findings/default/fuzzer_stats"
get() { awk -F: -v k="$1" '$1 ~ "^"k" *$" {gsub(/ /,"",$2); print $2}' "$stats"; }
crashes=$(get saved_crashes); [ -n "$crashes" ] || crashes=$(get unique_crashes)
hangs=$(get saved_hangs); [ -n "$hangs" ] || hangs=$(get unique_hangs)
echo "fuzz $target: execs=$(get execs_done) crashes=${crashes:-0} hangs=${hangs:-0} seconds=$seconds paths=$(get corpus_count)"
for f in "$work"/findings/default/crashes/id:*; do
  [ -f "$f" ] || continue
  echo "crash $(basename "$f"): $(od -An -tx1 -v "$f" | tr -d ' \n' | head -c 400)"
done
[ "${crashes:-0}" = "0" ]
