"""Boots a throwaway Linux VM (qemu, no KVM needed) to test what the build machine's own
kernel cannot: kernel TLS, for one. The VM is Debian's cloud kernel with an initramfs made
here from host binaries (plus the shared libraries `ldd` names), extra files and kernel
modules; /init runs a shell script and powers off. Nothing is shared with the host but
the console: the script's output comes back as text, ending with its exit status.

Needs: qemu-system-x86_64 (Debian qemu-system-x86), a static busybox (busybox-static) and
an unpacked Debian kernel package under TUSC_VM_KERNEL_DIR (default /var/cache/tusc-vm,
which scripts/install-deps.sh test fills: boot/vmlinuz-* and lib/modules/*/ under root/).

    image = Image()
    image.add_binary("/usr/bin/curl")
    image.add_modules(["tls", "gcm"])
    status, out = image.run("curl --version", timeout=300)

Image.start() returns a Machine instead, whose console the caller reads line by line
and which it may kill at any moment; nbd_drive() attaches a disk served over NBD (for
instance nbd_disk.NbdDisk, a disk whose unflushed writes a power cut loses).
"""
import os
import queue
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

KERNEL_DIR = Path(os.environ.get("TUSC_VM_KERNEL_DIR", "/var/cache/tusc-vm"))
QEMU = "qemu-system-x86_64"
BUSYBOX = "/bin/busybox"
STATUS_MARK = "TUSC-VM-STATUS="
# In every VM: `wait_for SECONDS COMMAND...` runs COMMAND (quietly) until it succeeds,
# at most SECONDS long; exits 1 when it never did.
WAIT_FOR = b"""#!/bin/busybox sh
end=$(($(date +%s) + $1)); shift
until "$@" >/dev/null 2>&1; do
  [ "$(date +%s)" -lt "$end" ] || exit 1
  usleep 50000
done
"""


def kernel():
    """(vmlinuz, modules dir) of the unpacked kernel, or None."""
    root = KERNEL_DIR / "root"
    images = sorted(root.glob("boot/vmlinuz-*"))
    if not images:
        return None
    release = images[-1].name[len("vmlinuz-"):]
    mods = root / "lib" / "modules" / release
    return (images[-1], mods) if mods.is_dir() else None


def missing():
    """Why a VM cannot run here (a sentence), or None when it can."""
    if shutil.which(QEMU) is None:
        return "qemu-system-x86_64 is not installed (Debian qemu-system-x86)"
    if not os.path.exists(BUSYBOX):
        return "busybox is not installed (Debian busybox-static)"
    if subprocess.run(["ldd", BUSYBOX], capture_output=True).returncode == 0:
        return f"{BUSYBOX} is not static (install busybox-static)"
    if kernel() is None:
        return f"no kernel unpacked under {KERNEL_DIR} (scripts/install-deps.sh test)"
    return None


def _modinfo(path):
    """The .modinfo fields of a kernel module (name, depends, ...)."""
    data = Path(path).read_bytes()
    info = {}
    for field in data.split(b"\0"):
        for key in (b"name=", b"depends="):
            if field.startswith(key) and key.decode()[:-1] not in info:
                info[key.decode()[:-1]] = field[len(key):].decode(errors="replace")
    return info


def _ldd(path):
    """Shared libraries (and the loader) a dynamic binary needs, as host paths."""
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        return []  # static
    libs = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            i = parts.index("=>")
            if i + 1 < len(parts) and parts[i + 1].startswith("/"):
                libs.append(parts[i + 1])
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])
    return libs


class Image:
    """The files of an initramfs: path inside the VM -> bytes, mode (or a symlink)."""

    def __init__(self):
        self.files = {}   # vm path -> (bytes, mode)
        self.links = {}   # vm path -> target
        self.modules = []  # vm paths of .ko files, in load order
        self.add_file(BUSYBOX, "/bin/busybox", 0o755)
        self.add_bytes("/bin/wait_for", WAIT_FOR, 0o755)

    def add_file(self, src, dst=None, mode=None):
        src = Path(src)
        data = src.read_bytes()  # follows symlinks: the VM gets the file itself
        if mode is None:
            mode = stat.S_IMODE(src.stat().st_mode)
        self.files[dst or str(src)] = (data, mode)

    def add_bytes(self, dst, data, mode=0o644):
        self.files[dst] = (data if isinstance(data, bytes) else data.encode(), mode)

    def add_binary(self, path, dst=None):
        """A host executable and every library it loads, at their host paths."""
        path = str(Path(path).resolve()) if dst is None else path
        self.add_file(path, dst or path, 0o755)
        for lib in _ldd(path):
            if lib not in self.files:
                self.add_file(lib, lib, 0o755)
        return dst or path

    def add_python(self):
        """The host's python3 with its standard library (sources only, no tests or GUI)."""
        exe = Path(os.path.realpath("/usr/bin/python3"))  # Debian's, e.g. python3.11
        self.add_binary(exe, "/usr/bin/python3")
        stdlib = Path("/usr/lib") / exe.name
        skip = {"test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip",
                "pydoc_data", "__pycache__", "site-packages", "dist-packages"}
        for path in stdlib.rglob("*"):
            rel = path.relative_to(stdlib)
            if skip & set(rel.parts) or rel.parts[0].startswith("config-") or not path.is_file():
                continue
            if path.suffix == ".py":
                self.add_file(path, str(path), 0o644)
            elif path.suffix == ".so":
                self.add_binary(path, str(path))
        return "/usr/bin/python3"

    def add_modules(self, names):
        """Kernel modules by name (tls, gcm, ...), each after the modules it depends on."""
        _, mods = kernel()
        index = {}
        for ko in mods.rglob("*.ko"):
            index[ko.stem.replace("-", "_")] = ko
        seen = set(p.rsplit("/", 1)[-1][:-3].replace("-", "_") for p in self.modules)

        def load(name):
            name = name.replace("-", "_")
            if name in seen:
                return
            if name not in index:
                raise RuntimeError(f"kernel module {name} not found under {mods}")
            seen.add(name)
            for dep in filter(None, _modinfo(index[name]).get("depends", "").split(",")):
                load(dep)
            dst = f"/lib/modules/{index[name].name}"
            self.add_file(index[name], dst, 0o644)
            self.modules.append(dst)

        for n in names:
            load(n)

    def _cpio(self, init):
        """A newc cpio archive (what the kernel unpacks) of everything plus /init."""
        out = bytearray()
        ino = [1]

        def entry(name, mode, data=b""):
            name_b = name.lstrip("/").encode() + b"\0"
            fields = [ino[0], mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0]
            ino[0] += 1
            out.extend(b"070701" + b"".join(b"%08X" % f for f in fields))
            out.extend(name_b)
            out.extend(b"\0" * (-len(out) % 4))
            out.extend(data)
            out.extend(b"\0" * (-len(out) % 4))

        files = dict(self.files)
        files["/init"] = (init.encode(), 0o755)
        dirs = {"/proc", "/sys", "/dev", "/tmp", "/root", "/etc", "/run", "/var"}
        for path in list(files) + list(self.links):
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/" + "/".join(parts[:i]))
        for d in sorted(dirs, key=lambda p: p.count("/")):
            entry(d, stat.S_IFDIR | 0o755)
        for path, (data, mode) in sorted(files.items()):
            entry(path, stat.S_IFREG | mode, data)
        for path, target in sorted(self.links.items()):
            entry(path, stat.S_IFLNK | 0o777, target.encode())
        entry("TRAILER!!!", 0)
        return bytes(out)

    def run(self, script, timeout=600, memory_mb=1024, cpus=2, drives=()):
        """Boots the VM, runs `script` (busybox sh) as root with lo up and the modules
        loaded, and returns (exit status, console output). The status is None when the
        VM died or timed out before the script ended. `drives`: see start()."""
        with self.start(script, memory_mb=memory_mb, cpus=cpus, drives=drives) as machine:
            return machine.wait(timeout)

    def start(self, script, memory_mb=1024, cpus=2, drives=()):
        """Boots the VM running `script` and returns at once a Machine, to read the
        console line by line as it comes and to kill the VM (pull its plug) at any
        moment. `drives`: qemu -drive option strings (nbd_drive()), the guest's
        /dev/vda, /dev/vdb, ... in order (it needs the virtio_pci and virtio_blk
        modules)."""
        insmods = "\n".join(f"insmod {m} || echo 'insmod {m} failed'" for m in self.modules)
        init = f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
{insmods}
ifconfig lo 127.0.0.1 up
cd /tmp
sh /vm-script.sh </dev/null
echo "{STATUS_MARK}$?"
poweroff -f
"""
        self.add_bytes("/vm-script.sh", script, 0o755)
        vmlinuz, _ = kernel()
        tmp = tempfile.TemporaryDirectory(prefix="tusc-vm-")
        initrd = Path(tmp.name) / "initrd.cpio"
        initrd.write_bytes(self._cpio(init))
        cmd = [QEMU, "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", str(cpus),
               "-m", str(memory_mb), "-nographic", "-no-reboot", "-nodefaults",
               "-serial", "stdio", "-kernel", str(vmlinuz), "-initrd", str(initrd),
               "-append", "console=ttyS0 quiet panic=-1 loglevel=3"]
        for d in drives:
            cmd += ["-drive", d]
        return Machine(cmd, tmp)


def nbd_drive(socket_path, export="disk"):
    """A -drive for Image.start(): a virtio disk served by an NBD server on a unix
    socket, with a write cache the guest must flush (cache=writeback: qemu passes the
    guest's flushes on as NBD_CMD_FLUSH)."""
    if "," in str(socket_path):
        raise ValueError(f"a comma in {socket_path} would end qemu's option")
    return (f"file=nbd+unix:///{export}?socket={socket_path},format=raw,if=virtio,"
            f"cache=writeback")


class Machine:
    """A running VM: its console as lines (readline), kill(), wait(). A context manager
    that kills the VM, if still running, on exit."""

    def __init__(self, cmd, tmp):
        self._tmp = tmp
        self._lines = queue.Queue()
        self._text = []
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").replace("\r", "")
            self._text.append(line)
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # end of the console

    def readline(self, timeout):
        """The next console line (without its newline), None at the console's end;
        TimeoutError when none comes within `timeout` seconds."""
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no console line within {timeout} s") from None

    def kill(self):
        """Pulls the plug: SIGKILL, and waits for qemu to be gone."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join()

    def wait(self, timeout):
        """Waits for the VM to end (killing it after `timeout` s); (exit status of the
        script or None, whole console output)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self._text.append(f"\n[vm.py: no end after {timeout} s, killed]\n")
        self._reader.join()
        text = self.text()
        status = None
        for line in text.splitlines():
            if line.startswith(STATUS_MARK):
                status = int(line[len(STATUS_MARK):])
        return status, text

    def text(self):
        """The console output so far."""
        return "".join(self._text)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        self.proc.stdout.close()
        self._tmp.cleanup()
