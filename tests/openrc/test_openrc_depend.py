"""The boot order of the live system, from each service's depend() loaded in busybox sh as OpenRC loads it.

OpenRC's sh/gendepends.sh sources /etc/conf.d/<svc>, then the init script, calls depend() with recording
need/use/want/after/before/provide, then adds the conf.d `rc_<type>` values; librc (rc_deptree_update)
then drops any dependency named `!name` from that type. The harness below does the same, then the test
builds the ordering graph and checks the boot order the README gives: localmount -> bee-sshsetup ->
dropbear -> bee-network -> bee-nvidia -> bee-audit-debug, all in the default runlevel, and no `net`
anywhere in dropbear's deps.
"""

from __future__ import annotations

import subprocess
from graphlib import TopologicalSorter
from pathlib import Path

import pytest

from scripts import live_system
from tests.openrc.openrc_harness import rendered_conf_d, rendered_services

SPEC_ORDER = ["bee-sshsetup", "dropbear", "bee-network", "bee-nvidia", "bee-audit-debug"]
STOCK_DROPBEAR = Path(__file__).parent / "fixtures" / "alpine-dropbear.initd-depend"
ORDERING_TYPES = ("ineed", "iuse", "iwant", "iafter")

# gendepends.sh + rc-functions.sh _depend(), reduced to what the graph needs (dependency lines on stdout).
GENDEPENDS = r"""
config() { [ -n "$*" ] && echo "$RC_SVCNAME config $*"; }
need() { [ -n "$*" ] && echo "$RC_SVCNAME ineed $*"; }
use() { [ -n "$*" ] && echo "$RC_SVCNAME iuse $*"; }
want() { [ -n "$*" ] && echo "$RC_SVCNAME iwant $*"; }
before() { [ -n "$*" ] && echo "$RC_SVCNAME ibefore $*"; }
after() { [ -n "$*" ] && echo "$RC_SVCNAME iafter $*"; }
provide() { [ -n "$*" ] && echo "$RC_SVCNAME iprovide $*"; }
keyword() { [ -n "$*" ] && echo "$RC_SVCNAME keyword $*"; }
RC_SVCNAME="$1"
SCRIPT="$2"
CONF="$3"
depend() { :; }
[ -n "$CONF" ] && [ -e "$CONF" ] && . "$CONF"
. "$SCRIPT" >/dev/null
echo "$RC_SVCNAME"
depend
for _deptype in config need use want after before provide keyword; do
	eval _depends=\$rc_$_deptype
	$_deptype $_depends
done
exit 0
"""


def load_depends(name: str, script: Path, conf: Path | None) -> dict[str, list[str]]:
    """Return the dependency lists of one service as librc stores them (`!name` entries applied)."""
    result = subprocess.run(
        ["busybox", "sh", "-c", GENDEPENDS, "gendepends", name, str(script), str(conf or "")],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    deps: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        service, _, rest = line.partition(" ")
        assert service == name, line
        if not rest:
            continue
        deptype, *names = rest.split()
        current = deps.setdefault(deptype, [])
        for dep in names:
            if dep.startswith("!"):
                current[:] = [d for d in current if d != dep[1:]]
            elif dep not in current:
                current.append(dep)
    return deps


@pytest.fixture(scope="module")
def graph(cfg, tmp_path_factory):
    """service -> dependency lists, for every service of the default runlevel (dropbear: Alpine's script)."""
    out = tmp_path_factory.mktemp("services")
    scripts = rendered_services(cfg, out / "init.d")
    confs = rendered_conf_d(cfg, out / "conf.d")
    scripts["dropbear"] = STOCK_DROPBEAR
    return {
        name: load_depends(name, scripts[name], confs.get(name))
        for name in live_system.runlevels(cfg)["default"]
    }


def ordering_edges(graph: dict[str, dict[str, list[str]]]) -> dict[str, set[str]]:
    """service -> the services that must be started before it (need/use/want/after, and others' before)."""
    preds: dict[str, set[str]] = {name: set() for name in graph}
    for name, deps in graph.items():
        for deptype in ORDERING_TYPES:
            preds[name] |= set(deps.get(deptype, []))
        for later in deps.get("ibefore", []):
            preds.setdefault(later, set()).add(name)
    return preds


def test_default_runlevel_is_the_spec_order(cfg):
    assert live_system.runlevels(cfg)["default"] == SPEC_ORDER


def test_each_service_follows_the_previous_one_directly(graph):
    preds = ordering_edges(graph)
    chain = ["localmount", *SPEC_ORDER]
    for earlier, later in zip(chain, chain[1:], strict=False):
        assert earlier in preds[later], f"{later} is not ordered after {earlier}: {graph.get(later)}"


def test_topological_order_of_the_default_runlevel_is_unique_and_the_documented_one(graph):
    preds = ordering_edges(graph)
    in_level = {name: preds[name] & set(SPEC_ORDER) for name in SPEC_ORDER}
    sorter = TopologicalSorter(in_level)
    sorter.prepare()
    order = []
    while sorter.is_active():
        ready = sorter.get_ready()
        assert len(ready) == 1, f"{ready} could start in any order"
        order += ready
        sorter.done(*ready)
    assert order == SPEC_ORDER


def test_every_service_needs_localmount(graph):
    for name, deps in graph.items():
        assert "localmount" in deps.get("ineed", []), f"{name} does not need localmount: {deps}"


def test_dropbear_starts_without_network(graph):
    deps = graph["dropbear"]
    for deptype, names in deps.items():
        assert "net" not in names, f"dropbear still has {deptype} net"


def test_dropbear_needs_bee_sshsetup_so_a_failed_setup_leaves_ssh_stopped(graph):
    """`after` would only order them: with -B and root's blank password, a failed setup must stop SSH."""
    assert graph["dropbear"]["ineed"] == ["localmount", "bee-sshsetup"]


def test_the_harness_sees_stock_dropbear_needing_net():
    """Without our conf.d, Alpine's script needs net: proves the check above can fail."""
    assert "net" in load_depends("dropbear", STOCK_DROPBEAR, None)["ineed"]


def test_bee_services_need_nothing_from_the_network(graph):
    for name in SPEC_ORDER:
        for deptype in ("ineed", "iwant"):
            assert "net" not in graph[name].get(deptype, []), f"{name} {deptype} net"


def test_audit_and_nvidia_only_order_themselves_after_others(graph):
    """A failed bee-nvidia must not stop the audit: it is `after`, never `need`."""
    assert "bee-nvidia" in graph["bee-audit-debug"]["iafter"]
    assert "bee-nvidia" not in graph["bee-audit-debug"].get("ineed", [])
    assert "bee-network" not in graph["bee-nvidia"].get("ineed", [])


def test_the_audit_fetching_a_profile_comes_after_the_network_without_needing_it(graph):
    """bee.profile=URL is fetched by the audit: it starts after bee-network, uses net, never needs it."""
    deps = graph["bee-audit-debug"]
    assert "bee-network" in deps["iafter"] and "net" in deps["iuse"]
    assert "net" not in deps.get("ineed", []) + deps.get("iwant", [])


def test_conf_d_files_pass_shellcheck_and_busybox(cfg, tmp_path):
    """conf.d files have no shebang, so tests/test_shell.py does not find them: check them here."""
    confs = rendered_conf_d(cfg, tmp_path)
    assert "dropbear" in confs
    for path in confs.values():
        result = subprocess.run(["shellcheck", "--shell=sh", "--severity=style", str(path)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout
        assert subprocess.run(["busybox", "sh", "-n", str(path)]).returncode == 0
