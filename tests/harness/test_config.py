"""The cluster file (harness/config.py) and the system registry: every bad field is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import config
from harness.config import ConfigError
from harness.systems import by_name, from_table, load_system, source_of
from harness.systems.base import BaseSystem, Feature, SystemError_
from harness.systems.raftnet import RaftnetSystem


class Toy(BaseSystem):
    """A user's own adapter, found by import path."""

    name = "toy"
    client_port = 9000
    peer_port = 9001

    def __init__(self, flavour: str = "plain") -> None:
        self.flavour = flavour


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "raftnet.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, error", [
    ('[system]\nname = "raftnet"\n[extra]\n', "unknown field 'extra'"),
    ('[check]\nnodes = 3\n', "[system] is missing"),
    ('[system]\nname = "raftnet"\n[check]\nnodez = 3\n', "check.nodez: unknown field"),
    ('[system]\nname = "raftnet"\n[check]\nnodes = "3"\n', "check.nodes: expected int"),
    ('[system]\nname = "raftnet"\n[check]\ntime = true\n', "check.time: expected int or float"),
    ('[system]\nname = "nosuch"\n', "unknown system 'nosuch'"),
    ('[system]\nname = "raftnet"\nport = 1\n', "system.port: unknown field for raftnet"),
    ('[system]\nname = "raftnet"\nnode_args = "--x"\n', "system.node_args: expected a list of strings"),
    ('[system]\nname = "no_such_module:X"\n', "cannot import no_such_module"),
    ('[system]\nname = "tests.harness.test_config:Nope"\n', "has no Nope"),
    ('[system]\nname = "tests.harness.test_config:write"\n', "bad parameters"),
    ('[system]\nname = "tests.harness.test_config:Toy"\ncolour = 1\n', "bad parameters"),
    ('[system\n', "not valid TOML"),
])
def test_bad_cluster_files_name_the_field(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, text))
    assert error in str(e.value)
    assert "\n" not in str(e.value)


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read cluster file"):
        config.load(tmp_path / "absent.toml")


def test_a_good_file_gives_the_system_and_check_defaults(tmp_path: Path) -> None:
    cf = config.load(write(tmp_path, '[system]\nname = "raftnet"\nnode_args = ["--snapshot-every", "50"]\n'
                                     '[check]\nnodes = 3\ntime = 5\nnemesis = "kill"\n'))
    assert isinstance(cf.system, RaftnetSystem)
    assert cf.system.node_args == ["--snapshot-every", "50"]
    assert cf.check == {"nodes": 3, "time": 5, "nemesis": "kill"}
    again = load_system(source_of(cf.system))  # what a CLI command in another shell re-builds
    assert isinstance(again, RaftnetSystem) and again.node_args == cf.system.node_args


def test_a_users_adapter_by_import_path(tmp_path: Path) -> None:
    cf = config.load(write(tmp_path, '[system]\nname = "tests.harness.test_config:Toy"\nflavour = "spicy"\n'))
    assert isinstance(cf.system, Toy) and cf.system.flavour == "spicy"
    assert cf.system.peer_ports == (9001,)
    assert cf.system.features == frozenset()


def test_resolve_order(tmp_path: Path) -> None:
    assert config.resolve(cwd=tmp_path).system.name == "raftnet"  # nothing given, no file
    write(tmp_path, '[system]\nname = "tests.harness.test_config:Toy"\n')
    assert config.resolve(cwd=tmp_path).system.name == "toy"  # ./raftnet.toml
    assert config.resolve(system="raftnet", cwd=tmp_path).system.name == "raftnet"  # --system wins
    with pytest.raises(ConfigError, match="not both"):
        config.resolve(system="raftnet", config=tmp_path / "raftnet.toml")


def test_raftnet_offers_every_hook() -> None:
    assert by_name("raftnet").features == frozenset(Feature)
    with pytest.raises(SystemError_, match="expected one of"):
        from_table({})
