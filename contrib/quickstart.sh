#!/bin/bash
# dlqfs quick start, for a fresh Debian 12 machine.
#
#   contrib/quickstart.sh mount [MOUNTPOINT]   install what is missing, build,
#                                              mount (default ~/dlq)
#   contrib/quickstart.sh umount [MOUNTPOINT]  unmount, stop the demo API
#   contrib/quickstart.sh test                 install, build (plain and
#                                              ASan+UBSan), run every test
#
# mount uses the real DLQ when QSTASH_TOKEN is set (QSTASH_URL optional),
# else a demo DLQ served by the bundled fake API on 127.0.0.1.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

# systemd and man-db: the tests check the installed unit with
# systemd-analyze and the man page with man (and groff)
packages=(gcc pkg-config meson ninja-build libfuse3-dev fuse3
	libcurl4-openssl-dev libjansson-dev ca-certificates python3
	python3-pytest rsync jq clang-format clang systemd man-db)

install_missing() {
	local missing=()
	for p in "${packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "quickstart: installing ${missing[*]}"
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -q
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
}

build() { # build DIR [meson options...]
	local dir=$1
	shift
	[ -f "$dir/build.ninja" ] || meson setup "$dir" "$@"
	meson compile -C "$dir"
}

state_dir() {
	echo "${XDG_RUNTIME_DIR:-/tmp}/dlqfs-demo-$(id -u)"
}

cmd_mount() {
	local mp=${1:-$HOME/dlq}
	install_missing
	build build
	mkdir -p "$mp"
	if [ -n "${QSTASH_TOKEN:-}" ]; then
		build/dlqfs "$mp"
		echo "dlqfs: mounted ${QSTASH_URL:-https://qstash.upstash.io} on $mp"
	else
		local st
		st=$(state_dir)
		mkdir -p "$st"
		if [ -f "$st/pid" ] && kill -0 "$(cat "$st/pid")" 2>/dev/null; then
			kill "$(cat "$st/pid")" || true
		fi
		rm -f "$st/port"
		# python3 -I: the demo server uses the standard library only
		nohup python3 -I tests/fakeapi/fakeapi.py --demo --port-file "$st/port" \
			>"$st/fakeapi.log" 2>&1 &
		echo $! >"$st/pid"
		for _ in $(seq 100); do [ -s "$st/port" ] && break; sleep 0.1; done
		[ -s "$st/port" ] || { cat "$st/fakeapi.log"; exit 1; }
		QSTASH_TOKEN=demo-token \
			QSTASH_URL="http://127.0.0.1:$(cat "$st/port")" \
			build/dlqfs "$mp"
		echo "dlqfs: mounted a demo DLQ (fake API on 127.0.0.1:$(cat "$st/port")) on $mp"
	fi
	cat <<MSG

Try:
  ls $mp/runs | wc -l
  ls $mp/by-label/ $mp/by-status/
  cat $mp/runs/\$(ls $mp/runs | head -1)/responseBody
  grep -l ECONNRESET $mp/runs/*/responseBody
  rsync -a --stats $mp/ /tmp/dlq-backup/ | grep transferred   # twice
  cat $mp/.dlqfs/status
Unmount with: contrib/quickstart.sh umount $mp
MSG
}

cmd_umount() {
	local mp=${1:-$HOME/dlq} st
	st=$(state_dir)
	fusermount3 -u "$mp" 2>/dev/null || fusermount3 -uz "$mp" 2>/dev/null || true
	if [ -f "$st/pid" ]; then
		kill "$(cat "$st/pid")" 2>/dev/null || true
		rm -f "$st/pid" "$st/port"
	fi
	echo "dlqfs: unmounted $mp"
}

cmd_test() {
	install_missing
	local log rc=0 ok=0 fail=0 n
	log=$(mktemp)
	# Plain build: the unit tests that need the real malloc (allocation
	# failure injection) run here; everything runs again under sanitizers.
	build build
	meson test -C build --suite unit --suite fuzz --print-errorlogs 2>&1 |
		tee -a "$log" || rc=$?
	build build-asan -Db_sanitize=address,undefined -Db_lundef=false
	meson test -C build-asan --print-errorlogs 2>&1 | tee -a "$log" || rc=$?
	# The stress suite again under ThreadSanitizer. clang 14's runtime
	# needs a narrower address-space layout than some kernels randomize
	# (vm.mmap_rnd_bits > 28): setarch -R turns randomization off for
	# this run only.
	CC=clang build build-tsan -Db_sanitize=thread -Db_lundef=false
	setarch "$(uname -m)" -R meson test -C build-tsan --suite stress \
		--print-errorlogs 2>&1 | tee -a "$log" || rc=$?
	for n in $(sed -n 's/^Ok: *\([0-9]*\)/\1/p' "$log"); do ok=$((ok + n)); done
	for n in $(sed -n 's/^Fail: *\([0-9]*\)/\1/p' "$log"); do fail=$((fail + n)); done
	rm -f "$log"
	echo "$ok passed, $fail failed"
	return $rc
}

case "${1:-}" in
mount) shift; cmd_mount "$@" ;;
umount) shift; cmd_umount "$@" ;;
test) shift; cmd_test "$@" ;;
*)
	sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
