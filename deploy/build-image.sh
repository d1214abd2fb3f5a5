#!/usr/bin/env bash
# The image deploy/kube-dataplane.yml runs, built here from Debian packages, without any container
# registry: a root file system of only what the NativeAOT binary and its helpers need, the binary,
# and an OCI archive that `podman load`, `docker load` (Docker 25 and later) and
# `ctr images import` accept. Its last line of output is the archive's path.
#
#   deploy/build-image.sh [--binary PATH] [--arch amd64|arm64] [--tag NAME:TAG] [--out DIR]
#
# What is in it (Debian 12 packages, extracted with mmdebstrap's extract variant: no maintainer script
# runs, so nothing of the build host leaks in and a foreign architecture needs no emulator):
#   libc6            the binary's only link-time dependency (ldd: libc, libm)
#   libssl3          OpenSSL, loaded at run time for TLS to etcd and the API server
#   iptables, nftables   --ip-masq and the forward rules (iptables-nft, as Debian's default), nft
#   iproute2         `dataplane doctor` (ip, bridge)
#   coreutils        the DaemonSet's init container (cp) and readiness probe (test)
# with their dependencies; no shell is the entrypoint (/usr/local/bin/dataplane is), no package
# manager, documentation, locales or charset converters. Needs root, mmdebstrap and umoci
# (apt-get install mmdebstrap umoci), and the Debian mirror (--mirror, default deb.debian.org).
# deploy/Containerfile makes the same layout for users with registry access.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=amd64
binary=
tag=
out=artifacts/image
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$arch" in
  amd64) rid=linux-x64; triplet=x86_64-linux-gnu ;;
  arm64) rid=linux-arm64; triplet=aarch64-linux-gnu ;;
  *) echo "build-image.sh: --arch $arch: amd64 or arm64" >&2; exit 2 ;;
esac
for tool in mmdebstrap umoci; do
  command -v "$tool" >/dev/null || { echo "build-image.sh: $tool is missing (apt-get install mmdebstrap umoci)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "build-image.sh: needs root (the root file system keeps its owners and device nodes)" >&2; exit 1; }

if [ -z "$binary" ]; then
  binary=artifacts/aot/dataplane
  [ "$arch" = arm64 ] && binary=artifacts/aot-arm64/dataplane
fi
if [ ! -x "$binary" ]; then
  echo "build-image.sh: $binary is missing: publish it first (dotnet publish src/Dataplane -c Release -r $rid -o $(dirname "$binary"))" >&2
  exit 1
fi
version=$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' Directory.Build.props | head -n 1)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null | grep -v '^??' || true)" ]; then
  revision="$revision-dirty"
fi
tag=${tag:-dataplane:$version}
# One date for every file and the image's creation time: the source's last commit (reproducible).
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH

work=$(mktemp -d /tmp/dataplane-image.XXXXXX)
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$out"
packages=libc6,libssl3,iptables,nftables,iproute2,coreutils
echo "Root file system: Debian 12 ($arch) with $packages and their dependencies"
# iptables' postinst chooses iptables-nft with update-alternatives; with no maintainer scripts run, the
# same links are made below. The package list is kept beside the archive (what is in the image).
mmdebstrap --variant=extract --mode=root --architectures="$arch" --include="$packages" \
  --setup-hook=/usr/share/mmdebstrap/hooks/merged-usr/setup00.sh \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' --dpkgopt="path-exclude=/usr/lib/$triplet/gconv/*" \
  --extract-hook='ls "$1"/var/cache/apt/archives/ | sed -n "s/_\(.*\)_.*\.deb$/ \1/p" > "$1"/packages.txt' \
  bookworm "$rootfs" \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main" \
  >"$work/mmdebstrap.log" 2>&1 || { tail -20 "$work/mmdebstrap.log" >&2; echo "build-image.sh: mmdebstrap failed" >&2; exit 1; }
sed 's/%3a/:/g; s/%2b/+/g' "$rootfs/packages.txt" >"$work/packages.txt"
rm "$rootfs/packages.txt"
(
  cd "$rootfs/usr/sbin"
  for t in iptables ip6tables arptables ebtables; do
    for s in "" -save -restore; do ln -sf "$t-nft$s" "$t$s"; done
  done
  cd "$rootfs"
  rm -rf var/cache/apt var/lib/apt var/log/* usr/share/perl5 usr/share/debconf etc/apt usr/share/doc usr/share/man usr/share/info usr/share/locale usr/share/lintian
  find . -maxdepth 1 -xtype l -delete # merged /usr's links to directories no package filled (lib32, libx32)
  mkdir -p run/flannel run/dataplane var/lib/dataplane etc/kube-flannel usr/local/bin
)
install -m 0755 "$binary" "$rootfs/usr/local/bin/dataplane"
touch -h -d "@$SOURCE_DATE_EPOCH" "$rootfs/usr/local/bin/dataplane"

# The OCI image: one layer, labels, the binary as the entrypoint (no shell).
layout=$work/oci
name=${tag%:*}
ref=${tag##*:}
umoci init --layout "$layout"
umoci new --image "$layout:$ref"
umoci insert --image "$layout:$ref" --history.created_by "deploy/build-image.sh $revision" "$rootfs" /
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
umoci config --image "$layout:$ref" --architecture "$arch" --os linux --created "$created" \
  --config.entrypoint /usr/local/bin/dataplane --config.cmd run --config.workingdir / \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.label org.opencontainers.image.title=dataplane \
  --config.label "org.opencontainers.image.description=Userspace UDP/VXLAN data plane for flannel-style overlay networks" \
  --config.label "org.opencontainers.image.version=$version" \
  --config.label "org.opencontainers.image.revision=$revision" \
  --config.label org.opencontainers.image.base.name=debian:bookworm \
  --history.created_by "umoci config (entrypoint, labels)"
umoci gc --layout "$layout"
# The reference an importer names the image by: the full name in index.json's annotation
# (podman and Docker read org.opencontainers.image.ref.name, ctr io.containerd.image.name).
index=$layout/index.json
sed -i "s|\"org.opencontainers.image.ref.name\":\"$ref\"|\"org.opencontainers.image.ref.name\":\"$tag\",\"io.containerd.image.name\":\"$tag\"|" "$index"
grep -q "\"io.containerd.image.name\":\"$tag\"" "$index" || { echo "build-image.sh: could not name the image in $index" >&2; exit 1; }

archive=$out/dataplane-$version-$arch.oci.tar
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner -C "$layout" -cf "$archive" .
cp "$work/packages.txt" "$out/dataplane-$version-$arch.packages"
size=$(du -sb "$rootfs" | cut -f1)
echo "Image $tag ($arch, revision $revision): $((size / 1000000)) MB uncompressed ($(wc -l <"$out/dataplane-$version-$arch.packages") Debian packages, listed in $out/dataplane-$version-$arch.packages); archive $(($(stat -c %s "$archive") / 1000000)) MB"
echo "$archive"
