"""The example files the .deb ships (docs/examples/) work and agree with each other
and with the docs: a user who copies them gets a configuration that starts."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_security import documented_policy
from vip_elector.vip_manager_config import read_vip_manager_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"


def test_the_example_vip_manager_yml_is_read_as_vip_manager_reads_it() -> None:
    config = read_vip_manager_config(EXAMPLES / "vip-manager.yml")
    assert config.trigger_key == "service/mycluster/vip"
    assert config.trigger_value == "node-a"
    assert config.endpoints == ("http://127.0.0.1:8500",)
    assert config.interval_ms == 1000


def test_the_examples_name_the_same_check_service_and_key() -> None:
    check = (EXAMPLES / "vip-guard.hcl").read_text()
    assert re.search(r'^\s+id\s+=\s+"vip-http"$', check, re.MULTILINE)
    # /etc/default/vip-elector suggests this check id.
    assert "(VIP_ELECTOR_CHECK_ID=vip-http)" in (ROOT / "debian/vip-elector.default").read_text()
    # docs/acl.md's policy as it is (debian/rules ships it as acl-policy.hcl).
    policy = documented_policy("service/mycluster/vip", "vip-guard")
    assert '"service/mycluster/vip"' in policy  # the example's trigger-key
    assert 'service "vip-guard"' in policy  # the service owning the check
    assert 'name = "vip-guard"' in check


def test_the_example_template_reads_the_file_vip_elector_at_reads() -> None:
    template = (EXAMPLES / "vip-manager@.service").read_text()
    ours = (ROOT / "debian" / "vip-elector@.service").read_text()
    assert "--config=/etc/vip-manager/%i.yml" in template
    assert "--vip-manager-config=/etc/vip-manager/%i.yml" in ours
    assert "KillSignal=SIGINT" in template  # vip-manager drops the VIP on SIGINT only
