#!/bin/bash
# Install the vip-elector .deb into a freshly debootstrapped Debian bookworm
# (minbase, Debian's archive only: no pip) and run it there (`make deb-test`).
#
#   tests/packaging/deb_test.sh [DIR_OR_DEB]     (default: dist/deb)
#
# Phases (each one timed):
#   debootstrap  bookworm --variant=minbase into a temporary directory
#   install      apt-get install ./vip-elector_*.deb from bookworm, -updates
#                and -security; the package's files, user, conffile mode,
#                /etc/vip-elector (0750 root:vip-elector) and the examples;
#                the needrestart conffile (valid Perl, leaves exactly the
#                units alone); every relative link of the installed docs
#                leads to a shipped file; no top_level.txt
#   smoke        the package's autopkgtest, debian/tests/smoke: --version,
#                --help, a configuration error, the manual page under man
#   config       a dcs-type: etcd vip-manager.yml: exit 2, "configuration
#                error" lines, and no connection to the dcs-endpoints given
#   run          a valid config pointed at 127.0.0.1:1 (nothing listens),
#                as the user vip-elector with a group-readable token file:
#                the daemon runs with Debian's python3-consul 0.7.1 & co.,
#                SIGTERM (timeout -s TERM) stops it within 2 s with exit 0;
#                an unreadable token file is a configuration error; the run
#                once more under PR_SET_MDWE, the kernel's version of the
#                unit's MemoryDenyWriteExecute=yes
#   units        systemd from bookworm in the chroot: systemd-analyze verify
#                of both units and of README.Debian's LoadCredential= drop-in
#                (no output allowed), ExecReload= (check-config, then
#                SIGHUP), the exposure score of
#                systemd-analyze security --offline=yes
#   upgrade-deb  the same code built again as version <version>+upgrade1, for
#                the upgrade on a leader in phase boot
#   previous-deb the previous release (debian/changelog's second entry) built
#                from git history with this debian/build-deb.sh
#                (DEB_TEST_PREVIOUS=COMMIT picks the commit)
#   boot         the chroot booted with systemd-nspawn, a Consul dev agent in
#                it: the units for real, sandbox included, log priorities in
#                the journal (journalctl -p warning), a reload that fails on
#                a bad configuration, the start limit on a failing pre-flight
#                check, the upgrade on a leader from this version (restart in
#                place) and from the previous release (no SIGUSR2, a notice)
#                (see boot_test);
#                needs a consul binary (`make testbed` builds one, or
#                DEB_TEST_CONSUL=PATH), else skipped; DEB_TEST_BOOT=0 skips it
# The chroot (and the container) are stopped, unmounted and deleted on every
# exit (trap).
#
# Needs root (debootstrap, chroot, mount, nspawn) and the Debian mirror
# (DEB_TEST_MIRROR, default http://deb.debian.org/debian). Installs
# debootstrap and systemd-container with apt-get if they are missing.
# DEB_TEST_KEEP=1 keeps the chroot.
set -euo pipefail
# In a pipeline, `grep -q` exits at the first match and the writer gets SIGPIPE,
# which pipefail turns into a failure once the output is long: grep >/dev/null.

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C.UTF-8
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV || true

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mirror=${DEB_TEST_MIRROR:-http://deb.debian.org/debian}
security_mirror=${DEB_TEST_SECURITY_MIRROR:-${mirror%/debian}/debian-security}
suite=bookworm
target=${1:-dist/deb}
case "$target" in /*) ;; *) target=$repo/$target ;; esac

fail() { echo "deb-test: FAIL: $*" >&2; exit 1; }
note() { echo "deb-test: $*"; }

# -- timing --------------------------------------------------------------------
now() { date +%s%N; }
seconds() { awk -v ns="$1" 'BEGIN { printf "%.1f", ns / 1e9 }'; }
t_all=$(now)
phase_name="" phase_start=0
phase_report=()
phase() {  # phase NAME: closes the running phase, starts the next one
	local t
	t=$(now)
	if [ -n "$phase_name" ]; then
		phase_report+=("$(printf '%-12s %6s s' "$phase_name" "$(seconds $((t - phase_start)))")")
		note "phase $phase_name done in $(seconds $((t - phase_start))) s"
	fi
	phase_name=${1:-} phase_start=$t
	[ -z "$phase_name" ] || echo "== deb-test: $phase_name"
}

# -- inputs --------------------------------------------------------------------
[ "$(id -u)" = 0 ] || fail "needs root (debootstrap, chroot, mount)"
if [ -d "$target" ]; then
	debs=("$target"/vip-elector_*_all.deb)
	[ -f "${debs[0]}" ] || fail "no vip-elector_*_all.deb in $target (run make deb)"
	[ "${#debs[@]}" = 1 ] || fail "more than one .deb in $target: ${debs[*]}"
	deb=${debs[0]}
else
	deb=$target
fi
[ -f "$deb" ] || fail "$deb not found"
version=$(dpkg-deb --field "$deb" Version)
note "testing $deb (version $version)"

phase prerequisites
if ! command -v debootstrap >/dev/null; then
	note "installing debootstrap"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap ||
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; }
fi

# -- the chroot and its cleanup ---------------------------------------------------
root=$(mktemp -d "${TMPDIR:-/tmp}/vip-elector-deb-test.XXXXXX")
chmod 0755 "$root"  # it becomes /: every user in the chroot must traverse it
cleanup() {
	local rc=$? p
	set +e
	# A container still running (phase boot): power it off, then kill it.
	if [ -n "${nspawn_pid:-}" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
		if [ "$rc" != 0 ] && [ -n "${container:-}" ]; then
			echo "deb-test: the journal of vip-elector*.service in the container:" >&2
			nsenter -t "$container" -a journalctl -b --no-pager -u 'vip-elector*' | tail -30 >&2
			echo "deb-test: the journal of consul.service in the container:" >&2
			nsenter -t "$container" -a journalctl -b --no-pager -u consul.service | tail -15 >&2
		fi
		kill -TERM "$nspawn_pid"
		for p in $(seq 50); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$nspawn_pid" 2>/dev/null
		[ "$rc" = 0 ] || { echo "deb-test: container console:" >&2; tail -25 "$root.boot.log" >&2; }
		rm -f "$root.boot.log"
	fi
	# Processes started inside the chroot (the listener, a daemon under test).
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && kill -9 "${p#/proc/}" 2>/dev/null
	done
	# Unmount everything below the chroot (deepest first), then delete it
	# without crossing into anything that is still mounted.
	findmnt -rn -o TARGET | grep -F "$root/" | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	if findmnt -rn -o TARGET | grep -F "$root/" >/dev/null; then
		echo "deb-test: still mounted below $root; not deleting it" >&2
	elif [ "${DEB_TEST_KEEP:-0}" = 1 ]; then
		echo "deb-test: kept the chroot in $root" >&2
	else
		rm -rf --one-file-system "$root"
	fi
	[ -z "${upgrade_dir:-}" ] || rm -rf "$upgrade_dir" "$upgrade_dir.log"
	[ -z "${previous_dir:-}" ] || rm -rf "$previous_dir"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

phase debootstrap
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.debootstrap.log" 2>&1 ||
	{ tail -20 "$root.debootstrap.log" >&2; rm -f "$root.debootstrap.log"; fail "debootstrap failed"; }
rm -f "$root.debootstrap.log"
note "$(du -sh --one-file-system "$root" | cut -f1) debootstrapped"

phase install
mount -t proc proc "$root/proc"
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF
# No daemon may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
cp "$deb" "$root/tmp/"
in_root apt-get update -q >/dev/null
in_root apt-get install -y -q "/tmp/$(basename "$deb")" >"$root/tmp/install.log" 2>&1 ||
	{ cat "$root/tmp/install.log" >&2; fail "apt-get install of the .deb failed"; }
grep -E 'newly installed' "$root/tmp/install.log" || true
# The shipped /etc/default/vip-elector chooses no health check yet: the
# postinst says so (an upgrade that installs it must not go unnoticed).
grep -F 'vip-elector: NOTICE: /etc/default/vip-elector chooses no health check for vip-elector.service' \
	"$root/tmp/install.log" >/dev/null || fail "no notice that the installed defaults file chooses no health check"
if in_root sh -c 'command -v pip pip3' >/dev/null 2>&1; then fail "pip got installed"; fi
in_root dpkg-query -W -f '  ${Package} ${Version}\n' vip-elector python3 python3-consul \
	python3-yaml python3-configargparse python3-tenacity python3-requests \
	python3-prometheus-client

# What the package put on the system.
[ "$(in_root stat -c '%a %U:%G' /etc/default/vip-elector)" = "640 root:root" ] ||
	fail "/etc/default/vip-elector is $(in_root stat -c '%a %U:%G' /etc/default/vip-elector), want 640 root:root"
in_root getent passwd vip-elector | grep ':/nonexistent:/usr/sbin/nologin$' >/dev/null ||
	fail "system user vip-elector missing or wrong: $(in_root getent passwd vip-elector || true)"
examples=/usr/share/doc/vip-elector/examples
for f in /usr/bin/vip-elector /lib/systemd/system/vip-elector.service \
	/lib/systemd/system/vip-elector@.service /usr/share/man/man8/vip-elector.8.gz \
	$examples/vip-manager.yml $examples/vip-guard.hcl $examples/acl-policy.hcl \
	$examples/vip-manager@.service; do
	[ -e "$root$f" ] || fail "$f is missing"
done
if ls "$root"/etc/systemd/system/*.wants/vip-elector* >/dev/null 2>&1; then
	fail "the service got enabled on installation"
fi
# The directory for the token file: only the daemon's group may look in.
[ "$(in_root stat -c '%a %U:%G' /etc/vip-elector)" = "750 root:vip-elector" ] ||
	fail "/etc/vip-elector is $(in_root stat -c '%a %U:%G' /etc/vip-elector), want 750 root:vip-elector"
# The example ACL policy is docs/acl.md's policy, verbatim (after its header).
python3 - "$root$examples/acl-policy.hcl" "$repo/docs/acl.md" <<'PY' ||
import sys
policy = open(sys.argv[1]).read().split("\n", 4)[4]
assert "session_prefix" in policy and "```hcl\n" + policy + "```" in open(sys.argv[2]).read()
PY
	fail "examples/acl-policy.hcl is not docs/acl.md's policy"
note "files, examples, user vip-elector, /etc/default/vip-elector 0640, /etc/vip-elector 0750: ok"
# The package's relations: Python 3.11 at least (the code uses 3.11; on 3.10
# the .deb would install and then crash), and no Suggests of a vip-manager:
# bookworm's 1.0.2-6 is built without Consul support.
depends=$(dpkg-deb -f "$deb" Depends)
grep -E 'python3(:any)? \(>= 3\.11' <<<"$depends" >/dev/null ||
	fail "Depends does not ask for Python >= 3.11: $depends"
suggests=$(dpkg-deb -f "$deb" Suggests Recommends)
if grep -i 'vip-manager' <<<"$suggests" >/dev/null; then
	fail "the package suggests or recommends a vip-manager: $suggests"
fi
note "Depends asks for Python >= 3.11; no vip-manager in Suggests/Recommends"
# needrestart (apt, unattended-upgrades) must leave the units alone: a
# restart is a stop, and a leader's stop moves the VIP. The file is Perl that
# needrestart evaluates after its needrestart.conf (the same way here), and
# its override must match both units and nothing else.
nr=/etc/needrestart/conf.d/vip-elector.conf
[ -f "$root$nr" ] || fail "$nr is missing"
grep -qx "$nr" "$root/var/lib/dpkg/info/vip-elector.conffiles" || fail "$nr is not a conffile"
in_root perl -c "$nr" >/dev/null 2>&1 || fail "$nr is not valid Perl: $(in_root perl -c "$nr" 2>&1)"
in_root perl -e '
	our %nrconf = (override_rc => {});
	my $fn = shift;
	eval do { local (@ARGV, $/) = $fn; <> };  # as needrestart reads conf.d
	die "Error parsing $fn: $@" if $@;
	for my $unit (@ARGV) {
		my ($want, $name) = split /=/, $unit, 2;
		my @hits = grep { $name =~ /$_/ } keys %{ $nrconf{override_rc} };
		my $left_alone = (@hits && !grep { $nrconf{override_rc}{$_} } @hits) ? 1 : 0;
		die "$name: left alone $left_alone, want $want\n" if $left_alone != $want;
	}' "$nr" 1=vip-elector.service 1=vip-elector@15-main.service 0=vip-manager.service \
	0=consul.service 0=vip-elector-other.service ||
	fail "$nr does not leave exactly vip-elector.service and vip-elector@*.service alone"
note "$nr: a conffile, valid Perl, leaves vip-elector.service and vip-elector@*.service alone"
# The documentation's relative links lead to files the package ships (docs are
# compressed: FILE.gz counts as FILE), none to the source tree.
python3 - "$root/usr/share/doc/vip-elector" <<'PY' || fail "links in /usr/share/doc/vip-elector lead nowhere"
import gzip, pathlib, re, sys
base = pathlib.Path(sys.argv[1])
broken, links = [], 0
for doc in sorted(base.rglob("*.md*")):
    text = (gzip.open if doc.suffix == ".gz" else open)(doc, "rt").read()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        path = target.split("#", 1)[0]
        if not path or re.match(r"[a-z]+:", path):
            continue
        links += 1
        found = doc.parent / path
        if not (found.exists() or found.with_name(found.name + ".gz").exists()):
            broken.append(f"{doc.relative_to(base)}: ({target})")
print("\n".join(f"    broken link: {b}" for b in broken) or f"    {links} relative links, all resolve")
sys.exit(1 if broken or not links else 0)
PY
# lintian --pedantic: setuptools' top_level.txt is not shipped (nothing reads
# it: importlib.metadata infers the top-level package from RECORD).
if ls "$root"/usr/lib/python3/dist-packages/vip_elector-*.dist-info/top_level.txt >/dev/null 2>&1; then
	fail "the package ships top_level.txt"
fi
in_root python3 -c '
import importlib.metadata as m
assert "vip_elector" in m.packages_distributions(), "vip_elector not found by importlib.metadata"
assert m.version("vip-elector")' || fail "importlib.metadata does not find vip-elector"
note "no top_level.txt; importlib.metadata finds vip-elector"

phase smoke
# The package's own autopkgtest (debian/tests/smoke: --version, --help, a
# configuration error, the manual page), with what its control file asks for.
in_root apt-get install -y -q --no-install-recommends man-db >"$root/tmp/man-db.log" 2>&1 ||
	{ tail -20 "$root/tmp/man-db.log" >&2; fail "could not install man-db in the chroot"; }
mkdir -p "$root/srv/test" "$root/tmp/smoke"
install -m 0755 "$repo/debian/tests/smoke" "$root/srv/test/smoke"
in_root env AUTOPKGTEST_TMP=/tmp/smoke /srv/test/smoke >"$root/tmp/smoke.log" 2>&1 ||
	{ cat "$root/tmp/smoke.log" >&2; fail "debian/tests/smoke failed"; }
sed 's/^/    /' "$root/tmp/smoke.log"
note "debian/tests/smoke: passed"

phase config
# A listener on a free port records whether anything connects to it; the
# invalid config names it as its dcs-endpoint.
mkdir -p "$root/srv/test"
cat >"$root/srv/test/listener.py" <<'EOF'
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
s.settimeout(0.2)
with open(sys.argv[1], "w") as f:
    f.write(str(s.getsockname()[1]))
connections = 0
while True:
    try:
        conn, _ = s.accept()
    except socket.timeout:
        continue
    connections += 1
    with open(sys.argv[2], "w") as f:
        f.write(str(connections))
    conn.close()
EOF
# (chroot execs env execs python3: $! is the listener itself)
chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin python3 /srv/test/listener.py \
	/srv/test/port /srv/test/connections &
listener=$!
for _ in $(seq 50); do [ -s "$root/srv/test/port" ] && break; sleep 0.1; done
port=$(cat "$root/srv/test/port")
cat >"$root/srv/test/etcd.yml" <<EOF
# vip-manager's own default store: vip-elector must refuse it.
dcs-type: etcd
trigger-key: "/service/pgtest/leader"
trigger-value: "node1"
dcs-endpoints:
  - http://127.0.0.1:$port
EOF
set +e
in_root vip-elector --vip-manager-config /srv/test/etcd.yml \
	>"$root/srv/test/etcd.out" 2>"$root/srv/test/etcd.err"
rc=$?
set -e
sleep 0.3
kill "$listener" 2>/dev/null || true
wait "$listener" 2>/dev/null || true
sed 's/^/    /' "$root/srv/test/etcd.err"
[ "$rc" = 2 ] || fail "dcs-type: etcd exited $rc, want 2"
grep -q '^vip-elector: configuration error: .*dcs-type' "$root/srv/test/etcd.err" ||
	fail "no 'configuration error' line about dcs-type"
[ ! -s "$root/srv/test/connections" ] ||
	fail "vip-elector connected to the dcs-endpoint $(cat "$root/srv/test/connections") time(s) despite the bad config"
note "dcs-type: etcd: exit 2, configuration error reported, no connection to 127.0.0.1:$port"

phase run
cat >"$root/srv/test/ok.yml" <<'EOF'
dcs-type: consul
trigger-key: "service/pgtest/vip"
trigger-value: "node1"
dcs-endpoints:
  - http://127.0.0.1:1
EOF
run_seconds=3
run_daemon() {  # run_daemon LABEL [WRAPPER...]: run, SIGTERM after 3 s, check
	local label=$1 start end rc stop_ms
	shift
	start=$(now)
	set +e
	# -k 2: SIGKILL if still running 2 s after SIGTERM (exit status 137).
	# --foreground: one SIGTERM. Without it timeout signals the daemon and
	# then its whole process group, and a daemon that sees the second one
	# in time exits at once without releasing, as designed (exit 143).
	in_root timeout --foreground --preserve-status -k 2 -s TERM "$run_seconds" "$@" \
		/usr/bin/vip-elector --vip-manager-config /srv/test/ok.yml \
		>"$root/srv/test/run.log" 2>&1
	rc=$?
	set -e
	end=$(now)
	stop_ms=$(( (end - start) / 1000000 - run_seconds * 1000 ))
	sed 's/^/    /' "$root/srv/test/run.log" | cut -c1-200
	[ "$rc" = 0 ] || fail "$label: exit status $rc after SIGTERM, want 0 (137 = killed 2 s after SIGTERM)"
	[ "$stop_ms" -le 2000 ] || fail "$label: took $stop_ms ms to stop, want <= 2000"
	grep -q 'vip-elector starting' "$root/srv/test/run.log" || fail "$label: no start-up line"
	grep -q 'Connection refused' "$root/srv/test/run.log" || fail "$label: did not try Consul at 127.0.0.1:1"
	grep -q 'vip-elector stopped' "$root/srv/test/run.log" || fail "$label: no clean-stop line"
	note "$label: ran ${run_seconds} s against 127.0.0.1:1, stopped ${stop_ms} ms after SIGTERM, exit 0"
}
# As the unit runs it: user vip-elector, with an ACL token file given to the
# vip-elector group as /etc/default/vip-elector and README.Debian describe.
mkdir -p "$root/etc/vip-elector"
echo 00000000-0000-0000-0000-000000000001 >"$root/etc/vip-elector/consul.token"
in_root chgrp vip-elector /etc/vip-elector/consul.token
chmod 0640 "$root/etc/vip-elector/consul.token"
as_service=(env CONSUL_HTTP_TOKEN_FILE=/etc/vip-elector/consul.token
	setpriv --reuid=vip-elector --regid=vip-elector --init-groups)
run_daemon "vip-elector (user vip-elector)" "${as_service[@]}"
grep -q 'token=file /etc/vip-elector/consul.token' "$root/srv/test/run.log" ||
	fail "the token file was not used"

# A token file the user cannot read is a configuration error (exit 2).
chmod 0600 "$root/etc/vip-elector/consul.token"
set +e
in_root "${as_service[@]}" /usr/bin/vip-elector --vip-manager-config /srv/test/ok.yml \
	>"$root/srv/test/token.err" 2>&1
rc=$?
set -e
sed 's/^/    /' "$root/srv/test/token.err" | cut -c1-200
[ "$rc" = 2 ] && grep -q 'configuration error: token file' "$root/srv/test/token.err" ||
	fail "an unreadable token file gave exit $rc, want 2 with a configuration error"
note "unreadable token file: exit 2, configuration error"

# MemoryDenyWriteExecute=yes: run it again with PR_SET_MDWE (Linux >= 6.3),
# which forbids writable+executable memory for the process and what it execs.
cat >"$root/srv/test/mdwe.py" <<'EOF'
import ctypes, os, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit(77)  # kernel without MDWE
os.execv(sys.argv[1], sys.argv[1:])
EOF
if in_root python3 /srv/test/mdwe.py /bin/true; then
	if in_root python3 /srv/test/mdwe.py /usr/bin/python3 -c \
		'import mmap; mmap.mmap(-1, 4096, prot=7)' 2>/dev/null; then
		fail "PR_SET_MDWE did not forbid a writable+executable mapping"
	fi
	run_daemon "vip-elector under PR_SET_MDWE" setpriv --reuid=vip-elector \
		--regid=vip-elector --init-groups python3 /srv/test/mdwe.py
else
	note "kernel $(uname -r) has no PR_SET_MDWE; skipped the MemoryDenyWriteExecute run"
fi

phase units
# man-db: verify checks that Documentation=man:vip-elector(8) resolves.
in_root apt-get install -y -q --no-install-recommends systemd man-db >"$root/tmp/systemd.log" 2>&1 ||
	{ tail -20 "$root/tmp/systemd.log" >&2; fail "could not install systemd in the chroot"; }
note "$(in_root systemctl --version | head -1)"
for unit in vip-elector.service vip-elector@15-main.service; do
	out=$(in_root systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify $unit: $out"
	[ -z "$out" ] || fail "systemd-analyze verify $unit is not clean: $out"
	note "systemd-analyze verify $unit: clean"
done
# `systemctl reload` runs check-config with ExecStart='s arguments, then sends
# SIGHUP (phase boot shows a bad configuration failing the reload); at
# shutdown vip-elector stops (and deletes the key) before vip-manager, which
# then still drops the VIP.
for unit in vip-elector.service:vip-manager.service vip-elector@.service:vip-manager@%i.service; do
	file=/lib/systemd/system/${unit%%:*}
	reloads=$(grep '^ExecReload=' "$root$file")
	start_args=$(sed -n 's|^ExecStart=/usr/bin/vip-elector ||p' "$root$file")
	[ "$reloads" = "ExecReload=/usr/bin/vip-elector check-config $start_args
ExecReload=/bin/kill -HUP \$MAINPID" ] ||
		fail "$file: want check-config with ExecStart='s arguments ($start_args), then SIGHUP; has: $reloads"
	grep -E "^After=.* ${unit#*:}( |\$)" "$root$file" >/dev/null ||
		fail "$file is not ordered After=${unit#*:}"
done
note "both units: ExecReload= runs check-config with ExecStart='s arguments, then sends SIGHUP; After= vip-manager's unit"
# The LoadCredential= drop-in README.Debian suggests for root-only files.
mkdir -p "$root/etc/systemd/system/vip-elector.service.d"
cat >"$root/etc/systemd/system/vip-elector.service.d/credentials.conf" <<'EOF'
[Service]
LoadCredential=consul-token:/etc/vip-elector/consul.token
Environment=VIP_ELECTOR_TOKEN_FILE=%d/consul-token
LoadCredential=vip-manager.yml:/etc/default/vip-manager.yml
ExecStart=
ExecStart=/usr/bin/vip-elector --vip-manager-config=%d/vip-manager.yml $VIP_ELECTOR_OPTS
EOF
out=$(in_root systemd-analyze verify vip-elector.service 2>&1) && [ -z "$out" ] ||
	fail "systemd-analyze verify with the LoadCredential= drop-in of README.Debian: $out"
rm -r "$root/etc/systemd/system/vip-elector.service.d"
note "systemd-analyze verify with README.Debian's LoadCredential= drop-in: clean"
in_root systemd-analyze security --offline=yes /lib/systemd/system/vip-elector.service \
	>"$root/tmp/security.txt" 2>&1 || true
# The settings that still add to the exposure (the ✓ ones are fine).
grep -E '^✗' "$root/tmp/security.txt" | sed 's/^/    /' || true
score=$(grep -o 'Overall exposure level for .*' "$root/tmp/security.txt" || true)
[ -n "$score" ] || { cat "$root/tmp/security.txt" >&2; fail "no exposure score"; }
note "systemd-analyze security --offline=yes: $score"

phase upgrade-deb
# The same code as a newer version, for the upgrade on a leader (phase boot).
upgrade_version="${version}+upgrade1"
upgrade_deb=""
if [ "${DEB_TEST_BOOT:-1}" != 0 ]; then
	upgrade_dir=$(mktemp -d "${TMPDIR:-/tmp}/vip-elector-upgrade.XXXXXX")
	DEB_BUILD_VERSION=$upgrade_version bash "$repo/debian/build-deb.sh" "$upgrade_dir" \
		>"$upgrade_dir.log" 2>&1 || { cat "$upgrade_dir.log" >&2; fail "building $upgrade_version"; }
	upgrade_deb=$upgrade_dir/vip-elector_${upgrade_version}_all.deb
	[ -f "$upgrade_deb" ] || fail "no $upgrade_deb"
	note "built $upgrade_deb"
fi

phase previous-deb
# The previous release (the changelog's second entry), for the upgrade from
# it in phase boot: its source from git history, the newest commit whose
# debian/changelog and __version__ both still said that version (or
# DEB_TEST_PREVIOUS=COMMIT), built by this tree's debian/build-deb.sh.
previous_version=$(dpkg-parsechangelog -l "$repo/debian/changelog" --offset 1 --count 1 -S Version)
previous_deb=""
previous_commit() {  # previous_commit VERSION: prints the commit, or why there is none
	local commit newer="" top init
	if ! git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
		echo "not a git checkout: no history to build version $1 from"; return 1
	fi
	if [ "$(git -C "$repo" rev-parse --is-shallow-repository)" = true ]; then
		echo "a shallow clone: the history of version $1 may be missing (git fetch --unshallow)"; return 1
	fi
	for commit in $(git -C "$repo" log --format=%H -- debian/changelog vip_elector/__init__.py); do
		top=$(git -C "$repo" show "$commit:debian/changelog" 2>/dev/null | sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p')
		init=$(git -C "$repo" show "$commit:vip_elector/__init__.py" 2>/dev/null | sed -n 's/^__version__ = "\(.*\)"$/\1/p')
		if [ "$top" = "$1" ] && [ "$init" = "$1" ]; then
			# The files stayed so until the next (newer) commit that changed them.
			git -C "$repo" rev-parse "${newer:-$commit}${newer:+^}"; return 0
		fi
		newer=$commit
	done
	echo "no commit in which debian/changelog and vip_elector/__init__.py both say $1"; return 1
}
if [ "${DEB_TEST_BOOT:-1}" = 0 ]; then
	note "skipped (DEB_TEST_BOOT=0)"
elif [ -z "$previous_version" ]; then
	note "no upgrade from a previous release: debian/changelog has a single entry"
else
	if [ -n "${DEB_TEST_PREVIOUS:-}" ]; then
		commit=$(git -C "$repo" rev-parse --verify "${DEB_TEST_PREVIOUS}^{commit}") ||
			fail "DEB_TEST_PREVIOUS=$DEB_TEST_PREVIOUS is not a commit"
	else
		commit=$(previous_commit "$previous_version") ||
			fail "cannot build the previous release $previous_version: $commit"
	fi
	previous_dir=$(mktemp -d "${TMPDIR:-/tmp}/vip-elector-previous.XXXXXX")
	mkdir "$previous_dir/src" "$previous_dir/out"
	git -C "$repo" archive "$commit" | tar -x -C "$previous_dir/src"
	cp "$repo/debian/build-deb.sh" "$previous_dir/src/debian/build-deb.sh"
	bash "$previous_dir/src/debian/build-deb.sh" "$previous_dir/out" >"$previous_dir/build.log" 2>&1 ||
		{ tail -40 "$previous_dir/build.log" >&2; fail "building the previous release $previous_version at $commit"; }
	previous_deb=$(echo "$previous_dir"/out/vip-elector_*_all.deb)
	[ -f "$previous_deb" ] || fail "no .deb in $previous_dir/out"
	previous_version=$(dpkg-deb --field "$previous_deb" Version)
	dpkg --compare-versions "$previous_version" lt "$version" ||
		fail "the previous release $previous_version is not older than $version"
	note "built the previous release $previous_version from $(git -C "$repo" log -1 --format='%h (%ad)' --date=short "$commit")"
fi

phase boot
# The units for real: boot the chroot with systemd-nspawn, run a Consul dev
# agent in it (the binary the test bed builds, `make testbed`) and a health
# endpoint, and watch vip-elector.service under its full sandbox: activating
# while the check is critical, leader once it passes, a Consul restart, a
# clean stop, a crash, a configuration error, the watchdog, an @ instance.
consul_bin=${DEB_TEST_CONSUL:-}
if [ -z "$consul_bin" ]; then
	for c in "${XDG_CACHE_HOME:-${HOME:-/root}/.cache}"/vip-elector/testbed/consul-*/consul; do
		[ -x "$c" ] && consul_bin=$c
	done
fi
nspawn_pid=""
X() { nsenter -t "$container" -a "$@"; }
prop() { X systemctl show -P "$2" "$1"; }
wait_for() {  # wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds
	local limit=$1 what=$2 deadline=$(( $(date +%s) + $1 ))
	shift 2
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$deadline" ] || fail "waited $limit s in vain for $what"
		sleep 0.5
	done
}
is_prop() { [ "$(prop "$1" "$2")" = "$3" ]; }
is_leader() { case "$(prop "$1" StatusText)" in "leader of $2 "*) ;; *) return 1 ;; esac; }
kv() { X /usr/local/bin/consul kv get "$1" 2>/dev/null; }
is_kv() { [ "$(kv "$1")" = "$2" ]; }
kv_detail() {  # the key's session and ModifyIndex, e.g. "session=… index=42"
	X /usr/local/bin/consul kv get -detailed "$1" 2>/dev/null |
		awk '$1 == "Session" { s = $2 } $1 == "ModifyIndex" { m = $2 } END { print "session=" s " index=" m }'
}
journal_count() { X journalctl -b --no-pager -u vip-elector.service | grep -cF -- "$1" || true; }
journal_more() { [ "$(journal_count "$1")" -gt "$2" ]; }  # journal_more TEXT COUNT_BEFORE
not_competing() { case "$(prop vip-elector.service StatusText)" in "not competing: "*vip-http*critical*) ;; *) return 1 ;; esac; }
boot_finished() { case "$(X systemctl is-system-running 2>/dev/null)" in running|degraded) ;; *) return 1 ;; esac; }
gate_warned() {
	X journalctl -b -u vip-elector.service --no-pager -o cat -p warning |
		grep '^WARNING Health check verification failed' >/dev/null
}
boot_test() {
	local pid restarts
	umount "$root/proc"
	install -m 0755 "$consul_bin" "$root/usr/local/bin/consul"
	mkdir -p "$root/etc/consul.d" "$root/srv/health" "$root/etc/vip-manager"
	cat >"$root/etc/consul.d/check.hcl" <<'EOF'
check {
  id       = "vip-http"
  name     = "vip-http"
  http     = "http://127.0.0.1:8080/"
  interval = "1s"
}
EOF
	cat >"$root/etc/systemd/system/consul.service" <<'EOF'
[Unit]
Description=Consul dev agent (deb-test)
[Service]
ExecStart=/usr/local/bin/consul agent -dev -node node1 -bind 127.0.0.1 -client 127.0.0.1 -config-dir /etc/consul.d -log-level warn
[Install]
WantedBy=multi-user.target
EOF
	cat >"$root/etc/systemd/system/health.service" <<'EOF'
[Unit]
Description=The health endpoint vip-http checks (deb-test)
[Service]
ExecStart=/usr/bin/python3 -m http.server --bind 127.0.0.1 --directory /srv/health 8080
EOF
	cat >"$root/etc/default/vip-manager.yml" <<'EOF'
dcs-type: consul
trigger-key: "service/pgtest/vip"
trigger-value: "node1"
dcs-endpoints: ["http://127.0.0.1:8500"]
EOF
	printf 'dcs-type: consul\ntrigger-key: "service/15-main/vip"\ntrigger-value: "node1"\n' \
		>"$root/etc/vip-manager/15-main.yml"
	echo 'VIP_ELECTOR_CHECK_ID=vip-http' >>"$root/etc/default/vip-elector"
	in_root systemctl enable --quiet consul.service vip-elector.service

	# --private-network: the container has its own loopback, so its Consul (on
	# the default ports) meets nothing that listens on the host.
	setsid systemd-nspawn --quiet --directory="$root" --boot --register=no --keep-unit --private-network \
		--machine=vip-elector-deb-test --resolv-conf=off --console=read-only \
		>"$root.boot.log" 2>&1 </dev/null &
	nspawn_pid=$!
	container=""
	for _ in $(seq 100); do
		container=$(pgrep -P "$nspawn_pid" | head -1 || true)
		[ -n "$container" ] && X systemctl is-system-running >/dev/null 2>&1 && break
		case "$(X systemctl is-system-running 2>/dev/null)" in starting|running|degraded) break ;; esac
		sleep 0.2
	done
	[ -n "$container" ] || { cat "$root.boot.log" >&2; fail "the container did not boot"; }
	note "booted $(X systemctl --version | head -1) in systemd-nspawn"

	# 1. The health check is critical (nothing serves it yet): READY=1 all
	#    the same once the agent answers, so neither `systemctl start` nor
	#    the boot waits for the check; the Status: line says why the node
	#    does not compete.
	wait_for 90 "vip-elector.service to be active with the check critical" is_prop vip-elector.service ActiveState active
	wait_for 30 "a Status: line that says it does not compete" not_competing
	[ -z "$(kv service/pgtest/vip)" ] || fail "a leader with the check critical"
	wait_for 60 "the boot to finish with the check critical" boot_finished
	note "check critical: active, Status: $(prop vip-elector.service StatusText); system '$(X systemctl is-system-running || true)'"

	#    Log levels reach the journal (sd-daemon "<N>" prefixes): the
	#    health gate's WARNING is shown at -p warning, INFO lines are not,
	#    and no prefix is left in a message.
	#    (The gate's first WARNING comes once the agent answers, which a
	#    loaded machine's dev agent may take a while to do.)
	local entries warnings
	wait_for 60 "the health gate's WARNING in journalctl -p warning" gate_warned
	entries=$(X journalctl -b -u vip-elector.service --no-pager -o cat)
	warnings=$(X journalctl -b -u vip-elector.service --no-pager -o cat -p warning)
	grep -q 'vip-elector starting' <<<"$entries" || fail "no start-up line in the journal"
	if grep -q 'vip-elector starting' <<<"$warnings"; then
		fail "journalctl -p warning shows INFO lines: $warnings"
	fi
	if grep -q '^<[0-9]>' <<<"$entries"; then fail "a priority prefix was left in the journal: $entries"; fi
	note "journalctl -p warning: $(grep -c . <<<"$warnings") entries, the health gate's WARNING, no INFO"

	# 2. The check passes: READY=1, leader, the key holds this node's value.
	X systemctl start health.service
	wait_for 30 "vip-elector.service to become a leader" is_leader vip-elector.service service/pgtest/vip
	is_prop vip-elector.service ActiveState active || fail "leader but not active"
	[ "$(kv service/pgtest/vip)" = node1 ] || fail "service/pgtest/vip is '$(kv service/pgtest/vip)', want node1"
	wait_for 10 "multi-user.target" X systemctl is-active --quiet multi-user.target
	note "check passing: active, Status: $(prop vip-elector.service StatusText)"
	pid=$(prop vip-elector.service MainPID)
	X grep -E '^(Uid|NoNewPrivs|Seccomp|CapEff):' "/proc/$pid/status" | tr -s '\t ' ' ' | sed 's/^/    /'
	[ "$(X stat -c %U "/proc/$pid")" = vip-elector ] || fail "the daemon does not run as vip-elector"
	X grep -q '^NoNewPrivs:.1' "/proc/$pid/status" || fail "NoNewPrivileges not in force"
	X grep -q '^Seccomp:.2' "/proc/$pid/status" || fail "no seccomp filter"
	X grep -q '^CapEff:.0000000000000000' "/proc/$pid/status" || fail "the daemon has capabilities"

	# 3. A Consul restart (the dev agent forgets everything): vip-elector
	#    stays up, the same process, and is leader again by itself.
	restarts=$(prop vip-elector.service NRestarts)
	X systemctl restart consul.service
	sleep 2
	wait_for 60 "leadership after the Consul restart" is_leader vip-elector.service service/pgtest/vip
	[ "$(prop vip-elector.service MainPID)" = "$pid" ] && is_prop vip-elector.service NRestarts "$restarts" ||
		fail "vip-elector was restarted along with Consul"
	note "Consul restarted: same vip-elector process, leader again"

	# 3b. `systemctl reload` (ExecReload= sends SIGHUP): the same process reads
	#     its configuration again and keeps the lock untouched.
	local held reloads
	held=$(kv_detail service/pgtest/vip)
	reloads=$(journal_count 'configuration reloaded')
	X systemctl reload vip-elector.service
	wait_for 10 "the reload in the journal" journal_more 'configuration reloaded' "$reloads"
	[ "$(prop vip-elector.service MainPID)" = "$pid" ] || fail "systemctl reload restarted vip-elector"
	[ "$(kv_detail service/pgtest/vip)" = "$held" ] || fail "the key changed on reload"
	note "systemctl reload: same process, configuration reloaded, key untouched ($held)"

	# 3c. A reload with a broken configuration fails (ExecReload= runs
	#     check-config first) and the daemon is not signalled: the same
	#     process goes on leading with the configuration it has.
	local attempts errors
	attempts=$(journal_count 'configuration reload')
	errors=$(journal_count 'configuration error: ')
	sed -i 's/^dcs-type: consul$/dcs-type: etcd/' "$root/etc/default/vip-manager.yml"
	if X systemctl reload vip-elector.service 2>/dev/null; then
		fail "systemctl reload succeeded with dcs-type: etcd in vip-manager.yml"
	fi
	sed -i 's/^dcs-type: etcd$/dcs-type: consul/' "$root/etc/default/vip-manager.yml"
	journal_more 'configuration error: ' "$errors" ||
		fail "the failed reload left no 'configuration error' line in the journal"
	[ "$(journal_count 'configuration reload')" = "$attempts" ] ||
		fail "the daemon got SIGHUP despite the broken configuration"
	[ "$(prop vip-elector.service MainPID)" = "$pid" ] || fail "the failed reload restarted vip-elector"
	is_prop vip-elector.service ActiveState active || fail "not active after the failed reload"
	is_leader vip-elector.service service/pgtest/vip || fail "not leading after the failed reload"
	[ "$(kv_detail service/pgtest/vip)" = "$held" ] || fail "the key changed on the failed reload"
	note "systemctl reload with dcs-type: etcd: failed, configuration error in the journal, no SIGHUP, same process leading ($held)"

	# 4. A clean stop releases the lock at once.
	t=$(now)
	X systemctl stop vip-elector.service
	note "systemctl stop vip-elector: $(( ($(now) - t) / 1000000 )) ms"
	is_prop vip-elector.service Result success || fail "stop result $(prop vip-elector.service Result)"
	[ -z "$(kv service/pgtest/vip)" ] || fail "the trigger-key is still there after the stop"
	note "stopped: Result=success, the trigger-key is gone"

	# 5. A crash: Restart=always brings it back after RestartSec=2, and the
	#    new process adopts the session: the key is untouched (same session,
	#    same ModifyIndex), so the VIP never moves.
	X systemctl start vip-elector.service
	wait_for 30 "leadership after the start" is_leader vip-elector.service service/pgtest/vip
	local before after kept
	before=$(kv_detail service/pgtest/vip)
	kept=$(journal_count 'LOCK KEPT')
	restarts=$(prop vip-elector.service NRestarts)
	X sh -c "kill -KILL $(prop vip-elector.service MainPID)"
	wait_for 20 "the restart after SIGKILL" is_prop vip-elector.service NRestarts $((restarts + 1))
	wait_for 20 "vip-elector.service active again" is_prop vip-elector.service ActiveState active
	wait_for 20 "the session adopted" journal_more 'LOCK KEPT' "$kept"
	after=$(kv_detail service/pgtest/vip)
	[ "$after" = "$before" ] || fail "the key changed across the crash: '$before' -> '$after'"
	note "SIGKILL: restarted by systemd, session adopted, key untouched ($before)"

	# 5b. An upgrade on the leader: the postinst restarts the daemon in place
	#     (SIGUSR2, same pid), the new version runs and the key is untouched.
	if [ -n "$upgrade_deb" ]; then
		pid=$(prop vip-elector.service MainPID)
		before=$(kv_detail service/pgtest/vip)
		kept=$(journal_count 'LOCK KEPT')
		cp "$upgrade_deb" "$root/srv/upgrade.deb"  # (the container mounts a tmpfs on /tmp)
		X dpkg -i /srv/upgrade.deb >"$root/srv/upgrade.out" 2>&1 ||
			{ cat "$root/srv/upgrade.out" >&2; fail "dpkg -i of $upgrade_version"; }
		sed 's/^/    /' "$root/srv/upgrade.out"
		grep -F 'vip-elector.service restarts in place into the new version' "$root/srv/upgrade.out" >/dev/null ||
			fail "the upgrade from $version did not restart the daemon in place"
		wait_for 30 "the new version running" journal_more "starting: version=$upgrade_version " 0
		wait_for 20 "the session adopted by the new version" journal_more 'LOCK KEPT' "$kept"
		[ "$(prop vip-elector.service MainPID)" = "$pid" ] || fail "the upgrade restarted the unit"
		is_prop vip-elector.service ActiveState active || fail "not active after the upgrade"
		wait_for 20 "leader after the upgrade" is_leader vip-elector.service service/pgtest/vip
		after=$(kv_detail service/pgtest/vip)
		[ "$after" = "$before" ] || fail "the key changed across the upgrade: '$before' -> '$after'"
		[ "$(X vip-elector --version)" = "vip-elector $upgrade_version" ] || fail "not upgraded"
		note "upgrade to $upgrade_version on the leader: same pid, new version running, key untouched ($before)"
	fi

	# 6. The watchdog: a frozen daemon is killed and restarted. WatchdogSec
	#    is cut to 5 s for this (a runtime drop-in) to keep the test short.
	X sh -c 'mkdir -p /run/systemd/system/vip-elector.service.d &&
		printf "[Service]\nWatchdogSec=5s\n" >/run/systemd/system/vip-elector.service.d/watchdog.conf'
	X systemctl daemon-reload
	# (the boot's start and those of step 5 count towards StartLimitBurst;
	# step 7b tests the limit)
	X systemctl reset-failed vip-elector.service
	X systemctl restart vip-elector.service
	restarts=$(prop vip-elector.service NRestarts)
	X sh -c "kill -STOP $(prop vip-elector.service MainPID)"
	wait_for 30 "the watchdog restart" is_prop vip-elector.service NRestarts $((restarts + 1))
	X journalctl -b -u vip-elector.service | grep 'Watchdog timeout' >/dev/null || fail "no watchdog timeout in the journal"
	X rm -r /run/systemd/system/vip-elector.service.d
	X systemctl daemon-reload
	note "frozen daemon: watchdog timeout, restarted"

	# 7. A configuration error: failed, and no restart loop (exit status 2).
	X systemctl stop vip-elector.service
	sed -i 's/^dcs-type: consul$/dcs-type: etcd/' "$root/etc/default/vip-manager.yml"
	# (the starts of step 6 count towards StartLimitBurst; step 7b tests the limit)
	X systemctl reset-failed vip-elector.service
	X systemctl start vip-elector.service 2>/dev/null && fail "started with dcs-type: etcd"
	restarts=$(prop vip-elector.service NRestarts)
	sleep 4  # twice RestartSec
	is_prop vip-elector.service ActiveState failed && is_prop vip-elector.service ExecMainStatus 2 ||
		fail "config error: $(prop vip-elector.service ActiveState), status $(prop vip-elector.service ExecMainStatus)"
	is_prop vip-elector.service NRestarts "$restarts" || fail "restarted after a configuration error"
	sed -i 's/^dcs-type: etcd$/dcs-type: consul/' "$root/etc/default/vip-manager.yml"
	note "dcs-type: etcd: failed with status 2, not restarted"

	# 7b. A pre-flight failure (exit status 1: the trigger-key is a plain
	#     key) fails again at every restart: systemd gives up after
	#     StartLimitBurst starts instead of retrying every 2 s forever.
	#     (Crashes, the watchdog and an agent that does not answer are still
	#     restarted: steps 5 and 6, and the start timeout.)
	local preflights limits
	preflights=$(journal_count 'trigger-key pre-flight check failed')
	limits=$(journal_count 'Start request repeated too quickly')
	# A plain write onto a key some session still holds keeps that session
	# on it (and its expiry deletes the key): step 6's daemon, stopped in
	# step 7 before it had adopted its session, may have left one.
	wait_for 40 "the trigger-key to be free" is_kv service/pgtest/vip ""
	X /usr/local/bin/consul kv put service/pgtest/vip "not a lock" >/dev/null
	X /usr/local/bin/consul kv get -detailed service/pgtest/vip | grep -E '^Session +-$' >/dev/null ||
		fail "the plain trigger-key is held by a session: $(kv_detail service/pgtest/vip)"
	X systemctl reset-failed vip-elector.service
	X systemctl start vip-elector.service 2>/dev/null && fail "started with a plain trigger-key"
	wait_for 60 "systemd to give up restarting (start limit)" journal_more 'Start request repeated too quickly' "$limits"
	wait_for 10 "vip-elector.service failed" is_prop vip-elector.service ActiveState failed
	restarts=$(prop vip-elector.service NRestarts)
	sleep 5  # twice RestartSec and more: no further attempt
	is_prop vip-elector.service ActiveState failed && is_prop vip-elector.service NRestarts "$restarts" ||
		fail "pre-flight failure: still restarting ($(prop vip-elector.service ActiveState), NRestarts $restarts -> $(prop vip-elector.service NRestarts))"
	[ "$(journal_count 'trigger-key pre-flight check failed')" -gt "$preflights" ] ||
		fail "no pre-flight failure in the journal"
	X /usr/local/bin/consul kv delete service/pgtest/vip >/dev/null
	X systemctl reset-failed vip-elector.service
	X systemctl start vip-elector.service
	wait_for 30 "leadership once the plain key is gone" is_leader vip-elector.service service/pgtest/vip
	note "pre-flight failure: $restarts restarts, then 'Start request repeated too quickly' and no more; after the fix, leader again"

	# 8. One instance per vip-manager configuration, with its own settings
	#    in /etc/default/vip-elector@15-main: the status endpoint, if this
	#    version has one (a listening socket and Debian's prometheus-client
	#    under the sandbox).
	local status=""
	if X vip-elector --help | grep -- '--status-addr' >/dev/null; then
		status=127.0.0.1:9333
		echo "VIP_ELECTOR_OPTS=\"--status-addr=$status\"" >"$root/etc/default/vip-elector@15-main"
	fi
	X systemctl start vip-elector@15-main.service
	wait_for 30 "vip-elector@15-main leadership" is_leader vip-elector@15-main.service service/15-main/vip
	[ "$(kv service/15-main/vip)" = node1 ] || fail "service/15-main/vip is not node1"
	note "vip-elector@15-main: leader of service/15-main/vip, reading /etc/vip-manager/15-main.yml"
	if [ -n "$status" ]; then
		wait_for 10 "vip-elector@15-main to listen on $status" X python3 -c \
			"import socket; socket.create_connection(('${status%:*}', ${status##*:}), 1)"
		X python3 - "$status" <<'EOF' || fail "the status endpoint of vip-elector@15-main does not answer"
import sys, urllib.request
base = "http://" + sys.argv[1]
for path in ("/healthz", "/status", "/metrics"):
    with urllib.request.urlopen(base + path, timeout=5) as reply:
        body = reply.read().decode()
    assert reply.status == 200, (path, reply.status)
    print(f"    GET {path}: {reply.status}, {len(body)} bytes")
assert "vip_elector" in body, "no vip_elector metrics"
EOF
		note "vip-elector@15-main --status-addr=$status: /healthz, /status, /metrics answer"
	fi

	# 9. An upgrade from the previous release, installed afresh and leading.
	#    Its daemon has no SIGUSR2 handler if it is older than the postinst's
	#    SIGUSR2_SINCE (SIGUSR2 would kill it): the postinst leaves it
	#    running and says to restart it, and so does the next upgrade while
	#    it still runs (the version configured then has the handler, the
	#    running process has not). From a release with the handler, the
	#    upgrade restarts it in place as in step 5b.
	if [ -n "$previous_deb" ]; then
		local sigusr2_since starts
		sigusr2_since=$(sed -n 's/^SIGUSR2_SINCE=//p' "$repo/debian/vip-elector.postinst")
		[ -n "$sigusr2_since" ] || fail "no SIGUSR2_SINCE= in debian/vip-elector.postinst"
		X systemctl stop vip-elector@15-main.service vip-elector.service
		X dpkg --purge vip-elector >/dev/null 2>&1 || fail "dpkg --purge vip-elector"
		cp "$previous_deb" "$root/srv/previous.deb"
		cp "$deb" "$root/srv/current.deb"
		X dpkg -i /srv/previous.deb >"$root/srv/previous.out" 2>&1 ||
			{ cat "$root/srv/previous.out" >&2; fail "dpkg -i of the previous release $previous_version"; }
		[ "$(X vip-elector --version)" = "vip-elector $previous_version" ] || fail "$previous_version not installed"
		echo 'VIP_ELECTOR_CHECK_ID=vip-http' >>"$root/etc/default/vip-elector"
		X systemctl reset-failed vip-elector.service 2>/dev/null || true
		X systemctl start vip-elector.service
		wait_for 60 "$previous_version to lead" is_kv service/pgtest/vip node1
		pid=$(prop vip-elector.service MainPID)
		restarts=$(prop vip-elector.service NRestarts)
		before=$(kv_detail service/pgtest/vip)
		note "previous release $previous_version installed afresh and leading (pid $pid, $before)"
		upgrade_over_previous() {  # upgrade_over_previous NAME VERSION: dpkg -i /srv/NAME.deb
			# --force-confold: /etc/default/vip-elector was edited above
			X dpkg --force-confold -i "/srv/$1.deb" >"$root/srv/next.out" 2>&1 ||
				{ cat "$root/srv/next.out" >&2; fail "dpkg -i of $2 over $previous_version"; }
			sed 's/^/    /' "$root/srv/next.out"
			# The kept file chooses vip-http: no notice about the health check.
			if grep -F 'vip-elector: NOTICE:' "$root/srv/next.out" >/dev/null; then
				fail "upgrade to $2: a health check notice although the file chooses vip-http"
			fi
		}
		if dpkg --compare-versions "$previous_version" ge "$sigusr2_since"; then
			kept=$(journal_count 'LOCK KEPT')
			starts=$(journal_count "starting: version=$version ")
			upgrade_over_previous current "$version"
			grep -F 'vip-elector.service restarts in place into the new version' "$root/srv/next.out" >/dev/null ||
				fail "the upgrade from $previous_version did not restart the daemon in place"
			wait_for 30 "$version running" journal_more "starting: version=$version " "$starts"
			wait_for 20 "the session adopted by $version" journal_more 'LOCK KEPT' "$kept"
			[ "$(prop vip-elector.service MainPID)" = "$pid" ] || fail "the upgrade restarted the unit"
			after=$(kv_detail service/pgtest/vip)
			[ "$after" = "$before" ] || fail "the key changed across the upgrade: '$before' -> '$after'"
			note "upgrade $previous_version -> $version on the leader: restarted in place, same pid, key untouched"
		else
			for next in current:$version upgrade:$upgrade_version; do
				upgrade_over_previous "${next%%:*}" "${next#*:}"
				grep -F 'vip-elector.service still runs the previous version' "$root/srv/next.out" >/dev/null ||
					fail "upgrade to ${next#*:}: no notice to restart vip-elector.service when convenient"
				if grep -F 'restarts in place' "$root/srv/next.out" >/dev/null; then
					fail "upgrade to ${next#*:}: SIGUSR2 sent to $previous_version, which has no handler"
				fi
				sleep 3  # RestartSec and more: a killed daemon would be restarted by now
				[ "$(prop vip-elector.service MainPID)" = "$pid" ] && is_prop vip-elector.service NRestarts "$restarts" ||
					fail "upgrade to ${next#*:}: the $previous_version daemon did not survive (pid $pid -> $(prop vip-elector.service MainPID))"
				is_prop vip-elector.service ActiveState active || fail "upgrade to ${next#*:}: not active"
				after=$(kv_detail service/pgtest/vip)
				[ "$after" = "$before" ] || fail "upgrade to ${next#*:}: the key changed: '$before' -> '$after'"
				note "upgrade $previous_version -> ${next#*:} on the leader: notice printed, no SIGUSR2, same pid, key untouched"
			done
			# The restart the notice asks for: the new version leads.
			starts=$(journal_count "starting: version=$upgrade_version ")
			X systemctl restart vip-elector.service
			wait_for 30 "$upgrade_version to lead after the restart" is_leader vip-elector.service service/pgtest/vip
			wait_for 10 "the start line of $upgrade_version" journal_more "starting: version=$upgrade_version " "$starts"
			note "systemctl restart: $upgrade_version leads"
		fi
	fi

	X systemctl poweroff 2>/dev/null || true  # (no D-Bus in the container: it says so)
	for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
	kill -0 "$nspawn_pid" 2>/dev/null && fail "the container did not power off within 60 s"
	wait "$nspawn_pid" 2>/dev/null || true
	nspawn_pid=""
	note "container powered off"
	rm -f "$root.boot.log"
}
if [ "${DEB_TEST_BOOT:-1}" = 0 ]; then
	note "skipped (DEB_TEST_BOOT=0)"
elif [ -z "$consul_bin" ]; then
	note "skipped: no Consul binary (\`make testbed\` builds one, or set DEB_TEST_CONSUL)"
else
	if ! command -v systemd-nspawn >/dev/null; then
		note "installing systemd-container (systemd-nspawn)"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q systemd-container >/dev/null
	fi
	boot_test
fi

phase
total=$(seconds $(( $(now) - t_all )))
echo "== deb-test: PASSED in $total s"
printf '   %s\n' "${phase_report[@]}"
