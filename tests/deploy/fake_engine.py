"""A stand-in for docker, docker-compose and podman (by the name it is called as), for
tests/deploy/test_compose_script.py: just enough of each for scripts/compose.sh, with its calls
logged and its containers' states in a JSON file.

FAKE_DOCKER: none (no daemon: `docker info` fails, `docker compose up -d` is the issue's
"unknown shorthand flag: 'd' in -d"), no-plugin (a daemon, no compose plugin), plugin (both).
FAKE_NEVER_HEALTHY: a service whose health checks never pass. Under podman nothing becomes
healthy unless `podman healthcheck run` is called, and `up -d` waits (as docker-compose does
for depends_on: service_healthy) until the broker is healthy.
"""

import json
import os
import socket
import sys
import time

STATE, LOG = os.environ["FAKE_STATE"], os.environ["FAKE_LOG"]
SERVICES = {"mosquitto": "eclipse-mosquitto:2", "keygen": "lepton/bridge:local", "bridge": "lepton/bridge:local",
            "worker": "lepton/worker:local", "agent-1": "lepton/agent:local", "agent-2": "lepton/agent:local"}
ONE_SHOT = {"keygen"}


def load() -> dict:
    try:
        with open(STATE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def save(st: dict) -> None:
    with open(STATE + ".tmp", "w") as f:
        json.dump(st, f)
    os.replace(STATE + ".tmp", STATE)


def create(name: str, healthy: bool) -> dict:
    if name in ONE_SHOT:
        return {"state": "exited", "health": "starting", "code": 0}  # its image declares a check
    return {"state": "running", "health": "healthy" if healthy else "starting", "code": 0}


def compose(args: list[str], podman: bool) -> int:
    while args and args[0] in ("-f", "-p"):
        args = args[2:]
    sub, rest = (args[0], args[1:]) if args else ("", [])
    if sub == "version":
        print("Docker Compose version v2.0.0-fake")
    elif sub == "config":
        if "--services" in rest:
            print("\n".join(SERVICES))
        else:
            print("services:\n" + "".join(f"  {s}:\n    image: {i}\n" for s, i in SERVICES.items()))
    elif sub == "up":
        host = os.environ.get("DOCKER_HOST", "")
        if podman and not os.path.exists(host.removeprefix("unix://")):
            print(f"Couldn't connect to Docker daemon at {host or 'http+docker://localhost'}", file=sys.stderr)
            return 1
        if not podman:  # the Docker daemon runs the health checks itself
            save({s: create(s, True) for s in SERVICES})
            return 0
        save({"mosquitto": create("mosquitto", False)})
        deadline = time.monotonic() + 60
        while load()["mosquitto"]["health"] != "healthy":  # depends_on: condition: service_healthy
            if time.monotonic() > deadline:
                print("fake compose: mosquitto never became healthy", file=sys.stderr)
                return 1
            time.sleep(0.2)
        st = load()
        st.update({s: create(s, False) for s in SERVICES if s != "mosquitto"})
        save(st)
    elif sub == "down":
        save({})
        print("Removing fake containers" + (" and volumes" if "-v" in rest else ""))
    elif sub in ("ps", "logs"):
        for s, c in load().items():
            print(s, c["state"], c["health"])
    return 0


def engine(args: list[str], podman: bool) -> int:
    st = load()
    if args[:2] == ["image", "inspect"]:
        return 1 if args[2] in os.environ.get("FAKE_MISSING_IMAGES", "").split(",") else 0
    if args[:1] == ["ps"]:
        running_only = "-q" in args and "-aq" not in args
        print("\n".join(s for s, c in st.items() if not running_only or c["state"] == "running"))
    elif args[:1] == ["inspect"]:
        for s in args[3:]:  # SERVICE STATE EXIT RESTART HEALTH, as scripts/compose.sh asks
            restart = "no" if s in ONE_SHOT else "unless-stopped"
            print(f"{s} {st[s]['state']} {st[s]['code']} {restart} {st[s]['health'] or '-'}")
    elif podman and args[:2] == ["healthcheck", "run"]:
        s = args[2]
        if s in st and s != os.environ.get("FAKE_NEVER_HEALTHY"):
            st[s]["health"] = "healthy"
            save(st)
    elif podman and args[:2] == ["system", "service"]:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(args[-1].removeprefix("unix://"))
        sock.listen()
        time.sleep(3600)
    elif args[:1] == ["info"]:
        if os.environ.get("FAKE_DOCKER", "none") == "none":
            print("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.", file=sys.stderr)
            return 1
    return 0


def main() -> int:
    name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
    with open(LOG, "a") as f:
        f.write(json.dumps([name, args, os.environ.get("DOCKER_HOST")]) + "\n")
    if name == "docker-compose":
        return compose(args, podman=os.environ.get("FAKE_DOCKER", "none") == "none")
    if name == "docker" and args[:1] == ["compose"]:
        if os.environ.get("FAKE_DOCKER") != "plugin":
            if "-d" in args:
                print("unknown shorthand flag: 'd' in -d", file=sys.stderr)
                return 125
            print("docker: 'compose' is not a docker command.", file=sys.stderr)
            return 1
        return compose(args[1:], podman=False)
    return engine(args, podman=name == "podman")


if __name__ == "__main__":
    sys.exit(main())
