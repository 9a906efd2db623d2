#!/usr/bin/env bash
# The runtime on 64-bit ARM Linux: an arm64 Debian rootfs run under qemu-user (binfmt_misc),
# `pip install .` of this checkout there (numpy, onnxruntime, click and Pillow as aarch64 wheels
# from the package index, pinned to the host's versions), the same CLI commands and Python API
# calls on both sides, and every output compared: the largest absolute difference must be at
# most 1e-5. Run as root from anywhere:
#
#     bash scripts/arm64_check.sh [HOST_VENV]     # default .ci/venv: its digitvae is the reference
#
# ARM64_QEMU_CPU picks the emulated core (cortex-a72, as in a Raspberry Pi 4, or cortex-a76, as
# in a Raspberry Pi 5 or an RK3588). The rootfs tarball and the aarch64 wheels pip fetched are
# kept under ${XDG_CACHE_HOME:-$HOME/.cache}/digitvae-ci/; without them it all starts afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
host_venv=${1:-.ci/venv}
cpu=${ARM64_QEMU_CPU:-cortex-a72}
suite=bookworm
mirror=${ARM64_DEBIAN_MIRROR:-http://deb.debian.org/debian}
include=python3-venv,libstdc++6
started=$SECONDS

[ "$(id -u)" = 0 ] || { echo "arm64 check: needs root (mmdebstrap, chroot and mounts)" >&2; exit 1; }
[ -x "$host_venv/bin/digitvae" ] || { echo "arm64 check: no digitvae in $host_venv (give the host virtualenv)" >&2; exit 1; }
case $cpu in
  # The CPU fields of /proc/cpuinfo on such a core, with the features Linux lists for it.
  cortex-a72) part=0xd08 features="fp asimd evtstrm crc32 cpuid" ;;
  cortex-a76) part=0xd0b features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" ;;
  *) echo "arm64 check: ARM64_QEMU_CPU=$cpu is not supported; use cortex-a72 or cortex-a76" >&2; exit 1 ;;
esac

missing=()
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v update-binfmts >/dev/null || missing+=(binfmt-support)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
# Containers often come without binfmt_misc mounted; the aarch64 handler (flag F: qemu is opened
# when registered) then runs arm64 programs in any chroot.
[ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 2>/dev/null || true
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || {
  echo "arm64 check: qemu-aarch64 is not registered with binfmt_misc" >&2
  exit 1
}

cache=${XDG_CACHE_HOME:-$HOME/.cache}/digitvae-ci
key=$(printf '%s\n' "$suite" "$mirror" "$include" | sha256sum | cut -c1-12)
tarball=$cache/rootfs-arm64-$suite-$key.tar
mkdir -p "$cache/wheels-arm64-$suite"

work=$(mktemp -d /tmp/digitvae-arm64.XXXXXX)
root=$work/root
mounts=()
cleanup() {
  local status=$? m p i
  trap - EXIT INT TERM
  # Anything still running inside the rootfs, by process id.
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && kill -9 "${p#/proc/}" 2>/dev/null
  done
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    m=${mounts[i]}
    umount "$m" 2>/dev/null || umount --lazy "$m" || status=1
  done
  if grep -q " $work" /proc/mounts; then
    echo "arm64 check: still mounted under $work, left in place" >&2
    status=1
  else
    rm -rf --one-file-system "$work"
  fi
  rm -f "$tarball.part"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf 'arm64 check: %-44s %4ds\n' "$1" "$((SECONDS - $2))"; }

t=$SECONDS
if [ -f "$tarball" ]; then
  rootfs_note="rootfs (cached)"
else
  rootfs_note="rootfs (mmdebstrap $suite arm64)"
  mmdebstrap --quiet --arch=arm64 --variant=essential --include="$include" --format=tar \
    "$suite" "$tarball.part" "$mirror" </dev/null
  mv "$tarball.part" "$tarball"
fi
mkdir "$root"
tar -C "$root" -xf "$tarball"
step "$rootfs_note" "$t"

# What the chroot needs from the host: DNS, proxies, and pip's settings as the host's pip reads
# them (files and environment) with the files they name (CA bundle, constraints), so that pip
# there reaches the same package index. Local folders (wheel folders, file:// indexes) are left
# out: they hold wheels for the host's platform.
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/hosts "$root/etc/hosts"
mapfile -t root_env < <(env | grep -E '^(https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY)=' || true)
root_env+=(PIP_CONFIG_FILE=/dev/null)
while IFS= read -r line; do
  [[ $line =~ ^(global|install|:env:)\.([a-z0-9-]+)=\'(.*)\'$ ]] || continue
  name=PIP_${BASH_REMATCH[2]^^}
  read -ra words <<<"${BASH_REMATCH[3]}"
  kept=()
  for word in "${words[@]}"; do
    path=${word#file://}
    case $path in
      /*) [ -f "$path" ] || continue
        mkdir -p "$root$(dirname "$path")"
        cp "$path" "$root$path" ;;
    esac
    kept+=("$word")
  done
  [ ${#kept[@]} = 0 ] || root_env+=("${name//-/_}=${kept[*]}")
done < <("$host_venv/bin/python" -m pip config list)

# A copy of the checkout as git sees it (tracked and unignored files: no virtualenvs, no builds).
mkdir "$root/src" "$root/out"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -C "$root/src" -xf -
# The picture for `reconstruct --prepare` and prepare_digit, drawn once, read on both sides.
"$host_venv/bin/python" scripts/arm64_outputs.py picture "$root/out/picture.png"

# qemu 7.2 passes the host's /proc/cpuinfo through, and onnxruntime's CPU detection crashes on an
# x86 one: an ARM one in its place, one entry per host CPU.
for ((i = 0; i < $(nproc); i++)); do
  printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$i" "$features"
  printf 'CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 0\n\n' "$part"
done >"$work/cpuinfo"
mount -t proc proc "$root/proc" && mounts+=("$root/proc")
mount --bind "$work/cpuinfo" "$root/proc/cpuinfo" && mounts+=("$root/proc/cpuinfo")
mount --bind /dev "$root/dev" && mounts+=("$root/dev")
mount --bind /sys "$root/sys" && mounts+=("$root/sys")
mount -o remount,bind,ro "$root/sys"
mkdir "$root/wheels"
mount --bind "$cache/wheels-arm64-$suite" "$root/wheels" && mounts+=("$root/wheels")

in_root() {  # in_root COMMAND...: run in the rootfs, in a PID namespace of its own
  # Waited for in the background, so that INT or TERM run the traps at once rather than after it.
  unshare --pid --fork --kill-child chroot "$root" env -i HOME=/root LC_ALL=C.UTF-8 QEMU_CPU="$cpu" \
    PATH=/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin "${root_env[@]}" "$@" &
  wait "$!"
}
[ "$(in_root uname -m)" = aarch64 ] || { echo "arm64 check: the rootfs does not run as aarch64" >&2; exit 1; }

# Pinned to the host's versions, so that the architecture is the only difference.
pins=$("$host_venv/bin/python" -c 'from importlib.metadata import version
print(" ".join(f"{p}=={version(p)}" for p in ("numpy", "onnxruntime", "pillow", "click")))')
t=$SECONDS
in_root python3 -m venv /venv
# The aarch64 wheels, as pip in the rootfs picks them from the index, are kept in a wheel folder
# (the index's answers here are not cached by pip itself); the install then reads only that.
wheels_for=$(printf '%s\n' "$pins" | sha256sum | cut -c1-12)
if [ ! -f "$cache/wheels-arm64-$suite/complete-$wheels_for" ]; then
  # shellcheck disable=SC2086  # $pins is a list of requirements
  in_root pip download --quiet --dest /wheels $pins "setuptools>=68"
  touch "$cache/wheels-arm64-$suite/complete-$wheels_for"
fi
# shellcheck disable=SC2086
in_root pip install --quiet --no-compile --no-index --find-links /wheels /src $pins
step "pip install . ($(in_root python -c 'import platform; print(platform.machine())'), $cpu)" "$t"

run_outputs() {  # run_outputs DIGITVAE PYTHON OUT PICTURE SRC: the commands compared
  "$1" generate -n 60 --seed 0 -o "$3/cli_generate.npy" >/dev/null
  "$1" reconstruct --prepare "$4" -o "$3/cli_reconstruct_prepare.npy" >/dev/null
  "$2" "$5/scripts/arm64_outputs.py" api "$3" "$4"
}
t=$SECONDS
in_root bash -c "set -euo pipefail; $(declare -f run_outputs); cd /out && mkdir arm && run_outputs digitvae python arm picture.png /src"
step "outputs on arm64 (qemu-user)" "$t"
t=$SECONDS
mkdir "$work/host"
run_outputs "$host_venv/bin/digitvae" "$host_venv/bin/python" "$work/host" "$root/out/picture.png" .
step "outputs on the host" "$t"

"$host_venv/bin/python" scripts/arm64_outputs.py compare "$work/host" "$root/out/arm"
echo "arm64 check: $pins on $(sed -n 's/^PRETTY_NAME="\(.*\)"$/\1/p' "$root/etc/os-release") aarch64, $((SECONDS - started))s in all"
