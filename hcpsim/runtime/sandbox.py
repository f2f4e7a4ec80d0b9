"""Per-container sandboxes: make a pod's absolute paths work for local processes without root.

A container's view of the filesystem is the host's, plus:
  * each volume `Mount` bind-mounted onto its container path,
  * mount targets that do not exist on the host (e.g. `/etc/etcd/tls/client`) created inside an
    overlay of their nearest existing ancestor (e.g. `/etc`), whose upper/work dirs live in the sandbox,
  * extra binaries (`{"/usr/bin/etcdctl": "/real/etcdctl"}`) shown as symlinks in the upper dir of an
    overlay of their directory.

All of that happens in a private user+mount namespace (`unshare -Urm`, util-linux), set up by a small
generated sh script that then `exec`s the command: the host filesystem is never modified (upper dirs
are pre-populated from Python inside the sandbox before any mount).

Fallback ("rewrite" mode, used when the probe finds user namespaces or overlayfs refused): no mounts.
Arguments that mention a mount path (`/var/lib/data/x`, `--cacert=/etc/etcd/tls/ca.crt`, or a word
inside `sh -c "cat /var/lib/data/x"`) are rewritten to the host directory, extra binaries are found
through a sandbox `bin/` dir on PATH (by basename, or by their absolute path as argv[0]), and cwd is
the sandbox. Limits: paths built at run time (`cd /var; cat lib/data/x`, config files naming mount
paths) are not translated.

Mount paths with no existing ancestor other than `/` (e.g. `/data` on a host without it) cannot be
overlaid (overlaying `/` would hide /proc, /dev, ...): they get the rewrite treatment even in
namespace mode.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

Mode = Literal["namespace", "rewrite"]

# The PATH of most images; a container's own `PATH` env var wins.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Mount:
    """A volume mount: `host_path` (resolved by the caller) appears at `container_path`."""

    container_path: str
    host_path: Path
    read_only: bool = False


@dataclass
class ProcessSpec:
    """What to spawn for a container process: already wrapped argv, full env, cwd.

    Spawn it in a new session (`start_new_session=True`) so the whole group can be killed.
    `on_start(pid)` / `on_exit(pid)` let the runtime track exec'd processes so `stop_pod` also
    kills them; call them if set.
    """

    argv: list[str]
    env: dict[str, str]
    cwd: str
    on_start: Callable[[int], None] | None = field(default=None, repr=False, compare=False)
    on_exit: Callable[[int], None] | None = field(default=None, repr=False, compare=False)


# Runs inside the namespace (or directly in rewrite mode): mounts, cd, command check, exec.
# Usage: sh setup.sh CWD ARGV...  -- positional args avoid any quoting of the user's command.
_CHECK_AND_EXEC = r'''
cwd=$1; shift
cd "$cwd" 2>/dev/null || cd /
cmd=$1
# Match what runc prints when the command cannot be started; exit 127 (not found) / 126 (not
# executable) so clients see a NonZeroExitCode status instead of a broken stream.
case "$cmd" in
  */*)
    if [ ! -e "$cmd" ]; then
      echo "OCI runtime exec failed: exec failed: unable to start container process: exec: \"$cmd\": stat $cmd: no such file or directory: unknown" >&2; exit 127
    fi
    if [ -d "$cmd" ] || [ ! -x "$cmd" ]; then
      echo "OCI runtime exec failed: exec failed: unable to start container process: exec: \"$cmd\": permission denied: unknown" >&2; exit 126
    fi ;;
  *)
    if ! command -v "$cmd" >/dev/null 2>&1; then
      echo "OCI runtime exec failed: exec failed: unable to start container process: exec: \"$cmd\": executable file not found in \$PATH: unknown" >&2; exit 127
    fi ;;
esac
exec "$@"
'''


_probe_lock = threading.Lock()
_probe_result: Mode | None = None


def probe_namespace_support(scratch: Path) -> Mode:
    """Detect once per process whether `unshare -Urm` + overlayfs + bind mounts work here."""
    global _probe_result
    with _probe_lock:
        if _probe_result is not None:
            return _probe_result
        _probe_result = "rewrite"
        if shutil.which("unshare") and shutil.which("mount"):
            scratch.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=scratch) as tmp:
                t = Path(tmp)
                for d in ("lower", "upper", "work", "vol"):
                    (t / d).mkdir()
                (t / "vol" / "ok").write_text("ok")
                (t / "upper" / "sub").mkdir()
                script = (
                    f"mount -t overlay overlay -o lowerdir={t}/lower,upperdir={t}/upper,workdir={t}/work {t}/lower"
                    f" && mount --bind {t}/vol {t}/lower/sub && cat {t}/lower/sub/ok"
                )
                try:
                    r = subprocess.run(
                        ["unshare", "-Urm", "--", "/bin/sh", "-c", script],
                        capture_output=True, timeout=10,
                    )
                    if r.returncode == 0 and r.stdout == b"ok":
                        _probe_result = "namespace"
                except (OSError, subprocess.SubprocessError):
                    pass
        return _probe_result


def _norm(p: str) -> str:
    return os.path.normpath("/" + p.lstrip("/"))


def _under(path: str, prefix: str) -> bool:
    return path == prefix or prefix == "/" or path.startswith(prefix + "/")


def _existing_ancestor(path: str) -> str:
    p = path
    while not os.path.isdir(p):
        p = os.path.dirname(p)
    return p


class ContainerSandbox:
    """The prepared view of one container; built once per container start, reused by every exec."""

    def __init__(self, root: Path, mounts: list[Mount], binaries: dict[str, str], mode: Mode,
                 env: dict[str, str], working_dir: str | None, hostname: str) -> None:
        self.root = root
        self.mode = mode
        self.mounts = sorted(mounts, key=lambda m: _norm(m.container_path).count("/"))
        self.binaries = {_norm(k): v for k, v in binaries.items()}
        self.working_dir = working_dir
        self.env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": "/root", **env}
        # Mounts that get argv rewriting (all of them in rewrite mode).
        self.rewrites: list[tuple[str, str]] = []
        root.mkdir(parents=True, exist_ok=True)
        self.script = root / "setup.sh"
        lines = ["set -e"] + (self._prepare_namespace() if mode == "namespace" else self._prepare_rewrite())
        lines.append("set +e")
        self.script.write_text("\n".join(lines) + "\n" + _CHECK_AND_EXEC)
        # Longest prefix first so nested mounts rewrite to the most specific host dir.
        self.rewrites.sort(key=lambda r: len(r[0]), reverse=True)
        self._rewrite_re = (
            re.compile(r"(?<![\w.\-/])(" + "|".join(re.escape(c) for c, _ in self.rewrites) + r")(?=/|$|[^\w.\-])")
            if self.rewrites else None
        )

    # --- preparation -------------------------------------------------------------------------

    def _prepare_namespace(self) -> list[str]:
        binds: list[tuple[str, str, bool]] = []
        bind_targets: list[tuple[str, Path]] = []
        todo: list[tuple[str, str, str]] = []   # (real target path, kind: dir|file|link, link target)

        def real_target(target: str) -> str | None:
            # Resolve symlinks (/bin -> /usr/bin) in the part that exists; None if only / exists.
            anc = _existing_ancestor(os.path.dirname(target))
            real_anc = os.path.realpath(anc)
            if real_anc == "/":
                return None
            return os.path.join(real_anc, os.path.relpath(target, anc))

        for m in self.mounts:
            target = _norm(m.container_path)
            host = Path(m.host_path)
            is_file = host.is_file()
            parent_bind = next((b for b in reversed(bind_targets) if _under(target, b[0]) and b[0] != target), None)
            if parent_bind is not None:
                # Nested mount point inside another volume: runc creates it in that volume too.
                inner = parent_bind[1] / os.path.relpath(target, parent_bind[0])
                if is_file:
                    inner.parent.mkdir(parents=True, exist_ok=True)
                    inner.touch(exist_ok=True)
                else:
                    inner.mkdir(parents=True, exist_ok=True)
            elif not (os.path.isfile(target) if is_file else os.path.isdir(target)):
                rt = real_target(target)
                if rt is None:
                    self.rewrites.append((target, str(host)))
                    continue
                todo.append((rt, "file" if is_file else "dir", ""))
            binds.append((target, str(host), m.read_only))
            bind_targets.append((target, host))

        for path, real in self.binaries.items():
            rt = real_target(path)
            if rt is not None:
                todo.append((rt, "link", real))

        # One overlay per widest anchor: an anchor inside another one is served by the outer one.
        wanted = {os.path.dirname(rt) if os.path.isdir(os.path.dirname(rt)) else
                  os.path.realpath(_existing_ancestor(os.path.dirname(rt))) for rt, _, _ in todo}
        anchors = sorted(a for a in wanted if not any(o != a and _under(a, o) for o in wanted))
        uppers: dict[str, Path] = {}
        for i, anc in enumerate(anchors):
            base = self.root / "ovl" / str(i)
            (base / "upper").mkdir(parents=True, exist_ok=True)
            (base / "work").mkdir(parents=True, exist_ok=True)
            uppers[anc] = base / "upper"
        for rt, kind, real in todo:
            anc = next(a for a in anchors if _under(rt, a))
            self._populate(uppers[anc] / os.path.relpath(rt, anc), kind, real)

        lines: list[str] = []
        for anc in sorted(anchors, key=lambda a: a.count("/")):
            up = uppers[anc]
            opts = f"lowerdir={anc},upperdir={up},workdir={up.parent / 'work'}"
            lines.append(f"mount -t overlay overlay -o {shlex.quote(opts)} {shlex.quote(anc)}")
        for target, host, ro in binds:
            lines.append(f"mount --bind {shlex.quote(host)} {shlex.quote(target)}")
            if ro:
                # Locked flags (nosuid/nodev) of the source must be kept in a user namespace.
                q = shlex.quote(target)
                lines.append(
                    f"mount -o remount,bind,ro {q} 2>/dev/null || mount -o remount,bind,ro,nosuid,nodev {q} 2>/dev/null"
                    f" || mount -o remount,bind,ro,nosuid,nodev,noexec {q}"
                )
        return lines

    @staticmethod
    def _populate(up: Path, kind: str, real: str) -> None:
        up.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dir":
            up.mkdir(parents=True, exist_ok=True)
        elif kind == "file":
            up.touch(exist_ok=True)
        else:
            if up.is_symlink() or up.exists():
                up.unlink()
            up.symlink_to(real)

    def _prepare_rewrite(self) -> list[str]:
        for m in self.mounts:
            self.rewrites.append((_norm(m.container_path), str(m.host_path)))
        bindir = self.root / "bin"
        bindir.mkdir(exist_ok=True)
        for path, real in self.binaries.items():
            link = bindir / os.path.basename(path)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(real)
        self.env["PATH"] = f"{bindir}:{self.env['PATH']}"
        (self.root / "rootfs").mkdir(exist_ok=True)
        return []

    # --- use ---------------------------------------------------------------------------------

    def rewrite_arg(self, arg: str) -> str:
        if self._rewrite_re is None:
            return arg
        table = dict(self.rewrites)
        return self._rewrite_re.sub(lambda mo: table[mo.group(1)], arg)

    def process_spec(self, argv: list[str], *, pid_namespace: bool = False, env: dict[str, str] | None = None) -> ProcessSpec:
        """The wrapped command line for `argv` run in this container."""
        full_env = {**self.env, **(env or {})}
        args = list(argv)
        if self.mode == "rewrite" and args and args[0] in self.binaries:
            args[0] = self.binaries[args[0]]
        args = [self.rewrite_arg(a) for a in args]
        if self.mode == "namespace":
            cwd_in = self.working_dir or "/"
            prefix = ["unshare", "-Urm"]
            if pid_namespace:
                # A private PID namespace: when its init dies the kernel kills every process in it,
                # so stopping a container can leave nothing behind.
                prefix = ["unshare", "-Urmpf", "--kill-child", "--mount-proc"]
            wrapped = [*prefix, "--", "/bin/sh", str(self.script), cwd_in, *args]
            host_cwd = "/"
        else:
            cwd_in = self.rewrite_arg(self.working_dir) if self.working_dir else str(self.root / "rootfs")
            wrapped = ["/bin/sh", str(self.script), cwd_in, *args]
            host_cwd = str(self.root)
        return ProcessSpec(argv=wrapped, env=full_env, cwd=host_cwd)
