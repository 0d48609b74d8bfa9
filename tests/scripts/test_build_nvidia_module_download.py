"""scripts/build_nvidia_module.py, step a: download and verify, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import errno
import hashlib
import os
import sys

import pytest

from scripts import build_nvidia_module as nv
from scripts import buildconfig
from tests.scripts.nvidia_fake.server import FakeServer, closed_port_url

DATA = os.urandom(3 * 1024 * 1024 + 123)  # several chunks, not a round size
SHA = hashlib.sha256(DATA).hexdigest()
PATH = "/590/NVIDIA-Linux-x86_64-590.run"
FAST = {"retries": 3, "backoff": 0.01, "timeout": 10, "progress": False}


@pytest.fixture
def server():
    with FakeServer({PATH: DATA, PATH + ".sha256sum": f"{SHA}  {PATH[5:]}\n".encode()}) as running:
        yield running


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "downloads" / "NVIDIA.run"


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_fresh_download_is_verified_and_renamed(server, dest):
    assert nv.download(server.url(PATH), dest, SHA, **FAST) == dest
    assert dest.read_bytes() == DATA
    assert server.requests == [(PATH, None)]
    assert leftovers(dest.parent) == ["NVIDIA.run"]


def test_cached_file_is_not_downloaded_again(server, dest):
    nv.download(server.url(PATH), dest, SHA, **FAST)
    mtime = dest.stat().st_mtime_ns
    nv.download(server.url(PATH), dest, SHA, **FAST)
    assert server.requests == [(PATH, None)], "the cached, matching file must not be requested again"
    assert dest.stat().st_mtime_ns == mtime


def test_a_cached_file_that_does_not_match_is_kept_aside_not_downloaded_again(server, dest):
    dest.parent.mkdir(parents=True)
    wrong = DATA[:-1] + b"X"
    dest.write_bytes(wrong)
    got = hashlib.sha256(wrong).hexdigest()
    with pytest.raises(nv.ChecksumError) as error:
        nv.download(server.url(PATH), dest, SHA, **FAST)
    message = str(error.value)
    aside = dest.with_name(f"NVIDIA.run.sha256-{got[:12]}")
    assert f"expected {SHA}" in message and f"got {got}" in message and str(aside) in message
    assert "fix bee.nvidia.sha256" in message and "run again" in message and "\n" not in message
    assert server.requests == [], "nothing is downloaded while the pin may be the wrong one"
    assert leftovers(dest.parent) == [aside.name] and aside.read_bytes() == wrong
    nv.download(server.url(PATH), dest, SHA, **FAST)   # the next run downloads it afresh
    assert dest.read_bytes() == DATA and aside.read_bytes() == wrong


def test_resumes_from_a_partial_file(server, dest):
    dest.parent.mkdir(parents=True)
    nv.partial_path(dest).write_bytes(DATA[:1_000_000])
    nv.download(server.url(PATH), dest, SHA, **FAST)
    assert server.requests == [(PATH, "bytes=1000000-")]
    assert dest.read_bytes() == DATA
    assert leftovers(dest.parent) == ["NVIDIA.run"]


def test_a_503_is_retried(server, dest):
    server.faults.extend(["503", "503"])
    nv.download(server.url(PATH), dest, SHA, **FAST)
    assert server.requests == [(PATH, None)] * 3
    assert dest.read_bytes() == DATA


def test_a_connection_cut_mid_body_resumes_where_it_stopped(server, dest):
    server.faults.append(("cut", 1_500_000))
    nv.download(server.url(PATH), dest, SHA, **FAST)
    (first, no_range), (second, resumed) = server.requests
    assert no_range is None
    offset = int(resumed.removeprefix("bytes=").removesuffix("-"))
    assert 0 < offset <= 1_500_000, "what arrived whole before the cut is kept"
    assert dest.read_bytes() == DATA


def test_cuts_that_make_progress_do_not_use_up_the_retries(server, dest):
    server.faults.extend([("cut", 1_200_000)] * 3)  # each cut lets one more whole chunk through
    nv.download(server.url(PATH), dest, SHA, **{**FAST, "retries": 1})
    assert len(server.requests) == 3
    assert dest.read_bytes() == DATA


def test_a_server_that_ignores_range_restarts_cleanly(server, dest):
    dest.parent.mkdir(parents=True)
    nv.partial_path(dest).write_bytes(DATA[:1000])
    server.faults.append("ignore-range")
    nv.download(server.url(PATH), dest, SHA, **FAST)
    assert dest.read_bytes() == DATA


def test_a_complete_partial_file_is_verified_without_downloading_again(server, dest):
    dest.parent.mkdir(parents=True)
    nv.partial_path(dest).write_bytes(DATA)  # an earlier run stopped between the last byte and the rename
    nv.download(server.url(PATH), dest, SHA, **FAST)
    assert server.requests == [(PATH, f"bytes={len(DATA)}-")]
    assert dest.read_bytes() == DATA and leftovers(dest.parent) == ["NVIDIA.run"]


def test_a_partial_file_longer_than_the_file_starts_over(server, dest):
    dest.parent.mkdir(parents=True)
    nv.partial_path(dest).write_bytes(DATA + b"junk")
    nv.download(server.url(PATH), dest, SHA, **FAST)
    assert server.requests == [(PATH, f"bytes={len(DATA) + 4}-"), (PATH, None)]
    assert dest.read_bytes() == DATA


def test_wrong_checksum_leaves_nothing_under_the_final_name(server, dest):
    wrong = "0" * 64
    with pytest.raises(nv.ChecksumError) as error:
        nv.download(server.url(PATH), dest, wrong, **FAST)
    message = str(error.value)
    assert f"expected {wrong}" in message and f"got {SHA}" in message
    assert "\n" not in message
    assert leftovers(dest.parent) == [f"NVIDIA.run.sha256-{SHA[:12]}"], "kept aside, no .part, no final name"


def test_persistent_5xx_gives_up_with_a_clear_error(server, dest):
    server.faults.extend(["503"] * 10)
    with pytest.raises(nv.DownloadError, match=r"HTTP 503 .*3 retries failed"):
        nv.download(server.url(PATH), dest, SHA, **FAST)
    assert len(server.requests) == 4
    assert not dest.exists()


def test_missing_file_fails_at_once(server, dest):
    with pytest.raises(nv.DownloadError, match=r"HTTP 404 .*check bee.nvidia.version"):
        nv.download(server.url("/nope.run"), dest, SHA, **FAST)
    assert len(server.requests) == 1, "a 404 is not retried"


def test_server_down_is_a_clear_error_with_one_line_per_retry(dest, capsys):
    url = closed_port_url(PATH)
    with pytest.raises(nv.DownloadError) as error:
        nv.download(url, dest, SHA, **{**FAST, "retries": 2})
    message = str(error.value)
    assert url in message and "Connection refused" in message and "\n" not in message
    assert "2 retries failed; no byte arrived" in message
    assert capsys.readouterr().err.splitlines() == [
        "build_nvidia_module: NVIDIA.run: retrying in 0.01 s (1/2): connection refused",
        "build_nvidia_module: NVIDIA.run: retrying in 0.02 s (2/2): connection refused",
    ]
    assert not dest.exists()


def test_a_host_that_does_not_resolve_fails_at_once(dest, capsys, monkeypatch):
    slept = []
    monkeypatch.setattr(nv.time, "sleep", slept.append)
    url = "http://download.bee-test.invalid/x.run"   # .invalid never resolves (RFC 6761)
    with pytest.raises(nv.DownloadError) as error:
        nv.download(url, dest, SHA, **FAST)
    message = str(error.value)
    assert message.startswith(f"cannot download {url}: download.bee-test.invalid does not resolve (")
    assert "no network or no DNS" in message and "\n" not in message
    assert slept == [] and capsys.readouterr().err == "", "no silent (or noisy) retries"


@pytest.mark.parametrize("code", [errno.ENETUNREACH, errno.EHOSTUNREACH])
def test_no_route_to_the_host_fails_at_once(dest, capsys, monkeypatch, code):
    """connect() failing with ENETUNREACH/EHOSTUNREACH (no network, no default route) is not retried."""
    import urllib3.util.connection

    def unreachable(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(urllib3.util.connection, "create_connection", unreachable)
    slept = []
    monkeypatch.setattr(nv.time, "sleep", slept.append)
    url = "http://192.0.2.1:9/x.run"   # TEST-NET-1: never connected here (create_connection is replaced)
    with pytest.raises(nv.DownloadError) as error:
        nv.download(url, dest, SHA, **FAST)
    message = str(error.value)
    assert message.startswith(f"cannot download {url}: no route to 192.0.2.1 (")
    assert os.strerror(code) in message and "no network on this builder" in message and "\n" not in message
    assert slept == [] and capsys.readouterr().err == "", "no retries"


def test_the_last_error_says_what_arrived(server, dest):
    server.faults.extend([("cut", nv.CHUNK_SIZE + 10), "503", "503", "503", "503"])
    with pytest.raises(nv.DownloadError) as error:
        nv.download(server.url(PATH), dest, SHA, **FAST)
    kept = nv.partial_path(dest).stat().st_size
    assert kept == nv.CHUNK_SIZE, "the whole chunks that arrived are kept"
    size = f"{kept / 1024 / 1024:.1f} MiB" if kept >= 1024 * 1024 else f"{kept / 1024:.1f} KiB"
    expected = f"(3 retries failed; {size} arrived, {size} kept in NVIDIA.run.part)"
    assert expected in str(error.value)


# --------------------------------------------------------------------------- the configured installer, main()


@pytest.fixture
def cfg(config_copy, server):
    cfg = buildconfig.load_config(config_copy.parent)
    cfg.bee.nvidia.url = server.url("/{version}/NVIDIA-Linux-x86_64-{version}.run")
    cfg.bee.nvidia.sha256 = SHA
    cfg.bee.nvidia.download_backoff = 0.01
    server.files[f"/{cfg.bee.nvidia.version}/NVIDIA-Linux-x86_64-{cfg.bee.nvidia.version}.run"] = DATA
    return cfg


def test_download_installer_uses_the_configured_cache(cfg, config_copy):
    path = nv.download_installer(cfg, progress=False)
    assert path == config_copy.parent / cfg.bee.paths.download_cache / path.name
    assert path.name.endswith(f"{cfg.bee.nvidia.version}.run")
    assert path.read_bytes() == DATA


def test_main_download_step_prints_only_the_path(cfg, capsys):
    assert nv.main(["--step", "download", "--no-progress"], cfg=cfg) == 0
    out = capsys.readouterr().out
    assert out == f"{nv.installer_path(cfg)}\n"


def test_main_wrong_checksum_exits_1_with_one_line(cfg, capsys):
    assert nv.main(["--step", "download", "--sha256", "f" * 64], cfg=cfg) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "expected " + "f" * 64 in captured.err
    assert not nv.installer_path(cfg).exists()


def test_print_sha256_prints_nvidias_published_sum(cfg, server, capsys):
    url = nv.installer_url(cfg)
    server.files[url.split(str(server.url("")), 1)[1] + ".sha256sum"] = f"{SHA.upper()}  x.run\n".encode()
    assert nv.main(["--print-sha256"], cfg=cfg) == 0
    assert capsys.readouterr().out == f"{SHA}\n"
    assert server.requests[-1][0].endswith(".run.sha256sum")
    assert not nv.installer_path(cfg).exists(), "--print-sha256 downloads nothing else"


def test_print_sha256_of_an_unpublished_version_fails(cfg, capsys):
    assert nv.main(["--print-sha256", "--version", "1.2.3"], cfg=cfg) == 1
    assert "HTTP 404" in capsys.readouterr().err


def test_progress_bar_goes_to_stderr(server, dest, capsys):
    nv.download(server.url(PATH), dest, SHA, **{**FAST, "progress": True})
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "NVIDIA-Linux-x86_64-590.run" in captured.err


def test_no_progress_bar_off_a_terminal_by_default(server, dest, capsys):
    nv.download(server.url(PATH), dest, SHA, **{**FAST, "progress": None})
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- a full disk, backoff, the TTY


class FullDisk:
    """Stands for a file system with `free` bytes left: writes to `.part` files fail with ENOSPC past that.

    The failing write first stores what still fits, as a real short write does, then raises.
    """

    def __init__(self, monkeypatch, free):
        self.free = free
        real_open = nv.Path.open
        disk = self

        class File:
            def __init__(self, handle, name):
                self.handle, self.name = handle, name

            def write(self, data):
                room = max(disk.free, 0)
                self.handle.write(data[:room])
                disk.free -= min(len(data), room)
                if len(data) > room:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)
                return len(data)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.handle.close()

        def fake_open(path, mode="r", *args, **kwargs):
            handle = real_open(path, mode, *args, **kwargs)
            return File(handle, str(path)) if path.name.endswith(".part") and "a" in mode else handle

        monkeypatch.setattr(nv.Path, "open", fake_open)


def test_a_full_disk_is_one_clear_line_and_the_part_file_resumes_afterwards(server, dest, monkeypatch):
    FullDisk(monkeypatch, free=1_500_000)
    with pytest.raises(nv.DownloadError) as error:
        nv.download(server.url(PATH), dest, SHA, **FAST)
    message = str(error.value)
    part = nv.partial_path(dest)
    assert "\n" not in message
    assert f"No space left on device: {part}" in message and "free some space" in message
    assert message.endswith("run again to resume the download")
    assert len(server.requests) == 1, "a full disk is not retried"
    assert not dest.exists(), "nothing under the final name"
    kept = part.read_bytes()
    assert kept and len(kept) % nv.CHUNK_SIZE == 0, "only whole, hashed chunks are kept"
    assert DATA.startswith(kept)

    monkeypatch.undo()  # space was freed
    nv.download(server.url(PATH), dest, SHA, **FAST)
    assert server.requests[-1] == (PATH, f"bytes={len(kept)}-")
    assert dest.read_bytes() == DATA and leftovers(dest.parent) == ["NVIDIA.run"]


def test_main_reports_a_full_disk_in_one_line(cfg, monkeypatch, capsys):
    FullDisk(monkeypatch, free=10)
    assert nv.main(["--step", "download", "--no-progress"], cfg=cfg) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("build_nvidia_module: cannot save NVIDIA-Linux-x86_64-")
    assert "No space left on device" in captured.err
    assert not nv.installer_path(cfg).exists()


def test_retries_back_off_doubling(server, dest, monkeypatch):
    slept = []
    monkeypatch.setattr(nv.time, "sleep", slept.append)
    server.faults.extend(["503"] * 3)
    nv.download(server.url(PATH), dest, SHA, **{**FAST, "backoff": 0.5})
    assert slept == [0.5, 1.0, 2.0]
    assert dest.read_bytes() == DATA


def test_a_progress_bar_on_a_terminal_by_default(server, dest, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    nv.download(server.url(PATH), dest, SHA, **{**FAST, "progress": None})
    captured = capsys.readouterr()
    assert "NVIDIA-Linux-x86_64-590.run" in captured.err and captured.out == ""


def test_a_malformed_url_is_one_line_without_retries(dest):
    with pytest.raises(nv.DownloadError, match=r"^cannot download nowhere/x.run: .*check bee.nvidia.url$"):
        nv.download("nowhere/x.run", dest, SHA, **FAST)
    assert not dest.exists()


@pytest.mark.parametrize("pin", ["", "b9e2f806", SHA + "0", "g" * 64])
def test_a_malformed_pin_fails_before_any_download(server, dest, pin):
    dest.parent.mkdir(parents=True)
    nv.partial_path(dest).write_bytes(DATA[:1000])
    expected = r"is not 64 hex digits; fix bee.nvidia.sha256 .*--print-sha256"
    with pytest.raises(nv.DownloadError, match=expected):
        nv.download(server.url(PATH), dest, pin, **FAST)
    assert server.requests == [], "nothing is fetched (and then deleted) because of a typo in the pin"
    assert nv.partial_path(dest).read_bytes() == DATA[:1000]
