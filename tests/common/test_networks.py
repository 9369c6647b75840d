"""The set of networks that trust and permission settings are made of."""

from __future__ import annotations

from vw.common.networks import Networks


def test_addresses_in_and_out() -> None:
    networks = Networks(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"])
    assert networks
    for host in ("10.1.2.3", "::ffff:10.1.2.3", "2001:db8::5", "192.0.2.7"):
        assert host in networks
    for host in ("11.0.0.1", "192.0.2.8", "2001:db9::1", "not an address", "", None):
        assert host not in networks
    assert not Networks([]) and "10.1.2.3" not in Networks([])
