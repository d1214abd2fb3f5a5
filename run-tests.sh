#!/usr/bin/env bash
# All tests: installs what they need (Debian packages), publishes the NativeAOT binary (the product;
# the integration tests start it through DATAPLANE_BINARY), runs every test project, and prints
# "N passed, N failed[, N skipped]" counted from the test results. Needs root: the integration
# tests build hosts in network namespaces (nothing is configured in the root namespace).
set -uo pipefail
cd "$(dirname "$0")"

need=()
command -v ip >/dev/null       || need+=(iproute2)
command -v bridge >/dev/null   || need+=(iproute2)
command -v ping >/dev/null     || need+=(iputils-ping)
command -v tshark >/dev/null   || need+=(tshark)
command -v ethtool >/dev/null  || need+=(ethtool)
command -v gcc >/dev/null      || need+=(gcc)
[ -f /usr/include/linux/if_tun.h ] || need+=(linux-libc-dev)
[ -f /usr/include/stdio.h ]    || need+=(libc6-dev)
command -v setpriv >/dev/null  || need+=(util-linux)
command -v afl-fuzz >/dev/null || need+=(afl++)
command -v iperf3 >/dev/null   || need+=(iperf3)
command -v sockperf >/dev/null || need+=(sockperf)       # the bench's UDP ping-pong
command -v etcd >/dev/null     || need+=(etcd-server)
command -v etcdctl >/dev/null  || need+=(etcd-client)
command -v kubectl >/dev/null  || need+=(kubernetes-client) # checks the stand-in Kubernetes API server
/usr/bin/python3 -c 'import kubernetes' 2>/dev/null || need+=(python3-kubernetes) # the API's definitions kubectl validates manifests by
command -v iptables >/dev/null || need+=(iptables)
[ -x /usr/lib/systemd/systemd ] || need+=(systemd)         # a real systemd runs the shipped unit (SystemdTests)
command -v curl >/dev/null     || need+=(curl)
# The image (deploy/build-image.sh) and the DaemonSet's pod run by a real container runtime (DaemonSetPodTests).
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v umoci >/dev/null    || need+=(umoci)
command -v skopeo >/dev/null   || need+=(skopeo)           # reads the OCI archive independently
command -v podman >/dev/null   || need+=(podman)
command -v runc >/dev/null     || need+=(runc)
command -v ctr >/dev/null      || need+=(containerd)       # imports the archive as a node's containerd does
[ -x /usr/lib/cni/bridge ]     || need+=(containernetworking-plugins)
command -v clang >/dev/null    || need+=(clang)        # NativeAOT links with clang
[ -f /usr/include/zlib.h ]     || need+=(zlib1g-dev)
# The linux-arm64 binary: cross-compiled with Debian's aarch64 toolchain and lld, run under qemu-user.
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
command -v ld.lld >/dev/null   || need+=(lld)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
if [ ${#need[@]} -gt 0 ]; then
  echo "Installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null || { echo "apt-get install ${need[*]} failed"; exit 1; }
fi

results=TestResults
rm -rf "$results"
mkdir -p artifacts
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet tool restore >/dev/null || { echo "dotnet tool restore failed (SharpFuzz.CommandLine for the fuzz tests)"; exit 1; }
# The format gate: the tree is as `dotnet format` leaves it (.editorconfig). A failure is reported here
# and fails the run at the end, after the tests have run.
format_ok=1
if ! dotnet format Dataplane.sln --verify-no-changes -v q >artifacts/format.log 2>&1; then
  format_ok=0
  grep -E 'error|warning' artifacts/format.log | head -20
  echo "format: the tree differs from what 'dotnet format Dataplane.sln' writes (run it and commit)"
fi
# The stated line width (.editorconfig max_line_length) in the product's projects.
long=$(find src/Encap src/TunTap src/Dataplane.Node src/Dataplane -name '*.cs' -not -path '*/obj/*' -not -path '*/bin/*' -print0 \
  | xargs -0 awk 'length($0) > 200 { print FILENAME ":" FNR ": " length($0) " characters" }')
if [ -n "$long" ]; then
  format_ok=0
  echo "$long" | head -20
  echo "format: lines over the stated width of 200 characters (.editorconfig max_line_length)"
fi
# The product is the NativeAOT binary: publish it and let every test that starts the program start it.
aot=artifacts/aot
rm -rf "$aot"
dotnet publish src/Dataplane -c Release -r linux-x64 -o "$aot" -nologo -v quiet >artifacts/publish.log 2>&1 \
  || { tail -20 artifacts/publish.log; echo "NativeAOT publish failed"; exit 1; }
export DATAPLANE_BINARY="$PWD/$aot/dataplane"
arm64=artifacts/aot-arm64
rm -rf "$arm64"
dotnet publish src/Dataplane -c Release -r linux-arm64 -o "$arm64" -p:LinkerFlavor=lld -p:ObjCopyName=aarch64-linux-gnu-objcopy \
  -nologo -v quiet >artifacts/publish-arm64.log 2>&1 || { tail -20 artifacts/publish-arm64.log; echo "NativeAOT publish for linux-arm64 failed"; exit 1; }
export DATAPLANE_ARM64_BINARY="$PWD/$arm64/dataplane"
# The image users run, built from Debian packages with the binary just published (DaemonSetPodTests load it).
deploy/build-image.sh --binary "$aot/dataplane" --out artifacts/image >artifacts/image.log 2>&1
image=$(tail -n 1 artifacts/image.log)
[ -f "$image" ] || { tail -20 artifacts/image.log; echo "deploy/build-image.sh failed"; exit 1; }
grep '^Image ' artifacts/image.log
export DATAPLANE_IMAGE="$PWD/$image"
# The suite must leave the root network namespace as it found it (every test builds hosts in
# namespaces of its own): its links, addresses, routes, policy rules and firewall rules, compared
# before and after, counted as one check of its own.
root_network() {
  ip -br link | awk '{print $1, $3}'; ip -br addr; ip route show table all; ip -6 route show table all; ip rule; ip -6 rule
  iptables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
  ip6tables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
  nft list ruleset 2>/dev/null
}
root_network >artifacts/root-network.before
dotnet test Dataplane.sln -c Release --logger "trx" --results-directory "$results" "$@"
status=$?
root_network >artifacts/root-network.after
root_ok=1
if ! diff -u artifacts/root-network.before artifacts/root-network.after >artifacts/root-network.diff; then
  root_ok=0
  head -40 artifacts/root-network.diff
  echo "the root network namespace changed during the tests (artifacts/root-network.diff)"
fi

passed=0; failed=0; skipped=0
for trx in "$results"/*.trx; do
  [ -f "$trx" ] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  p=$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters"); passed=$((passed + ${p:-0}))
  f=$(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters"); failed=$((failed + ${f:-0}))
  t=$(sed -n 's/.* total="\([0-9]*\)".*/\1/p' <<<"$counters")
  e=$(sed -n 's/.* executed="\([0-9]*\)".*/\1/p' <<<"$counters"); skipped=$((skipped + ${t:-0} - ${e:-0}))
done
if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
  echo "no test results found in $results"
  exit 1
fi
if [ "$root_ok" -eq 1 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
[ "$format_ok" -eq 1 ] || echo "format check failed: run 'dotnet format Dataplane.sln' and commit (artifacts/format.log)"
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$format_ok" -eq 1 ]
