"""The [balancer] section: documented in the example, checked when loaded."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from vw.config import BalancerConfig, ConfigError, ShardConfig, load

EXAMPLE = Path(__file__).parents[2] / "etc" / "vw.toml.example"


def test_the_example_documents_every_balancer_key() -> None:
    assert load(str(EXAMPLE)).balancer == BalancerConfig()
    text = EXAMPLE.read_text()
    for cls in (BalancerConfig, ShardConfig):
        for field in dataclasses.fields(cls):
            assert re.search(rf"\n(# )?{field.name} =|\.{field.name}\]\]", text), field.name


def test_shards_load(tmp_path: Path) -> None:
    path = tmp_path / "vw.toml"
    path.write_text('[[balancer.shards]]\nname = "a"\naddress = "10.0.0.1:5280"\n'
                    'weight = 2.0\nregion = "eu"\ndrain = true\n')
    assert load(str(path)).balancer.shards == [ShardConfig("a", "10.0.0.1:5280", 2.0, "eu",
                                                           True)]


@pytest.mark.parametrize("content, message", [
    ("backend_proxy_protocol = 3", "must be 0, 1 or 2"),
    ("connect_retries = -1", "must not be negative"),
    ('portal = "nowhere"', "is not host:port"),
    ('bridges = { "jvb1" = "10.0.0.1:99999" }', "is not host:port"),
    ('shards = [{ name = "a", address = "h:1" }, { name = "a", address = "h:2" }]',
     "distinct name"),
    ('shards = [{ address = "h:1" }]', "distinct name"),
    ('shards = [{ name = "a", address = "h:1", weight = 0.0 }]', "must be positive"),
    ('shards = [{ name = "a", address = "h" }]', "is not host:port"),
])
def test_bad_settings_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "vw.toml"
    path.write_text(f"[balancer]\n{content}\n")
    with pytest.raises(ConfigError, match=message):
        load(str(path))
