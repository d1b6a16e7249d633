"""Who may publish and read what: the one source of Lepton's broker ACLs.

Every rule names a topic *kind* from ``shared.protocol.topics.TOPIC_SPECS`` (or a tree filter built by
``Topics``), so the mosquitto ACL file is generated from the same table as the topics and
cannot drift from them; a test fails if a kind is added without deciding who may use it.

Identities:

- a **device** is any identity matching ``shared.protocol.topics.DEVICE_RE`` (``cam-1``). Its rules are
  ``pattern`` lines with ``%u``, so the broker binds "its own tree" to the authenticated
  username (or certificate CN): a stolen device can only speak for itself.
- a **service** identity is ``<role>_<name>`` (``bridge_1``, ``worker_gpu0``). The underscore
  cannot occur in a device id, so no device can ever be provisioned with a service's name.
  Each service instance gets its own identity because the broker uses the username as the
  client id (one connection per identity).

Two renderings of the same rules: ``render_dynsec`` (what ``mosquitto/secure.conf`` loads, the
dynamic security plugin: it checks PUBLISH, every delivery *and* SUBSCRIBE, so a subscription
outside the rules gets SUBACK 0x87) and ``render_acl`` (a mosquitto ``acl_file``, kept for
brokers without the plugin: mosquitto 2.0's ``acl_file`` checks PUBLISH and deliveries but
grants every SUBSCRIBE).
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.protocol.topics import (
    DEVICE_RE,
    HA_CONFIG_PATTERN,
    HA_PREFIX,
    SPEC_BY_KIND,
    TOPIC_SPECS,
    Filter,
    Kind,
    Topic,
    TopicError,
    Topics,
)


class IdentityError(ValueError):
    """A username that is neither a valid device id nor a ``<role>_<name>`` service identity."""


class Role(str, enum.Enum):
    DEVICE = "device"
    BRIDGE = "bridge"
    WORKER = "worker"
    LABELLER = "labeller"
    OPERATOR = "operator"
    CONSOLE = "console"
    MONITOR = "monitor"
    HOME_ASSISTANT = "homeassistant"


SERVICE_ROLES = tuple(r for r in Role if r is not Role.DEVICE)
_ROLE_ALT = "|".join(r.value for r in SERVICE_ROLES)
SERVICE_RE = re.compile(rf"^({_ROLE_ALT})_[a-z0-9][a-z0-9-]{{0,39}}$")


class Access(str, enum.Enum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True, slots=True)
class Grant:
    """``access`` to one topic kind (own tree only when ``own``) or to a whole ``tree``."""

    access: Access
    kind: Kind | None = None
    own: bool = False  # the {device} / {publisher} placeholder becomes %u: the identity's own topics
    tree: str | None = None  # a Topics filter method name, e.g. "edge_tree", "all"
    outside: str | None = None  # a filter outside the root (Home Assistant's), {device} as for kinds

    def filter(self, root: str, *, user: str | None = None) -> str:
        """The topic filter; for ``own`` grants ``%u`` unless a concrete ``user`` is given."""
        if self.outside is not None:
            return self.outside.replace("{device}", (user if user is not None else "%u") if self.own else "+")
        if self.tree is not None:
            return str(getattr(Topics(root), self.tree)())
        assert self.kind is not None
        parts = []
        for p in SPEC_BY_KIND[self.kind].pattern.split("/"):
            if p in ("{device}", "{publisher}") and self.own:
                parts.append(user if user is not None else "%u")
            elif p.startswith("{"):
                parts.append("+")
            else:
                parts.append(p)
        return f"{root}/{'/'.join(parts)}"


R, W = Access.READ, Access.WRITE
_DEVICE_WRITES = (Kind.STATUS, Kind.TELEMETRY, Kind.PRED, Kind.EVENT, Kind.FEAT, Kind.HARD, Kind.MODEL_STATE,
                  Kind.SNAPSHOT)
# A device announces its own entities to Home Assistant, and no one else's (docs/INTEGRATIONS.md). The
# generated ACL assumes the default discovery prefix; with another, regenerate it with that prefix.
HA_OWN_CONFIGS = HA_CONFIG_PATTERN.format(prefix=HA_PREFIX, component="+", device="{device}", object="+")

RULES: Mapping[Role, tuple[Grant, ...]] = {
    # Publishes only under its own edge/{id}/; reads its own replies and commands and the models.
    Role.DEVICE: (
        *(Grant(W, k, own=True) for k in _DEVICE_WRITES),
        Grant(W, outside=HA_OWN_CONFIGS, own=True),
        Grant(R, Kind.REPLY, own=True),
        Grant(R, Kind.CUSTODY, own=True),
        Grant(R, Kind.CMD, own=True),
        Grant(R, Kind.MANIFEST),
        Grant(R, Kind.ARTIFACT),
        Grant(R, Kind.RELEASE),
        Grant(R, Kind.MODEL_VERSION),
    ),
    # Reads the whole edge tree and the labels; writes only hub/.
    Role.BRIDGE: (
        Grant(R, tree="edge_tree"),
        Grant(R, Kind.LABEL),
        Grant(W, Kind.HUB_BATCH),
        Grant(W, Kind.HUB_INFER),
        Grant(W, Kind.HUB_STATUS),
        Grant(W, Kind.CUSTODY),
        Grant(W, Kind.LABEL_CUSTODY),
        Grant(W, Kind.HUB_RELABEL),
        Grant(R, Kind.HUB_ACK),
    ),
    # The only identity that can change what runs on the fleet (model/), answer devices and
    # report cloud status. The signing key, not this ACL, is what devices finally trust.
    # A staged rollout also reads births and telemetry (the field figures) and operators' signed
    # commands; its CLI (`lepton-worker rollout`) may send those commands with the worker's identity.
    Role.WORKER: (
        Grant(R, Kind.HUB_BATCH),
        Grant(R, Kind.HUB_INFER),
        Grant(R, Kind.HUB_RELABEL),
        Grant(R, Kind.MODEL_STATE),
        Grant(R, Kind.MANIFEST),
        Grant(R, Kind.ARTIFACT),
        Grant(R, Kind.STATUS),
        Grant(R, Kind.TELEMETRY),
        Grant(R, Kind.ROLLOUT_CMD),
        Grant(R, Kind.ROLLOUT_EVENT),
        Grant(W, Kind.MANIFEST),
        Grant(W, Kind.ARTIFACT),
        Grant(W, Kind.RELEASE),
        Grant(W, Kind.MODEL_VERSION),
        Grant(W, Kind.ROLLOUT_EVENT),
        Grant(W, Kind.ROLLOUT_CMD),
        Grant(W, Kind.REPLY),
        Grant(W, Kind.HUB_ACK),
        Grant(W, Kind.CLOUD_STATUS),
    ),
    # People or apps that correct the system: read predictions, write labels.
    Role.LABELLER: (
        Grant(R, Kind.PRED),
        Grant(W, Kind.LABEL),
        Grant(R, Kind.LABEL_CUSTODY, own=True),
    ),
    # Commands to any device and to releases (those signed: the key, not this ACL, is what counts);
    # sees fleet and rollout state to know what to command.
    Role.OPERATOR: (
        Grant(W, Kind.CMD),
        Grant(W, Kind.ROLLOUT_CMD),
        Grant(R, Kind.RELEASE),
        Grant(R, Kind.ROLLOUT_EVENT),
        Grant(R, Kind.STATUS),
        Grant(R, Kind.MODEL_STATE),
        Grant(R, Kind.HUB_STATUS),
        Grant(R, Kind.CLOUD_STATUS),
    ),
    # The console (lepton_console): a labeller and an operator in one, and what it shows to do
    # either: escalations with their raw samples, predictions, the cloud's replies, fleet and model
    # state, staged releases and their stage changes, and other consoles' labels (so an item
    # labelled on one screen leaves every queue). It may publish labels and device commands only:
    # never models, releases, rollout commands, replies or predictions.
    Role.CONSOLE: (
        Grant(W, Kind.LABEL),
        Grant(W, Kind.CMD),
        Grant(R, Kind.LABEL_CUSTODY, own=True),
        Grant(R, Kind.LABEL),
        Grant(R, Kind.HARD),
        Grant(R, Kind.PRED),
        Grant(R, Kind.REPLY),
        Grant(R, Kind.STATUS),
        Grant(R, Kind.TELEMETRY),
        Grant(R, Kind.MODEL_STATE),
        Grant(R, Kind.EVENT),
        Grant(R, Kind.HUB_STATUS),
        Grant(R, Kind.CLOUD_STATUS),
        Grant(R, Kind.MANIFEST),
        Grant(R, Kind.MODEL_VERSION),
        Grant(R, Kind.RELEASE),
        Grant(R, Kind.ROLLOUT_EVENT),
        Grant(R, Kind.SNAPSHOT),
    ),
    Role.MONITOR: (Grant(R, tree="all"),),
    # Home Assistant's MQTT integration: reads what the devices announce and the topics their entities
    # follow (births for availability, predictions, events, telemetry, snapshots), and publishes its
    # own birth on <prefix>/status. It writes nothing of Lepton's.
    Role.HOME_ASSISTANT: (
        Grant(R, outside=f"{HA_PREFIX}/#"),
        Grant(W, outside=f"{HA_PREFIX}/status"),
        Grant(R, Kind.STATUS),
        Grant(R, Kind.PRED),
        Grant(R, Kind.EVENT),
        Grant(R, Kind.TELEMETRY),
        Grant(R, Kind.SNAPSHOT),
    ),
}


def role_of(identity: str) -> Role:
    """The role an identity has by its name; raises IdentityError for anything else."""
    if isinstance(identity, str) and DEVICE_RE.match(identity):
        return Role.DEVICE
    m = SERVICE_RE.match(identity) if isinstance(identity, str) else None
    if m:
        return Role(m.group(1))
    raise IdentityError(
        f"invalid identity {identity!r}: a device id must match {DEVICE_RE.pattern}; a service identity is "
        f"<role>_<name> with role one of {', '.join(r.value for r in SERVICE_ROLES)} (e.g. worker_1)")


def render_acl(root: str, identities: Iterable[str] = ()) -> str:
    """The mosquitto ACL file: device patterns for everyone, then one block per service identity.

    Device rules are ``pattern`` lines (they apply to every authenticated user, services too:
    a service's ``%u`` tree, e.g. ``edge/worker_1/``, is not a valid device topic and is
    dropped by every consumer's topic parser). mosquitto warns at load that patterns without
    ``%u`` (the model topics every device reads) contain no substitution; that is intended.
    """
    Topics(root)  # validates the root
    out = [
        "# Lepton broker ACL, generated by shared/security/acl.py from shared/protocol/topics.py — do not edit by hand;",
        "# regenerate with `python -m shared.security.acl --root ROOT IDENTITY...` (or `lepton provision`).",
        "# Nothing before the first `user` line: anonymous clients get no access at all.",
        "",
        "# devices: own tree only (%u = the authenticated username or certificate CN)",
    ]
    for g in RULES[Role.DEVICE]:
        out.append(f"pattern {g.access.value} {g.filter(root)}")
    for ident in sorted(set(identities)):
        role = role_of(ident)
        if role is Role.DEVICE:
            continue  # covered by the patterns above
        out += ["", f"user {ident}"]
        for g in RULES[role]:  # `topic` lines take no %u: an own grant names the identity itself
            out.append(f"topic {g.access.value} {g.filter(root, user=ident if g.own else None)}")
    return "\n".join(out) + "\n"


def filters(identity: str, access: Access, root: str) -> list[str]:
    """The concrete topic filters ``identity`` may publish to (WRITE) or subscribe to (READ):
    the device grants with its own name for ``{device}`` (they apply to every identity, as
    mosquitto ``pattern`` lines do), then its role's grants."""
    role = role_of(identity)
    grants = RULES[Role.DEVICE] + (RULES[role] if role is not Role.DEVICE else ())
    out: list[str] = []
    for g in grants:
        f = g.filter(root, user=identity if g.own else None)
        if g.access is access and f not in out:
            out.append(f)
    return out


DYNSEC_ROLE_PREFIX = "lepton-"


def render_dynsec(root: str, identities: Iterable[str] = ()) -> dict:
    """The mosquitto dynamic security plugin's config (``plugin_opt_config_file``): one client and
    one role per identity, everything else denied (``defaultACLAccess`` all false but unsubscribe).

    The plugin of mosquitto 2.0 does not substitute ``%u``/``%c`` in ACL topics (measured: a
    ``%u`` grant matches nothing), so every identity gets a role of literal filters, and the
    file is regenerated whenever an identity is provisioned or revoked. A READ grant becomes
    ``subscribePattern`` (the SUBACK: a filter is granted only if the pattern covers it, so
    ``#`` or another device's ``reply`` get 0x87) plus ``publishClientReceive`` (each delivery),
    and the same pattern under ``$share/+/`` for shared subscriptions, which mosquitto 2.0
    checks with their prefix. A WRITE grant is ``publishClientSend``.

    Clients carry **no password**: the broker's ``password_file`` stays the only password
    source, because mosquitto re-reads it on SIGHUP (revocation) while the plugin reads its
    file only at start; a client without a password makes the plugin defer to the password
    file (a password here would keep a revoked identity logging in until a restart, measured).
    Certificate clients (``use_identity_as_username``) skip password checks; the plugin finds
    their role by the certificate CN, the username.
    """
    Topics(root)  # validates the root
    clients, roles = [], []
    for ident in sorted(set(identities)):
        role = role_of(ident)
        acls = [{"acltype": "publishClientSend", "topic": f, "allow": True} for f in filters(ident, W, root)]
        for f in filters(ident, R, root):
            acls += [{"acltype": "subscribePattern", "topic": f, "allow": True},
                     {"acltype": "subscribePattern", "topic": f"$share/+/{f}", "allow": True},
                     {"acltype": "publishClientReceive", "topic": f, "allow": True}]
        rolename = f"{DYNSEC_ROLE_PREFIX}{ident}"
        roles.append({"rolename": rolename, "textname": f"{role.value} {ident}, generated by shared/security/acl.py",
                      "acls": acls})
        clients.append({"username": ident, "textname": f"{role.value} {ident}", "roles": [{"rolename": rolename}]})
    return {
        "clients": clients,
        "groups": [],
        "roles": roles,
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                             "unsubscribe": True},
    }


def dynsec_json(root: str, identities: Iterable[str] = ()) -> str:
    """``render_dynsec`` as the file's text (stable: sorted identities, fixed key order)."""
    return json.dumps(render_dynsec(root, identities), indent=2) + "\n"


def allowed(identity: str, access: Access, topic: str, root: str) -> bool:
    """The same rules evaluated in Python, for tests and tooling: may ``identity`` publish
    (WRITE) or receive (READ) a message on the concrete ``topic``? Mirrors mosquitto: the
    device ``pattern`` lines apply to every identity (a service may read the model topics)."""
    try:
        role = role_of(identity)
    except IdentityError:
        return False
    grants = RULES[Role.DEVICE] + (RULES[role] if role is not Role.DEVICE else ())
    for g in grants:
        if g.access is access and Filter(g.filter(root, user=identity if g.own else None)).matches(topic):
            return True
    return False


class ResponseTopicError(ValueError):
    """An MQTT 5 response topic that is not the reply topic of the device that asked."""

    reason = "bad_response_topic"


def checked_reply_topic(topics: Topics, device: str, response_topic: str | None) -> Topic:
    """The topic to answer ``device``'s escalation on, refusing a confused deputy.

    The worker may publish models; a device must not be able to make it publish there (or
    into another device's reply) by setting its response topic. Answer only on
    ``edge/{device}/reply`` of the device the escalation came from (the payload's device,
    which the bridge has already matched against the device's own topic)."""
    want = topics.reply(device)
    if response_topic is None or response_topic != str(want):
        raise ResponseTopicError(f"response topic {response_topic!r} is not {want} for device {device!r}")
    return want


def rules_markdown(root: str = "lepton/v1") -> str:
    """The rules as a Markdown table (docs/SECURITY.md embeds it; a test keeps them equal)."""
    rows = ["| identity | may publish | may receive |", "|---|---|---|"]
    for role in Role:
        ident = "`<device id>`" if role is Role.DEVICE else f"`{role.value}_<name>`"
        cells = []
        for access in (W, R):
            fs = [f"`{g.filter(root)}`" for g in RULES[role] if g.access is access]
            cells.append("<br>".join(fs) or "—")
        rows.append(f"| {ident} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows) + "\n"


def _sample_topic(root: str, kind: Kind) -> str:
    fill = {"{device}": "dev-x", "{version}": "1"}
    return "/".join([root, *(fill.get(p, "x") if p.startswith("{") else p
                             for p in SPEC_BY_KIND[kind].pattern.split("/"))])


def uncovered_kinds(root: str = "lepton/v1") -> list[Kind]:
    """Topic kinds nobody may write or nobody may read: a new kind without a rule shows here."""
    who = ["dev-x", *(f"{r.value}_x" for r in SERVICE_ROLES)]
    out = []
    for s in TOPIC_SPECS:
        t = _sample_topic(root, s.kind)
        if not (any(allowed(i, W, t, root) for i in who) and any(allowed(i, R, t, root) for i in who)):
            out.append(s.kind)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m shared.security.acl",
                                description="Print the mosquitto ACL file (or the dynamic security plugin's JSON).")
    p.add_argument("--root", default="lepton/v1", help="topic root (default lepton/v1)")
    p.add_argument("--dynsec", action="store_true",
                   help="print the dynamic security plugin's config for these identities instead")
    p.add_argument("identities", nargs="*", help="identities (the ACL file gives service identities a block)")
    a = p.parse_args(argv)
    try:
        sys.stdout.write(dynsec_json(a.root, a.identities) if a.dynsec else render_acl(a.root, a.identities))
    except (IdentityError, TopicError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
