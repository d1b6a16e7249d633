"""Pure checks of shared/security/acl.py and of the broker config files (no broker)."""

from __future__ import annotations

import re

import pytest

from lepton_cli.secure_broker import SECURE_CONF, dynsec_plugin, render_secure_config
from shared.protocol.codec import Limits
from shared.protocol.topics import DEFAULT_ROOT, Filter, Topics
from shared.security.acl import (
    RULES,
    SERVICE_ROLES,
    Access,
    IdentityError,
    Role,
    allowed,
    dynsec_json,
    filters,
    render_acl,
    render_dynsec,
    role_of,
    uncovered_kinds,
)
from shared.transport.broker import REPO_MOSQUITTO

R, W = Access.READ, Access.WRITE
T = Topics()
EXAMPLE_IDENTITIES = [f"{r.value}_1" for r in SERVICE_ROLES]


def test_every_topic_kind_has_a_writer_and_a_reader():
    assert uncovered_kinds() == []


@pytest.mark.parametrize("ident", ["d+1", "d#", "d/1", "Cam-1", "c\u0430m-1", "", "-cam", "x" * 49, "cam 1",
                                   "worker_", "root_1", "a_b", "$sys", "cam\x00", "worker_A"])
def test_invalid_identities_are_rejected(ident):
    with pytest.raises(IdentityError):
        role_of(ident)


def test_roles_come_from_the_name_and_cannot_collide():
    assert role_of("cam-1") is Role.DEVICE and role_of("x" * 48) is Role.DEVICE
    assert [role_of(f"{r.value}_a") for r in SERVICE_ROLES] == list(SERVICE_ROLES)
    assert role_of("worker-1") is Role.DEVICE  # a hyphen is a device; only '_' names a service


def test_device_speaks_only_for_itself():
    own = [T.status("d1"), T.telemetry("d1"), T.pred("d1", "s"), T.event("d1", "s"), T.feat("d1", "s"),
           T.hard("d1", "s"), T.model_state("d1")]
    for topic in own:
        assert allowed("d1", W, str(topic), DEFAULT_ROOT), topic
        assert not allowed("d2", W, str(topic), DEFAULT_ROOT), topic
    for topic in (T.reply("d1"), T.cmd("d1", "x"), T.manifest("digits"), T.artifact("digits", 1),
                  T.label("d1", "s"), T.hub_batch("digits"), T.hub_status(), T.cloud_status("w")):
        assert not allowed("d1", W, str(topic), DEFAULT_ROOT), topic


def test_device_reads_only_its_replies_commands_and_models():
    assert allowed("d1", R, str(T.reply("d1")), DEFAULT_ROOT)
    assert allowed("d1", R, str(T.cmd("d1", "rollback")), DEFAULT_ROOT)
    assert allowed("d1", R, str(T.manifest("digits")), DEFAULT_ROOT)
    assert allowed("d1", R, str(T.artifact("digits", 7)), DEFAULT_ROOT)
    for topic in (T.reply("d2"), T.cmd("d2", "x"), T.status("d2"), T.feat("d2", "s"), T.label("d1", "s"),
                  T.hub_batch("digits")):
        assert not allowed("d1", R, str(topic), DEFAULT_ROOT), topic


def test_only_the_worker_changes_what_runs_on_the_fleet():
    for topic in (T.manifest("digits"), T.artifact("digits", 2), T.reply("d1"), T.cloud_status("w")):
        writers = {i for i in ["d1", *EXAMPLE_IDENTITIES] if allowed(i, W, str(topic), DEFAULT_ROOT)}
        assert writers == {"worker_1"}, topic


def test_releases_are_changed_by_the_worker_and_commanded_by_operators_not_devices():
    for topic in (T.release("digits"), T.model_version("digits", 3), T.rollout_event("digits")):
        writers = {i for i in ["d1", *EXAMPLE_IDENTITIES] if allowed(i, W, str(topic), DEFAULT_ROOT)}
        assert writers == {"worker_1"}, topic
    cmd = str(T.rollout_cmd("digits"))
    assert {i for i in ["d1", *EXAMPLE_IDENTITIES] if allowed(i, W, cmd, DEFAULT_ROOT)} == {"worker_1", "operator_1"}
    assert allowed("d1", R, str(T.release("digits")), DEFAULT_ROOT)
    assert allowed("d1", R, str(T.model_version("digits", 3)), DEFAULT_ROOT)
    assert not allowed("d1", R, cmd, DEFAULT_ROOT) and not allowed("d1", R, str(T.rollout_event("x")), DEFAULT_ROOT)
    assert allowed("worker_1", R, cmd, DEFAULT_ROOT) and allowed("worker_1", R, str(T.telemetry("d7")), DEFAULT_ROOT)


def test_service_roles():
    assert allowed("bridge_1", R, str(T.feat("d7", "s")), DEFAULT_ROOT)
    assert allowed("bridge_1", R, str(T.label("d7", "s")), DEFAULT_ROOT)
    assert allowed("bridge_1", W, str(T.hub_batch("digits")), DEFAULT_ROOT)
    assert not allowed("bridge_1", W, str(T.reply("d7")), DEFAULT_ROOT)
    assert allowed("labeller_1", W, str(T.label("d7", "s")), DEFAULT_ROOT)
    assert not allowed("labeller_1", W, str(T.cmd("d7", "x")), DEFAULT_ROOT)
    assert allowed("operator_1", W, str(T.cmd("d7", "rebirth")), DEFAULT_ROOT)
    assert allowed("monitor_1", R, str(T.hard("d7", "s")), DEFAULT_ROOT)
    assert not any(allowed("monitor_1", W, str(t), DEFAULT_ROOT) for t in (T.status("d1"), T.hub_status()))
    assert not allowed("nobody", R, str(T.status("d1")), DEFAULT_ROOT)


def test_rendered_acl_gives_anonymous_nothing_and_each_service_a_block():
    text = render_acl(DEFAULT_ROOT, ["worker_1", "d1", "bridge_1"])
    lines = [x for x in text.splitlines() if x and not x.startswith("#")]
    first_user = next(i for i, x in enumerate(lines) if x.startswith("user "))
    assert all(x.startswith("pattern ") for x in lines[:first_user])  # no anonymous `topic` lines
    assert [x for x in lines if x.startswith("user ")] == ["user bridge_1", "user worker_1"]
    assert "pattern write lepton/v1/edge/%u/status" in lines
    assert not any("#" in x.split()[-1] and x.startswith("pattern") for x in lines)  # devices: no wildcard trees
    with pytest.raises(IdentityError):
        render_acl(DEFAULT_ROOT, ["bad/name"])


def test_committed_acl_example_is_generated():
    assert (REPO_MOSQUITTO / "lepton.acl").read_text() == render_acl(DEFAULT_ROOT, EXAMPLE_IDENTITIES)


def test_dynsec_config_has_one_literal_role_per_identity_and_denies_everything_else():
    # Execute
    conf = render_dynsec(DEFAULT_ROOT, ["worker_1", "d1", "d1"])
    roles = {r["rolename"]: r["acls"] for r in conf["roles"]}
    # Assert
    assert conf["defaultACLAccess"] == {"publishClientSend": False, "publishClientReceive": False,
                                        "subscribe": False, "unsubscribe": True}
    assert [c["username"] for c in conf["clients"]] == ["d1", "worker_1"]
    assert all(set(c) == {"username", "textname", "roles"} for c in conf["clients"])  # no passwords here
    assert [c["roles"] for c in conf["clients"]] == [[{"rolename": "lepton-d1"}], [{"rolename": "lepton-worker_1"}]]
    d1 = roles["lepton-d1"]
    assert not any("%" in a["topic"] for acls in roles.values() for a in acls)  # dynsec 2.0 has no %u
    assert all(a["allow"] is True for acls in roles.values() for a in acls)
    sends = [a["topic"] for a in d1 if a["acltype"] == "publishClientSend"]
    assert sends == filters("d1", W, DEFAULT_ROOT) and "lepton/v1/edge/d1/status" in sends
    for f in ("lepton/v1/edge/d1/reply", "lepton/v1/edge/d1/cmd/+", "lepton/v1/model/+/manifest"):
        for kind, topic in (("subscribePattern", f), ("subscribePattern", f"$share/+/{f}"),
                            ("publishClientReceive", f)):
            assert {"acltype": kind, "topic": topic, "allow": True} in d1, (kind, topic)
    assert not any(a["topic"].endswith("#") for a in d1)
    assert {"acltype": "publishClientSend", "topic": "lepton/v1/model/+/manifest", "allow": True} \
        in roles["lepton-worker_1"]
    with pytest.raises(IdentityError):
        render_dynsec(DEFAULT_ROOT, ["bad/name"])


def test_dynsec_filters_agree_with_allowed():
    topics = [str(t) for t in (T.status("d1"), T.reply("d1"), T.reply("d2"), T.cmd("d1", "x"), T.cmd("d2", "x"),
                               T.manifest("digits"), T.hub_batch("digits"), T.label("d1", "s"))]
    for ident in ("d1", *EXAMPLE_IDENTITIES):
        for access in (R, W):
            fs = filters(ident, access, DEFAULT_ROOT)
            for topic in topics:
                assert any(Filter(f).matches(topic) for f in fs) == allowed(ident, access, topic, DEFAULT_ROOT)


def test_committed_dynsec_example_is_generated():
    assert (REPO_MOSQUITTO / "dynsec.json").read_text() == dynsec_json(DEFAULT_ROOT, EXAMPLE_IDENTITIES)


def test_every_role_has_rules():
    assert set(RULES) == set(Role)


def _directives(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.strip().partition(" ")
            out.append((k, v))
    return out


def _listeners(text: str) -> dict[str, dict[str, str]]:
    blocks: dict[str, dict[str, str]] = {}
    cur = None
    for k, v in _directives(text):
        if k == "listener":
            cur = blocks.setdefault(v, {})
        elif cur is not None:
            cur[k] = v
    return blocks


def test_secure_conf_authenticates_every_listener():
    text = SECURE_CONF.read_text()
    d = dict(_directives(text.split("\nlistener ")[0]))
    assert d["per_listener_settings"] == "true" and d["check_retain_source"] == "true"
    assert d["persistence"] == "true"
    blocks = _listeners(text)
    assert len(blocks) == 3
    for name, b in blocks.items():
        assert b.get("allow_anonymous") == "false", name
        assert b.get("use_username_as_clientid") == "true", name
        # the dynamic security plugin alone: an acl_file beside it would grant SUBSCRIBE first
        assert b.get("plugin", "").endswith("/mosquitto_dynamic_security.so") and "acl_file" not in b, name
        assert b.get("plugin_opt_config_file") == "/etc/mosquitto/lepton/dynsec.json", name
        assert "password_file" in b or b.get("use_identity_as_username") == "true", name
    plain = [n for n, b in blocks.items() if "certfile" not in b]
    assert plain == ["1883 127.0.0.1"], "only the loopback listener may go without TLS"
    mtls = next(b for b in blocks.values() if b.get("require_certificate") == "true")
    assert {"cafile", "crlfile", "certfile", "keyfile"} <= set(mtls)


def test_secure_conf_limits_match_the_dev_config_and_the_codec():
    def limits(text):
        d = dict(_directives(text))
        return {k: d[k] for k in ("max_packet_size", "max_queued_messages", "max_queued_bytes",
                                  "max_inflight_messages", "max_keepalive", "persistent_client_expiration")}

    secure = limits(SECURE_CONF.read_text())
    assert secure == limits((REPO_MOSQUITTO / "mosquitto.conf").read_text())
    assert int(secure["max_packet_size"]) > Limits().max_bytes
    assert int(secure["max_queued_messages"]) > 0 and int(secure["max_queued_bytes"]) > 0


def test_render_secure_config_points_every_file_at_the_broker_dir(tmp_path):
    text = render_secure_config(tmp_path, mtls_port=18883, tls_password_port=18884, tls_host="127.0.0.1")
    assert "/etc/mosquitto/lepton" not in text
    paths = [v for k, v in _directives(text) if k in ("password_file", "plugin_opt_config_file", "cafile",
                                                      "certfile", "keyfile", "crlfile")]
    assert paths and all(p.startswith(str(tmp_path.resolve()) + "/") for p in paths)
    assert [v for k, v in _directives(text) if k == "plugin"] == [dynsec_plugin()] * 3
    assert set(_listeners(text)) == {"1883 127.0.0.1", "18883 127.0.0.1", "18884 127.0.0.1"}
    assert re.search(r"(?m)^listener 1883 127\.0\.0\.1$", text)  # left for shared.transport.broker.render_config


def test_reply_topic_must_be_the_asking_device_own_reply():
    from shared.security.acl import ResponseTopicError, checked_reply_topic

    assert checked_reply_topic(T, "d1", str(T.reply("d1"))) == T.reply("d1")
    for bad in (str(T.reply("d2")), str(T.manifest("digits")), f"{DEFAULT_ROOT}/edge/d1/reply/x", None, ""):
        with pytest.raises(ResponseTopicError) as e:
            checked_reply_topic(T, "d1", bad)
        assert e.value.reason == "bad_response_topic"


def test_security_doc_embeds_the_generated_rules_table():
    from shared.security.acl import rules_markdown

    doc = (REPO_MOSQUITTO.parent / "docs" / "SECURITY.md").read_text()
    assert rules_markdown(DEFAULT_ROOT) in doc, "regenerate with: python -c 'from shared.security.acl import rules_markdown; print(rules_markdown())'"
