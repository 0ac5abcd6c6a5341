"""dlqfs installed as a system tool (issue 13): `meson install` puts the
binary, the man page dlqfs(1) and the systemd user unit dlqfs@.service
where the system looks for them; the man page renders without a warning
and documents every option --help lists; the unit passes
`systemd-analyze verify --user`, and does what it says when run as systemd
runs it: the token from a 0400 credential file, `dlqfs -f`, an unmount on
SIGTERM, a dead mount cleared before a restart.

A fresh build of the source tree with --prefix in a temporary directory
stands in for a real installation (the unit's ExecStart then names a
binary that exists); the build under test is installed with DESTDIR too.
Nothing is installed outside temporary directories, and no systemd
manager is started: the unit is run command by command, as systemd would.
"""
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import time

import pytest

import fakeapi
from conftest import DLQFS, SOURCE_ROOT, TOKEN, is_mounted, unmount

BUILD_ROOT = os.environ.get("DLQFS_BUILD_ROOT",
                            os.path.dirname(os.path.abspath(DLQFS)))
MAN_SOURCE = os.path.join(SOURCE_ROOT, "doc", "dlqfs.1")
UNIT = "dlqfs@.service"


def _tool(name):
    """The path of a tool the install tests need: its absence is a failure
    (contrib/quickstart.sh installs them), never a skip."""
    path = shutil.which(name)
    assert path, "%s not found: run contrib/quickstart.sh test, which " \
        "installs what the tests need" % name
    return path


def _run(args, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 600)
    return subprocess.run(args, **kw)


def _check(args, **kw):
    r = _run(args, **kw)
    assert r.returncode == 0, "%s: exit %d\n%s%s" % (
        " ".join(args), r.returncode, r.stdout, r.stderr)
    return r


def _options(build):
    r = _check([_tool("meson"), "introspect", "--buildoptions", build])
    return {o["name"]: o["value"] for o in json.loads(r.stdout)}


def _layout(root, build):
    """Where `meson install` of `build` puts the binary, the man page and
    the unit, below `root` (a DESTDIR, or "/")."""
    o = _options(build)
    prefix = o["prefix"]

    def under(p):
        p = p if os.path.isabs(p) else os.path.join(prefix, p)
        return os.path.join(root, p.lstrip("/"))

    unitdir = o["systemd_user_unit_dir"] or _default_unitdir(prefix)
    return {
        "prefix": prefix,
        "bin": under(os.path.join(o["bindir"], "dlqfs")),
        "man": under(os.path.join(o["mandir"], "man1", "dlqfs.1")),
        "mandir": under(o["mandir"]),
        "unit": under(os.path.join(unitdir, UNIT)),
        "unitdir": unitdir,
    }


def _default_unitdir(prefix):
    """systemd's user unit directory for `prefix` (pkg-config systemd's
    systemd_user_unit_dir with its prefix replaced), else the fallback."""
    r = _run(["pkg-config", "--define-variable=prefix=" + prefix,
              "--variable=systemd_user_unit_dir", "systemd"])
    if r.returncode == 0 and r.stdout.strip():
        return r.stdout.strip()
    return os.path.join(prefix, "lib", "systemd", "user")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The source tree built with --prefix=<tmp>/prefix and installed
    there, as a user's `meson setup --prefix ... && meson install` would."""
    base = tmp_path_factory.mktemp("install")
    build = str(base / "build")
    prefix = str(base / "prefix")
    meson = _tool("meson")
    env = dict(os.environ)
    for k in list(env):  # a plain build: not the sanitizers of the caller
        if k.startswith(("ASAN_", "UBSAN_", "TSAN_", "LSAN_")):
            del env[k]
    _check([meson, "setup", "--prefix=" + prefix, "--buildtype=plain",
            build, SOURCE_ROOT], env=env)
    _check([meson, "compile", "-C", build, "dlqfs"], env=env)
    r = _check([meson, "install", "-C", build, "--no-rebuild"], env=env)
    lay = _layout("/", build)
    lay["install_log"] = r.stdout
    return lay


# --------------------------------------------------------------------------
# install layout


def test_install_puts_binary_man_page_and_unit_under_prefix(installed):
    prefix = installed["prefix"]
    assert installed["bin"] == os.path.join(prefix, "bin", "dlqfs")
    assert installed["man"] == os.path.join(prefix, "share", "man", "man1",
                                            "dlqfs.1")
    # systemd's user unit directory for this prefix: lib/systemd/user (or
    # share/systemd/user), which the user manager searches
    assert installed["unit"] in (
        os.path.join(prefix, "lib", "systemd", "user", UNIT),
        os.path.join(prefix, "share", "systemd", "user", UNIT))
    st = os.stat(installed["bin"])
    assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o111
    r = _check([installed["bin"], "--version"])
    assert r.stdout.startswith("dlqfs ")
    with open(installed["man"], "rb") as f, open(MAN_SOURCE, "rb") as g:
        assert f.read() == g.read()
    assert os.path.isfile(installed["unit"])
    # nothing else, nowhere else
    files = sorted(os.path.relpath(os.path.join(d, n), prefix)
                   for d, _, names in os.walk(prefix) for n in names)
    assert files == sorted(os.path.relpath(installed[k], prefix)
                           for k in ("bin", "man", "unit")), files


def test_installed_unit_runs_the_installed_binary(installed):
    unit = parse_unit(installed["unit"])
    start = unit["Service"]["ExecStart"]
    assert len(start) == 1
    assert shlex.split(start[0])[0] == installed["bin"]
    with open(installed["unit"]) as f:
        assert "@BINDIR@" not in f.read()


def test_destdir_install_of_the_build_under_test(tmp_path):
    """`meson install --destdir` of the build the other tests use: the same
    three files, below DESTDIR, at the configured prefix."""
    dest = str(tmp_path / "dest")
    _check([_tool("meson"), "install", "-C", BUILD_ROOT, "--no-rebuild",
            "--destdir", dest])
    lay = _layout(dest, BUILD_ROOT)
    prefix = lay["prefix"]
    assert lay["bin"].startswith(dest + prefix) and \
        lay["man"].startswith(dest + prefix)
    assert lay["man"] == os.path.join(dest + prefix, "share", "man", "man1",
                                      "dlqfs.1")
    with open(lay["bin"], "rb") as f, open(DLQFS, "rb") as g:
        assert f.read() == g.read()
    with open(lay["man"], "rb") as f, open(MAN_SOURCE, "rb") as g:
        assert f.read() == g.read()
    unit = parse_unit(lay["unit"])
    # the unit names the binary where it will be, not below DESTDIR
    assert shlex.split(unit["Service"]["ExecStart"][0])[0] == \
        os.path.join(prefix, "bin", "dlqfs")
    files = sorted(os.path.join(d, n) for d, _, names in os.walk(dest)
                   for n in names)
    assert files == sorted([lay["bin"], lay["man"], lay["unit"]])


# --------------------------------------------------------------------------
# man page


def test_man_page_renders_without_warnings(installed):
    env = dict(os.environ, MANPATH=installed["mandir"] + ":")
    for args in (["man", "--warnings", "-l", MAN_SOURCE],
                 ["man", "--warnings", "dlqfs"],  # found where installed
                 ["groff", "-ww", "-man", "-z", MAN_SOURCE],
                 ["groff", "-ww", "-man", "-Tutf8", "-z", MAN_SOURCE]):
        _tool(args[0])
        for lang in ("C.UTF-8", "C"):
            r = _run(args, env=dict(env, LC_ALL=lang))
            assert r.returncode == 0, (args, lang, r.stderr)
            assert r.stderr == "", (args, lang, r.stderr)
            if "-z" not in args:
                assert "dlqfs" in r.stdout and "SYNOPSIS" in r.stdout


def man_text():
    """The man page as text, one paragraph per line, no formatting."""
    r = _check([_tool("man"), "-l", MAN_SOURCE],
               env=dict(os.environ, LC_ALL="C", MANWIDTH="1000"))
    return re.sub(r".\x08", "", r.stdout)


def help_options():
    """The `-o name` options and the flags that `dlqfs --help` lists."""
    r = _check([DLQFS, "--help"])
    opts = set(re.findall(r"-o ([a-z_]+)(?=[=\s]|$)", r.stdout, re.M))
    flags = set(re.findall(r"(?<![\w-])(-[a-zA-Z]|--[a-z][a-z-]+)\b",
                           r.stdout))
    flags.discard("-o")
    return opts, flags


def test_man_page_documents_every_help_option():
    opts, flags = help_options()
    # the parse found what --help is known to list (else it found nothing)
    assert {"token_file", "url", "refresh", "label", "allow_delete",
            "dir_handles", "allow_other", "max_threads"} <= opts
    assert len(opts) >= 30, opts
    assert {"-f", "-d", "-s", "-h", "--help", "-V", "--version"} <= flags
    text = man_text()
    missing = [o for o in sorted(opts)
               if not re.search(r"(?<![\w-])-o\s+%s\b" % o, text)]
    assert not missing, "options of --help not in dlqfs(1): %s" % missing
    missing = [f for f in sorted(flags)
               if not re.search(r"(?<![\w-])%s\b" % re.escape(f), text)]
    assert not missing, "flags of --help not in dlqfs(1): %s" % missing


def test_man_page_sections_and_environment():
    text = man_text()
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "THE TREE",
                    "OPTIONS", "ENVIRONMENT", "FILES", "EXIT STATUS",
                    "MOUNTING AT LOGIN", "FSTAB", "EXAMPLES", "SEE ALSO"):
        assert re.search(r"^%s$" % section, text, re.M), section
    env = text.split("\nENVIRONMENT\n")[1].split("\nFILES\n")[0]
    for var in ("QSTASH_TOKEN", "QSTASH_URL", "QSTASH_REGION",
                "EU_CENTRAL_1_QSTASH_URL", "EU_CENTRAL_1_QSTASH_TOKEN",
                "US_EAST_1_QSTASH_URL", "US_EAST_1_QSTASH_TOKEN"):
        assert var in env, var
    files = text.split("\nFILES\n")[1].split("\nSIGNALS\n")[0]
    for name in (".dlqfs/status", ".dlqfs/refresh", ".dlqfs/actions.log",
                 ".dlqfs/delete", ".dlqfs/resume", ".dlqfs/restart",
                 ".dlqfs/callback", UNIT):
        assert name in files, name
    for view in ("runs/", "by-label/", "by-url/", "by-run/", "by-state/",
                 "by-status/", "by-date/", "by-flow-control-key/",
                 "by-caller-ip/"):
        assert view in text, view
    assert "fuse.dlqfs" in text.split("\nFSTAB\n")[1]


# --------------------------------------------------------------------------
# systemd user unit


def parse_unit(path):
    """{section: {key: [values]}} of a unit file (no line continuations
    are used in ours)."""
    out = {}
    section = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = out.setdefault(line.strip("[]"), {})
                continue
            k, _, v = line.partition("=")
            section.setdefault(k, []).append(v)
    return out


def test_unit_passes_systemd_analyze_verify(installed, tmp_path):
    analyze = _tool("systemd-analyze")
    _tool("man")  # verify looks up Documentation=man:dlqfs(1)
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(run),
               MANPATH=installed["mandir"] + ":")
    r = _run([analyze, "verify", "--user", installed["unit"]], env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == "" and r.stderr == "", r.stdout + r.stderr


def test_unit_keeps_the_token_out_of_unit_and_environment(installed):
    unit = parse_unit(installed["unit"])
    svc = unit["Service"]
    text = open(installed["unit"]).read()
    assert "QSTASH_TOKEN" not in text
    assert svc["LoadCredential"] == ["token:%E/dlqfs/%i.token"]
    start = shlex.split(svc["ExecStart"][0])
    assert "-f" in start and "-o" in start
    assert start[start.index("-o") + 1] == "token_file=%d/token"
    assert svc["Type"] == ["exec"]
    assert unit["Install"]["WantedBy"] == ["default.target"]
    assert unit["Unit"]["Documentation"] == ["man:dlqfs(1)"]


class UnitRunner(object):
    """Runs dlqfs@NAME.service command by command, as the systemd user
    manager would: specifiers, Environment= then EnvironmentFile=, the
    credential copied to a private directory with mode 0400, $VAR and
    ${VAR} in command lines, and a minimal environment."""

    def __init__(self, unit_path, home, name):
        self.unit = parse_unit(unit_path)
        self.svc = self.unit["Service"]
        self.home = home
        self.name = name
        self.config = os.path.join(home, ".config")
        self.creds = os.path.join(home, "run", "credentials",
                                  "dlqfs@%s.service" % name)
        self.proc = None

    def spec(self, s):
        table = {"h": self.home, "i": self.name, "I": self.name,
                 "E": self.config, "d": self.creds, "%": "%"}

        def sub(m):
            assert m.group(1) in table, "specifier %%%s" % m.group(1)
            return table[m.group(1)]

        return re.sub(r"%(.)", sub, s)

    def environment(self):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "HOME": self.home, "CREDENTIALS_DIRECTORY": self.creds}
        for line in self.svc.get("Environment", []):
            for word in shlex.split(self.spec(line)):
                k, _, v = word.partition("=")
                env[k] = v
        for path in self.svc.get("EnvironmentFile", []):
            optional = path.startswith("-")
            path = self.spec(path.lstrip("-"))
            if optional and not os.path.exists(path):
                continue
            with open(path) as f:  # later settings override Environment=
                for line in f:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        k, _, v = line.partition("=")
                        env[k] = " ".join(shlex.split(v))
        return env

    def load_credentials(self):
        os.makedirs(self.creds, mode=0o700)
        for c in self.svc["LoadCredential"]:
            cid, _, path = self.spec(c).partition(":")
            dst = os.path.join(self.creds, cid)
            with open(path, "rb") as f:
                data = f.read()
            fd = os.open(dst, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.write(fd, data)
            os.fchmod(fd, 0o400)  # as systemd's write_credential()
            os.close(fd)

    def argv(self, line, env):
        """(argv, failure ignored) of one Exec*= line."""
        ignore = line.startswith("-")
        words = []
        for w in shlex.split(self.spec(line.lstrip("-"))):
            m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
            if m:  # $VAR alone: split into words, none when empty
                words += env.get(m.group(1), "").split()
            else:
                words.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                                    lambda m: env.get(m.group(1), ""), w))
        if not os.path.isabs(words[0]):
            words[0] = shutil.which(words[0])
            assert words[0], line
        return words, ignore

    def run_all(self, key, env):
        for line in self.svc.get(key, []):
            args, ignore = self.argv(line, env)
            r = _run(args, env=env, timeout=60)
            assert ignore or r.returncode == 0, (args, r.stderr)

    def start(self, stderr):
        env = self.environment()
        self.run_all("ExecStartPre", env)
        args, _ = self.argv(self.svc["ExecStart"][0], env)
        self.proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                     stdout=stderr, stderr=stderr)
        return args, env

    def stop_post(self):
        self.run_all("ExecStopPost", self.environment())


def _wait_mounted(path, proc, log, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, "dlqfs exited %s:\n%s" % (
            proc.returncode, open(log).read())
        if is_mounted(path):
            try:
                with open(os.path.join(path, ".dlqfs", "status")) as f:
                    if json.load(f)["state"] == "ready":
                        return
            except (OSError, ValueError):
                pass
        time.sleep(0.05)
    raise AssertionError("not mounted within %ss:\n%s"
                         % (timeout, open(log).read()))


def test_unit_mounts_with_credential_and_unmounts_on_sigterm(
        installed, fake_factory, tmp_path):
    """The unit as systemd runs it: ~/.config/dlqfs/dlq.token (0600) and
    dlq.conf; the token reaches dlqfs only as a 0400 credential file; the
    mount point is created; SIGTERM (systemctl stop) unmounts and exits 0,
    also when a process sits in the mount (where the fusermount3 -u of an
    ExecStop= would fail); after kill -9 (a crash) ExecStopPost clears the dead mount, so that
    the restart mounts again."""
    fake = fake_factory(runs=40)
    home = str(tmp_path / "home")
    os.makedirs(os.path.join(home, ".config", "dlqfs"))
    token = os.path.join(home, ".config", "dlqfs", "dlq.token")
    fd = os.open(token, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, (TOKEN + "\n").encode())
    os.close(fd)
    with open(os.path.join(home, ".config", "dlqfs", "dlq.conf"), "w") as f:
        f.write("QSTASH_URL=%s\nDLQFS_OPTIONS=-o refresh=3600\n"
                % fake.base_url)
    u = UnitRunner(installed["unit"], home, "dlq")
    mp = os.path.join(home, "dlq")
    log = str(tmp_path / "dlqfs.log")
    assert not os.path.exists(mp)
    u.load_credentials()
    cred = os.stat(os.path.join(u.creds, "token"))
    assert stat.S_IMODE(cred.st_mode) == 0o400
    try:
        with open(log, "w") as err:
            args, env = u.start(err)
        assert args[0] == installed["bin"] and "-f" in args
        assert "token_file=%s/token" % u.creds in args
        assert args[-1] == mp
        assert TOKEN not in " ".join(args)
        assert not any(TOKEN in v for v in env.values())
        _wait_mounted(mp, u.proc, log)
        assert os.stat(os.path.join(mp, "runs")).st_size == 40
        assert len(os.listdir(os.path.join(mp, "runs"))) == 40
        assert any(e["path"] == fakeapi.LIST_PATH for e in fake.requests())

        # systemctl stop: SIGTERM to the service; dlqfs unmounts and exits,
        # even with a shell sitting in the mount (the unmount is lazy)
        busy = subprocess.Popen(["sleep", "60"], cwd=os.path.join(mp, "runs"))
        try:
            r = _run(["fusermount3", "-u", mp])
            assert r.returncode != 0 and is_mounted(mp), \
                "a plain unmount of a busy mount should fail"
            u.proc.send_signal(signal.SIGTERM)
            assert u.proc.wait(timeout=60) == 0, open(log).read()
            assert not is_mounted(mp)
        finally:
            busy.kill()
            busy.wait()
        u.stop_post()  # nothing left to clear: its failure is ignored
        assert not is_mounted(mp)

        # a crash leaves a dead mount; ExecStopPost clears it and the
        # restart (Restart=on-failure) mounts again
        with open(log, "a") as err:
            u.start(err)
        _wait_mounted(mp, u.proc, log)
        u.proc.kill()
        u.proc.wait(timeout=60)
        assert is_mounted(mp)
        with pytest.raises(OSError):
            os.stat(os.path.join(mp, "runs"))
        u.stop_post()
        assert not is_mounted(mp)
        with open(log, "a") as err:
            u.start(err)
        _wait_mounted(mp, u.proc, log)
        assert len(os.listdir(os.path.join(mp, "runs"))) == 40
        u.proc.send_signal(signal.SIGTERM)
        assert u.proc.wait(timeout=60) == 0, open(log).read()
        assert not is_mounted(mp)
    finally:
        if u.proc is not None and u.proc.poll() is None:
            u.proc.kill()
            u.proc.wait()
        unmount(mp)
