"""scripts/iso_kernel.py: the ISO kernel's release asked of Alpine's apk (faked with pytest-subprocess: it
cannot run here, except a hung stand-in), and the headers found and checked against it, laid out like
linux-lts-dev's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from scripts import buildconfig, iso_kernel
from tests.paths import REPO_ROOT
from tests.scripts.iso_build_support import KVER, apk_command, fake_headers


@pytest.fixture
def cfg(config_copy):
    return buildconfig.load_config(config_copy.parent)


# --------------------------------------------------------------------------------- the kernel the ISO boots


def test_iso_kernel_release_asks_apk_for_the_configured_repository(fp, cfg):
    fp.register(apk_command(cfg), stdout="linux-lts-6.12.58-r0\n")
    assert iso_kernel.iso_kernel_release(cfg) == KVER
    assert apk_command(cfg)[5].endswith(f"/{cfg.bee.alpine.branch}/main")


def test_iso_kernel_release_follows_the_configured_flavor(fp, cfg):
    cfg.bee.kernel.flavor = "virt"
    fp.register(apk_command(cfg), stdout="linux-virt-6.12.60-r2\n")
    assert iso_kernel.iso_kernel_release(cfg) == "6.12.60-2-virt"


def test_a_repository_kernel_of_another_series_is_an_error(fp, cfg):
    fp.register(apk_command(cfg), stdout="linux-lts-6.18.2-r0\n")
    with pytest.raises(iso_kernel.KernelMismatchError, match="6.18.2-0-lts, not of series 6.12"):
        iso_kernel.iso_kernel_release(cfg)


def test_apk_failing_is_a_clear_error(fp, cfg):
    fp.register(apk_command(cfg), stderr="fetch failed\nERROR: unable to select packages\n", returncode=1)
    expected = "failed: ERROR: unable to select packages; check the network"
    with pytest.raises(iso_kernel.KernelError, match=expected):
        iso_kernel.iso_kernel_release(cfg)


def test_a_configured_release_needs_no_apk(fp, cfg):
    cfg.bee.nvidia.kernel_release = "6.12.1-0-lts"
    fp.allow_unregistered(False)
    assert iso_kernel.iso_kernel_release(cfg) == "6.12.1-0-lts"
    assert list(fp.calls) == []


def test_without_apk_the_error_says_what_to_do(cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(iso_kernel.KernelError, match="apk not found.*KERNEL_RELEASE=<release"):
        iso_kernel.iso_kernel_release(cfg)


# ---------------------------------------------------------------------------------------------- the headers


def test_find_headers_picks_the_configured_flavor_and_series(cfg, tmp_path):
    for kver in ("6.6.100-0-lts", "6.12.58-0-virt", "6.120.1-0-lts", KVER):
        fake_headers(tmp_path, kver)
    cfg.bee.nvidia.headers_root = str(tmp_path)
    assert iso_kernel.find_headers(cfg) == (KVER, tmp_path / f"linux-headers-{KVER}")
    older = "6.6.100-0-lts"
    assert iso_kernel.find_headers(cfg, older) == (older, tmp_path / f"linux-headers-{older}")


def test_find_headers_reads_the_release_from_utsrelease(cfg, tmp_path):
    headers = fake_headers(tmp_path, KVER)
    (headers / "include" / "generated" / "utsrelease.h").write_text('#define UTS_RELEASE "6.12.58-1-lts"\n')
    assert iso_kernel.find_headers(cfg, headers_root=tmp_path)[0] == "6.12.58-1-lts"


def test_no_headers_says_which_package_to_install(cfg, tmp_path):
    expected = "no linux-headers-6.12.*-lts in .*apk add linux-lts-dev"
    with pytest.raises(iso_kernel.HeadersError, match=expected):
        iso_kernel.find_headers(cfg, headers_root=tmp_path)
    with pytest.raises(iso_kernel.HeadersError, match=f"no kernel headers for {KVER}"):
        iso_kernel.find_headers(cfg, KVER, headers_root=tmp_path)


def test_several_headers_ask_for_a_choice(cfg, tmp_path):
    fake_headers(tmp_path, KVER)
    fake_headers(tmp_path, "6.12.59-0-lts")
    with pytest.raises(iso_kernel.HeadersError, match="several kernel headers .*KERNEL_RELEASE="):
        iso_kernel.find_headers(cfg, headers_root=tmp_path)


def test_unprepared_headers_are_an_error(cfg, tmp_path):
    (tmp_path / f"linux-headers-{KVER}").mkdir()
    with pytest.raises(iso_kernel.HeadersError, match="utsrelease.h is missing"):
        iso_kernel.find_headers(cfg, headers_root=tmp_path)


def test_unprepared_headers_of_the_iso_kernel_say_so_not_no_headers(cfg, tmp_path):
    cfg.bee.nvidia.kernel_release = KVER
    cfg.bee.nvidia.headers_root = str(tmp_path)
    (tmp_path / f"linux-headers-{KVER}" / "include").mkdir(parents=True)
    with pytest.raises(iso_kernel.HeadersError) as error:
        iso_kernel.kernel_for_iso(cfg)
    message = str(error.value)
    assert message.startswith(f"{tmp_path}/linux-headers-{KVER} holds no prepared kernel headers (")
    assert "no kernel headers for" not in message


def test_check_headers_match_names_both_versions():
    iso_kernel.check_headers_match(KVER, KVER)
    with pytest.raises(iso_kernel.KernelMismatchError) as error:
        iso_kernel.check_headers_match("6.12.57-0-lts", KVER)
    assert "6.12.57-0-lts" in str(error.value) and KVER in str(error.value)
    assert "invalid module format" in str(error.value)
    assert str(error.value).endswith("apk add -u linux-lts-dev"), "the hint is a command the user can type"


def test_no_hint_names_an_option_that_invoke_lacks(cfg, tmp_path, monkeypatch):
    """Reached from `invoke nvidia` too: the hints name the environment variable, never a script's flag."""
    fake_headers(tmp_path, KVER)
    fake_headers(tmp_path, "6.12.59-0-lts")
    monkeypatch.setenv("PATH", str(tmp_path / "no-apk"))
    messages = []
    for call in (lambda: iso_kernel.find_headers(cfg, headers_root=tmp_path),
                 lambda: iso_kernel.iso_kernel_release(cfg),
                 lambda: iso_kernel.check_headers_match(KVER, "6.12.59-0-lts")):
        with pytest.raises(iso_kernel.KernelError) as error:
            call()
        messages.append(str(error.value))
    assert not [m for m in messages if "--iso-kver" in m or "--kver" in m], messages
    assert sum("INVOKE_BEE_NVIDIA_KERNEL_RELEASE=" in m for m in messages) == 2


def test_find_headers_defaults_to_the_configured_release(cfg, tmp_path):
    fake_headers(tmp_path, KVER)
    headers = fake_headers(tmp_path, "6.1.0-56-amd64")  # another flavor, as tests use Debian's
    cfg.bee.nvidia.kernel_release = "6.1.0-56-amd64"
    assert iso_kernel.find_headers(cfg, headers_root=tmp_path) == ("6.1.0-56-amd64", headers)


def test_iso_builds_check_with_a_configured_release(cfg, tmp_path):
    """What a dry run does: find_headers(cfg), then check against iso_kernel_release(cfg)."""
    fake_headers(tmp_path, KVER)
    cfg.bee.nvidia.headers_root, cfg.bee.nvidia.kernel_release = str(tmp_path), KVER
    kver, _ = iso_kernel.find_headers(cfg)
    iso_kernel.check_headers_match(kver, iso_kernel.iso_kernel_release(cfg))
    assert kver == KVER


def test_garbage_from_apk_is_one_clear_line(fp, cfg):
    fp.register(apk_command(cfg), stdout="<html><body>Captive portal</body></html>\n")
    with pytest.raises(iso_kernel.KernelError) as error:
        iso_kernel.iso_kernel_release(cfg)
    message = str(error.value)
    assert message.startswith("apk named no linux-lts-<version>-r<N> in the configured repository")
    assert "it printed '<html><body>Captive portal</body></html>'" in message
    assert "check bee.alpine" in message and "\n" not in message


def test_silence_from_apk_is_one_clear_line(fp, cfg):
    fp.register(apk_command(cfg), stdout="")
    with pytest.raises(iso_kernel.KernelError, match=r"\(it printed nothing\); check bee.alpine"):
        iso_kernel.iso_kernel_release(cfg)


def test_a_hung_apk_is_stopped(cfg, tmp_path, monkeypatch):
    fake_apk = tmp_path / "bin" / "apk"
    fake_apk.parent.mkdir()
    fake_apk.write_text("#!/bin/sh\nexec sleep 300\n")
    fake_apk.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_apk.parent}{os.pathsep}{os.environ['PATH']}")
    cfg.bee.nvidia.apk_timeout = 0.5
    expected = r"^apk --update-cache .* gave no answer in 0.5 s and was stopped"
    with pytest.raises(iso_kernel.KernelError, match=expected):
        iso_kernel.iso_kernel_release(cfg)


def test_kernel_for_iso_is_the_one_checked_answer(fp, cfg, tmp_path):
    cfg.bee.nvidia.headers_root = str(tmp_path)
    fake_headers(tmp_path, "6.12.57-0-lts")
    fp.register(apk_command(cfg), stdout="linux-lts-6.12.58-r0\n")
    expected = "for 6.12.57-0-lts but the ISO boots 6.12.58-0-lts"
    with pytest.raises(iso_kernel.KernelMismatchError, match=expected):
        iso_kernel.kernel_for_iso(cfg)
    headers = fake_headers(tmp_path, KVER)  # now both are there: the ISO's is chosen, not "several"
    fp.register(apk_command(cfg), stdout="linux-lts-6.12.58-r0\n")
    assert iso_kernel.kernel_for_iso(cfg) == (KVER, headers)


def test_the_script_prints_the_checked_answer_or_one_line(config_copy, tmp_path):
    """`python3 scripts/iso_kernel.py` as a user runs it, with the configured release and headers."""
    headers = fake_headers(tmp_path, KVER)
    env = {**os.environ, "INVOKE_BEE_NVIDIA_KERNEL_RELEASE": KVER,
           "INVOKE_BEE_NVIDIA_HEADERS_ROOT": str(tmp_path)}
    run = [sys.executable, "scripts/iso_kernel.py"]
    result = subprocess.run(run, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{KVER}\t{headers}\n", "")
    env["INVOKE_BEE_NVIDIA_KERNEL_RELEASE"] = "6.12.59-0-lts"
    result = subprocess.run(run, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("iso_kernel: the kernel headers are for 6.12.58-0-lts but the ISO boots "
                                    "6.12.59-0-lts") and result.stderr.count("\n") == 1
