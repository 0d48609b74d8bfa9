"""bee-nvidia's start() in busybox sh: which module set it loads, with a stand-in kernel.

The stand-in `modprobe` plays the kernel: it reads which flavor the service linked into
/lib/modules/<kver>/extra/nvidia (proprietary/ or open/), and loading `nvidia` binds the fake sysfs GPUs the
way NVIDIA's driver does: both flavors bind every GPU this branch supports at probe (the proprietary
nvidia.ko binds a Blackwell GPU too), no flavor binds a GPU this branch no longer supports, and with no GPU
bound the load fails ("No NVIDIA GPU found"). The stand-in `nvidia-smi` plays the first open of the GPUs:
under the proprietary set, each bound GPU that needs the open modules gets NVIDIA's two "requires use of the
NVIDIA open kernel modules" lines in the kernel log, and with no usable GPU it says "No devices found". The
stand-in `dmesg` prints that kernel log. Loaded modules appear in <sysfs>/module/ (nvidia's with the flavor
it was loaded from), and `modprobe -r` removes them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from scripts import buildconfig
from tests.openrc.openrc_harness import Sandbox, rendered_services, write_tree

KVER = "6.12.99-0-lts"
HOPPER = "0x2330"   # H100 80GB HBM3: kernelopen and gsp_proprietary_supported in supported-gpus.json
B200 = "0x2901"     # Blackwell: kernelopen only
VOLTA = "0x1db4"    # V100 PCIe: legacybranch 580.xx, not supported by 590
GPU_LIST = f"""# PCI device ids of NVIDIA 590's supported-gpus.json: needing the open modules, or unsupported
0x{B200[2:].upper()} open
0x2342 open
{VOLTA} legacy 580.xx
"""

# The stand-in kernel (see the module docstring); $SYS is the fake sysfs, $MODS /lib/modules/<kver>,
# $KLOG the kernel log, $FAIL "flavor:module ..." loads that fail, $OPEN_ONLY and $LEGACY device ids.
# The NVRM lines are those of NVIDIA's nvidia.ko (as quoted in NVIDIA/open-gpu-kernel-modules issues).
LEGACY_LINE = ("NVRM: The NVIDIA GPU installed in this system is supported through the NVIDIA 580.xx Legacy "
               "drivers.")
OPEN_LINES = ("NVRM: The NVIDIA GPU %s (PCI ID: 10de:%s)\\n"
              "NVRM: installed in this system requires use of the NVIDIA open kernel modules.\\n")
KERNEL = r"""
case "$1" in
	-q) exit 0 ;;
	-r)
		rm -rf "$SYS/module/$(echo "$2" | tr - _)"
		[ "$2" = nvidia ] && rm -f "$SYS"/bus/pci/devices/*/driver
		exit 0
		;;
esac
case "$(ls -l "$MODS/extra/nvidia/$1.ko")" in
	*/proprietary/*) flavor=proprietary ;;
	*/open/*) flavor=open ;;
	*) exit 1 ;;
esac
case " $FAIL " in *" $flavor:$1 "*) exit 1 ;; esac
if [ "$1" = nvidia ]; then
	bound=0
	for dev in "$SYS"/bus/pci/devices/*; do
		[ "$(cat "$dev/vendor")" = 0x10de ] || continue
		case "$(cat "$dev/class")" in 0x0300* | 0x0302*) ;; *) continue ;; esac
		id="$(cat "$dev/device")"
		case " $LEGACY " in *" $id "*)
			echo "LEGACY_LINE" >>"$KLOG"
			continue ;;
		esac
		ln -s "$SYS/bus/pci/drivers/nvidia" "$dev/driver"
		bound=$((bound + 1))
	done
	[ "$bound" -gt 0 ] || { echo "NVRM: No NVIDIA GPU found." >>"$KLOG"; exit 1; }
fi
mkdir -p "$SYS/module/$(echo "$1" | tr - _)"
[ "$1" != nvidia ] || echo "$flavor" >"$SYS/module/nvidia/flavor"
""".replace("LEGACY_LINE", LEGACY_LINE)
# The first open of the GPUs (see the module docstring).
NVIDIA_SMI = r"""
[ "$1" = -L ] || exit 2
flavor="$(cat "$SYS/module/nvidia/flavor" 2>/dev/null)" || { echo "NVIDIA-SMI has failed"; exit 9; }
n=0
for link in "$SYS"/bus/pci/devices/*/driver; do
	[ -e "$link" ] || continue
	dev="${link%/driver}"
	id="$(cat "$dev/device")"
	if [ "$flavor" = proprietary ]; then
		case " $OPEN_ONLY " in *" $id "*)
			printf 'OPEN_LINES' "${dev##*/}" "${id#0x}" >>"$KLOG"
			continue ;;
		esac
	fi
	echo "GPU $n: NVIDIA (UUID: GPU-$n)"
	n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "No devices found"; exit 6; }
""".replace("OPEN_LINES", OPEN_LINES)


@pytest.fixture(scope="module")
def cfg():
    return buildconfig.load_config()


@pytest.fixture(scope="module")
def service(cfg, tmp_path_factory):
    return rendered_services(cfg, tmp_path_factory.mktemp("init.d"))["bee-nvidia"]


@pytest.fixture
def box(tmp_path):
    return Sandbox(tmp_path)


def modules(cfg):
    return [*cfg.bee.nvidia.modules, *cfg.bee.nvidia.optional_modules]


def machine(box, tmp_path, cfg, gpus, *, flavors=("proprietary", "open"), gpu_list=GPU_LIST, fail="",
            smi=True):
    """A fake machine: an Intel VGA, an NVIDIA audio function, the NVIDIA GPUs {address: device id}, the
    shipped module sets (and nvidia-smi when `smi`), the stand-in kernel; returns the environment for
    start()."""
    sysfs = tmp_path / "sys"
    devices = {"0000:00:02.0": ("0x8086", "0x1234", "0x030000"),
               "0000:41:00.1": ("0x10de", "0x22e8", "0x040300")}
    devices.update({address: ("0x10de", device, "0x030200") for address, device in gpus.items()})
    for slot, (vendor, device, klass) in devices.items():
        write_tree(sysfs, {f"bus/pci/devices/{slot}/vendor": f"{vendor}\n",
                           f"bus/pci/devices/{slot}/device": f"{device}\n",
                           f"bus/pci/devices/{slot}/class": f"{klass}\n"})
    files = {
        "proc/devices": "Character devices:\n  1 mem\n195 nvidia\n511 nvidia-uvm\n\nBlock devices:\n"
                        "511 blkext\n",
        f"lib/modules/{KVER}/modules.dep": "", "dev": None, "sys/module/firmware_class/parameters/path": "",
        "sys/bus/pci/drivers/nvidia": None, "kernel.log": "",
    }
    for flavor in flavors:
        files.update({f"nvidia/{KVER}/{flavor}/{name}.ko": flavor for name in modules(cfg)})
    if gpu_list is not None:
        files[f"nvidia/{KVER}/{cfg.bee.nvidia.gpu_list}"] = gpu_list
    write_tree(tmp_path, files)
    box.stand_in("uname", f'echo "{KVER}"\n')
    box.stand_in("depmod")
    box.stand_in("mknod")
    box.stand_in("mountpoint", "exit 1\n")
    box.stand_in("mount")
    box.stand_in("modprobe", KERNEL)
    box.stand_in("dmesg", f'cat "{tmp_path}/kernel.log"\n')
    if smi:
        (tmp_path / "nvbin").mkdir()
        box.stand_in("nvidia-smi", NVIDIA_SMI).rename(tmp_path / "nvbin/nvidia-smi")
    return {
        "BEE_SYSFS": str(sysfs), "BEE_PROCFS": str(tmp_path / "proc"), "BEE_DEVDIR": str(tmp_path / "dev"),
        "BEE_MODULES_ROOT": str(tmp_path / "lib/modules"), "BEE_RUNDIR": str(tmp_path / "run/bee-nvidia"),
        "BEE_NVIDIA_MODULES": str(tmp_path / "nvidia"), "BEE_NVIDIA_BIN": str(tmp_path / "nvbin"),
        "BEE_FIRMWARE_DIR": "/fw", "SYS": str(sysfs), "MODS": str(tmp_path / f"lib/modules/{KVER}"),
        "KLOG": str(tmp_path / "kernel.log"), "FAIL": fail, "OPEN_ONLY": f"{B200} 0x2342", "LEGACY": VOLTA,
        "BEE_NVIDIA_LOG": str(tmp_path / "log/bee-nvidia.log"),
    }


def start(box, service, env):
    result = box.run_function(service, "start", env)
    assert result.returncode == 0, (result.stderr, box.openrc())
    lines = box.openrc()
    assert lines[0] == "ebegin Loading the NVIDIA driver" and lines[-1] == "eend 0", lines
    assert len(lines) == 3, f"one outcome line expected: {lines}"
    return lines[1]


def linked_flavor(tmp_path, cfg):
    """The flavor each link in extra/nvidia points to (one flavor expected)."""
    dest = tmp_path / f"lib/modules/{KVER}/extra/nvidia"
    targets = {link.name: link.resolve() for link in dest.iterdir()}
    assert sorted(targets) == sorted(f"{name}.ko" for name in modules(cfg))
    flavors = {target.parent.name for target in targets.values()}
    assert len(flavors) == 1, targets
    return flavors.pop()


def loads(cfg):
    return [f"modprobe {m}" for m in modules(cfg)]


def unloads(cfg):
    return [f"modprobe -r {m}" for m in reversed(modules(cfg))]


def bound(tmp_path):
    return sorted(p.parent.name for p in (tmp_path / "sys/bus/pci/devices").glob("*/driver"))


# --- the choice ------------------------------------------------------------------------------------------

def test_no_nvidia_gpu_loads_nothing(box, service, tmp_path, cfg):
    env = machine(box, tmp_path, cfg, {})
    assert start(box, service, env) == "einfo no NVIDIA GPU in this machine: nothing to load"
    assert box.calls("modprobe") == box.calls("depmod") == box.calls("mount") == []


def test_hopper_only_loads_the_proprietary_modules(box, service, tmp_path, cfg):
    env = machine(box, tmp_path, cfg, {"0000:41:00.0": HOPPER, "0000:42:00.0": HOPPER})
    line = start(box, service, env)
    assert line == "einfo the proprietary NVIDIA modules loaded: 2 of 2 NVIDIA GPU(s) have a driver"
    assert linked_flavor(tmp_path, cfg) == "proprietary"
    assert box.calls("depmod") == [f"depmod -a {KVER}"]
    assert box.calls("modprobe") == loads(cfg)
    assert bound(tmp_path) == ["0000:41:00.0", "0000:42:00.0"]
    assert (tmp_path / "sys/module/firmware_class/parameters/path").read_text() == "/fw"


def test_a_b200_in_the_machine_loads_the_open_modules_at_once(box, service, tmp_path, cfg):
    env = machine(box, tmp_path, cfg, {"0000:41:00.0": HOPPER, "0000:c1:00.0": B200})
    line = start(box, service, env)
    assert line == ("einfo the open NVIDIA modules loaded (0000:c1:00.0 (0x2901) needs them): "
                    "2 of 2 NVIDIA GPU(s) have a driver")
    assert linked_flavor(tmp_path, cfg) == "open"
    assert box.calls("modprobe") == loads(cfg)   # the proprietary set was never tried
    assert bound(tmp_path) == ["0000:41:00.0", "0000:c1:00.0"]


def test_a_failing_proprietary_load_falls_back_to_the_open_modules(box, service, tmp_path, cfg):
    env = machine(box, tmp_path, cfg, {"0000:c1:00.0": HOPPER}, fail="proprietary:nvidia")
    line = start(box, service, env)
    assert line == ("einfo the open NVIDIA modules loaded (the proprietary ones did not load: modprobe "
                    "nvidia failed): 1 of 1 NVIDIA GPU(s) have a driver")
    assert linked_flavor(tmp_path, cfg) == "open"
    assert box.calls("modprobe") == ["modprobe nvidia", *loads(cfg)]   # nothing was loaded, nothing unloaded
    assert box.calls("depmod") == [f"depmod -a {KVER}"] * 2


def test_a_gpu_refused_at_first_open_swaps_the_proprietary_set_for_the_open_one(box, service, tmp_path, cfg):
    # A B200 the shipped list does not name (a newer board): NVIDIA's proprietary nvidia.ko binds it at
    # probe and refuses it only when it is first opened ("requires use of the NVIDIA open kernel modules").
    env = machine(box, tmp_path, cfg, {"0000:41:00.0": HOPPER, "0000:c1:00.0": B200}, gpu_list=None)
    line = start(box, service, env)
    assert line == ("einfo the open NVIDIA modules loaded (the kernel says 0000:c1:00.0 requires the open "
                    "modules): 2 of 2 NVIDIA GPU(s) have a driver")
    assert box.calls("modprobe") == [*loads(cfg), *unloads(cfg), *loads(cfg)]
    assert box.calls("nvidia-smi") == ["nvidia-smi -L"]   # the GPUs were opened once, under proprietary
    assert linked_flavor(tmp_path, cfg) == "open"
    assert bound(tmp_path) == ["0000:41:00.0", "0000:c1:00.0"]


def test_a_hung_nvidia_smi_is_killed_and_the_boot_goes_on(box, service, tmp_path, cfg):
    """A GPU off the bus hangs `nvidia-smi -L` (TERM ignored, D state): after the bound it gets KILL and the
    service goes on without waiting; what it printed is in the log, not on the console."""
    env = machine(box, tmp_path, cfg, {"0000:41:00.0": HOPPER})
    smi = tmp_path / "nvbin/nvidia-smi"
    smi.write_text(f"#!/bin/sh\ntrap '' TERM\necho \"$$\" >{tmp_path}/smi.pid\necho 'GPU 0: probing'\n"
                   "exec sleep 20\n")
    env["BEE_OPEN_TIMEOUT"] = "1"
    started = time.monotonic()
    result = box.run_function(service, "start", env)
    assert time.monotonic() - started < 8
    assert result.returncode == 0 and result.stdout == result.stderr == ""
    assert box.openrc()[1] == ("einfo the proprietary NVIDIA modules loaded: 1 of 1 NVIDIA GPU(s) have a "
                               "driver")
    log = (tmp_path / "log/bee-nvidia.log").read_text()
    assert log.startswith("GPU 0: probing\n")
    assert f"bee-nvidia: {smi} -L still running after 1 s: killed, not waited for\n" in log
    pid = int((tmp_path / "smi.pid").read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower() \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    status = Path(f"/proc/{pid}/status")
    assert not status.exists() or "zombie" in status.read_text().lower()  # KILL ended it


def test_opening_the_gpus_prints_to_the_log_only(box, service, tmp_path, cfg):
    env = machine(box, tmp_path, cfg, {"0000:41:00.0": HOPPER})
    result = box.run_function(service, "start", env)
    assert result.returncode == 0 and result.stdout == ""
    assert "NVIDIA" not in result.stderr
    assert "GPU" in (tmp_path / "log/bee-nvidia.log").read_text()


def test_an_unsupported_gpu_is_no_reason_to_switch(box, service, tmp_path, cfg):
    env = machine(box, tmp_path, cfg, {"0000:41:00.0": HOPPER, "0000:42:00.0": VOLTA})
    line = start(box, service, env)
    assert line == "ewarn the proprietary NVIDIA modules loaded: 1 of 2 NVIDIA GPU(s) have a driver"
    assert box.calls("modprobe") == loads(cfg)
    assert bound(tmp_path) == ["0000:41:00.0"]


def test_when_open_fails_after_a_gpu_was_left_the_proprietary_set_comes_back(box, service, tmp_path, cfg):
    env = machine(box, tmp_path, cfg, {"0000:41:00.0": HOPPER, "0000:c1:00.0": B200}, gpu_list=None,
                  fail="open:nvidia-uvm")
    line = start(box, service, env)
    assert line == ("ewarn the proprietary NVIDIA modules loaded (the kernel says 0000:c1:00.0 requires the "
                    "open modules, and the open ones did not load: modprobe nvidia-uvm failed): 2 of 2 "
                    "NVIDIA GPU(s) have a driver")
    assert linked_flavor(tmp_path, cfg) == "proprietary"
    assert bound(tmp_path) == ["0000:41:00.0", "0000:c1:00.0"]


def test_only_legacy_gpus_load_nothing(box, service, tmp_path, cfg):
    env = machine(box, tmp_path, cfg, {"0000:42:00.0": VOLTA, "0000:43:00.0": VOLTA})
    line = start(box, service, env)
    assert line == ("ewarn no NVIDIA modules loaded: the shipped GPU list marks every NVIDIA GPU here "
                    "legacy, not supported by this driver branch: 0000:42:00.0 (0x1db4): 580.xx, "
                    "0000:43:00.0 (0x1db4): 580.xx")
    assert box.calls("modprobe") == box.calls("depmod") == []


def test_an_open_only_gpu_on_a_proprietary_iso_says_the_open_set_is_missing(box, service, tmp_path, cfg):
    env = machine(box, tmp_path, cfg, {"0000:41:00.0": HOPPER, "0000:c1:00.0": B200},
                  flavors=("proprietary",))
    line = start(box, service, env)
    assert line == ("ewarn the proprietary NVIDIA modules loaded (0000:c1:00.0 (0x2901) needs the open "
                    "modules, which this ISO lacks (built with bee.nvidia.flavor: proprietary)): 2 of 2 "
                    "NVIDIA GPU(s) have a driver")
    assert box.calls("modprobe") == loads(cfg)


def test_a_failed_unload_names_what_is_still_loaded(box, service, tmp_path, cfg):
    env = machine(box, tmp_path, cfg, {"0000:c1:00.0": B200}, gpu_list=None)
    box.stand_in("modprobe", 'case "$1 $2" in "-r nvidia-modeset") echo busy >&2; exit 1 ;; esac\n' + KERNEL)
    line = start(box, service, env)
    assert line == ("eerror NVIDIA modules left loaded: nvidia, nvidia-modeset (proprietary, open tried, "
                    "last: the proprietary modules could not be unloaded; the kernel says 0000:c1:00.0 "
                    "requires the open modules; see dmesg)")


def test_only_the_open_set_shipped(box, service, tmp_path, cfg):
    env = machine(box, tmp_path, cfg, {"0000:41:00.0": HOPPER}, flavors=("open",))
    line = start(box, service, env)
    assert line == "einfo the open NVIDIA modules loaded: 1 of 1 NVIDIA GPU(s) have a driver"
    assert linked_flavor(tmp_path, cfg) == "open"


def test_nothing_loads_is_one_line_and_still_succeeds(box, service, tmp_path, cfg):
    env = machine(box, tmp_path, cfg, {"0000:41:00.0": HOPPER}, fail="proprietary:nvidia-uvm open:nvidia-uvm")
    line = start(box, service, env)
    assert line == ("eerror no NVIDIA modules loaded: proprietary, open tried, last: modprobe nvidia-uvm "
                    "failed (see dmesg)")
    assert box.calls("modprobe")[-2:] == ["modprobe -r nvidia-modeset", "modprobe -r nvidia"]
    assert not (tmp_path / "sys/module/nvidia").exists()


def test_no_modules_for_the_running_kernel_is_one_line_and_still_succeeds(box, service, tmp_path, cfg):
    env = machine(box, tmp_path, cfg, {"0000:41:00.0": HOPPER})
    box.stand_in("uname", 'echo "6.6.1-0-lts"\n')
    line = start(box, service, env)
    assert line == (f"eerror no NVIDIA modules for kernel 6.6.1-0-lts in {tmp_path}/nvidia "
                    f"(this ISO has: {KVER})")
    assert box.calls("modprobe") == []


# --- making the modules visible and the device nodes -----------------------------------------------------

def test_device_nodes_come_from_proc_devices(box, service, tmp_path, cfg):
    env = machine(box, tmp_path, cfg, {"0000:41:00.0": HOPPER, "0000:42:00.0": HOPPER})
    start(box, service, env)
    dev = tmp_path / "dev"
    assert box.calls("mknod") == [
        f"mknod -m 666 {dev}/nvidiactl c 195 255",
        f"mknod -m 666 {dev}/nvidia0 c 195 0",
        f"mknod -m 666 {dev}/nvidia1 c 195 1",
        f"mknod -m 666 {dev}/nvidia-modeset c 195 254",
        f"mknod -m 666 {dev}/nvidia-uvm c 511 0",
        f"mknod -m 666 {dev}/nvidia-uvm-tools c 511 1",
    ]


def test_nvidia_modprobe_is_used_and_existing_nodes_are_kept(box, service, tmp_path, cfg):
    env = machine(box, tmp_path, cfg, {"0000:41:00.0": HOPPER})
    stand_in = box.stand_in("nvidia-modprobe", 'touch "$NODES/nvidiactl" "$NODES/nvidia0"\n')
    stand_in.rename(tmp_path / "nvbin/nvidia-modprobe")
    start(box, service, {**env, "NODES": str(tmp_path / "dev")})
    assert box.calls("nvidia-modprobe") == ["nvidia-modprobe -c 0", "nvidia-modprobe -m",
                                            "nvidia-modprobe -u -c 0"]
    made = [call.split()[3].rsplit("/", 1)[1] for call in box.calls("mknod")]
    assert made == ["nvidia-modeset", "nvidia-uvm", "nvidia-uvm-tools"]


def test_a_read_only_lib_modules_gets_an_overlay(box, service, tmp_path, cfg):
    """The older modloop: /lib/modules/<kver> is the read-only squashfs until an overlay is mounted on it."""
    env = machine(box, tmp_path, cfg, {"0000:41:00.0": HOPPER})
    kdir = tmp_path / f"lib/modules/{KVER}"
    mounted = tmp_path / "overlay-mounted"
    # mkdir/the write probe fail inside kdir until the stand-in mount has "mounted" the overlay there.
    box.stand_in("mount", f'case "$*" in *overlay*) touch "{mounted}" ;; esac\n')
    box.stand_in("mkdir", f'for a in "$@"; do case "$a" in {kdir}/*) [ -e "{mounted}" ] || exit 1 ;; esac; '
                          'done\nexec busybox mkdir "$@"\n')
    line = start(box, service, env)
    assert line.startswith("einfo the proprietary NVIDIA modules loaded")
    run = tmp_path / "run/bee-nvidia"
    assert box.calls("mount") == [
        f"mount -t tmpfs -o mode=0755 bee-nvidia {run}",
        f"mount -t overlay bee-nvidia-modules -o lowerdir={kdir},upperdir={run}/upper,workdir={run}/work "
        f"{kdir}",
    ]
    assert box.calls("modprobe")[0] == "modprobe -q overlay"
    assert linked_flavor(tmp_path, cfg) == "proprietary"
