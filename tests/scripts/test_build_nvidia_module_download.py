"""scripts/build_nvidia_module.py, step a: download and verify, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os

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


def test_cached_file_that_does_not_match_is_downloaded_again(server, dest):
    dest.parent.mkdir(parents=True)
    dest.write_bytes(DATA[:-1] + b"X")
    nv.download(server.url(PATH), dest, SHA, **FAST)
    assert dest.read_bytes() == DATA
    assert server.requests == [(PATH, None)]


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
    assert leftovers(dest.parent) == [], "neither the file nor its .part may stay"


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


def test_server_down_is_a_clear_error(dest):
    url = closed_port_url(PATH)
    with pytest.raises(nv.DownloadError) as error:
        nv.download(url, dest, SHA, **{**FAST, "retries": 1})
    message = str(error.value)
    assert url in message and "Connection refused" in message and "\n" not in message
    assert not dest.exists()


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
