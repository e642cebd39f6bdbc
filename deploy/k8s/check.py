#!/usr/bin/env python3
"""Policy checks of the rendered Kubernetes manifests (make test-deploy), beyond the schema.

Usage: check.py OVERLAY RENDERED.yaml [--palaver BIN]

What a schema cannot say and palaver needs (docs/cluster.md, "Deploying on Kubernetes"):
host networking with the matching DNS policy, one pod per host, readiness and liveness on the
real endpoints, a preStop that drains with SIGTERM inside the grace period, Guaranteed QoS, a
PodDisruptionBudget over the pods, Services whose named ports exist, every Secret/ConfigMap the
pods use either rendered or listed as provided by the operator, and a palaver.toml template that
renders into a configuration palaver accepts (with --palaver: `palaver print-config`).
"""
import os
import subprocess
import sys
import tempfile
import tomllib

import yaml

# Secrets the operator creates (never in the repository), per overlay.
EXTERNAL_SECRETS = {
    "dev": {"palaver-tls", "palaver-cluster-ca"},
    "prod": {"palaver-tls", "palaver-cluster-ca", "palaver-cluster"},
}

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def base_name(name, generated):
    """configMapGenerator/secretGenerator names carry a hash suffix."""
    for g in generated:
        if name == g or name.startswith(g + "-"):
            return g
    return name


def main():
    overlay, rendered = sys.argv[1], sys.argv[2]
    palaver = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--palaver" else None
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}

    sets = [s for s in by_kind.get("StatefulSet", []) if s["metadata"]["name"] == "palaver"]
    check(len(sets) == 1, "exactly one StatefulSet palaver")
    if not sets:
        return
    sts = sets[0]
    pod = sts["spec"]["template"]["spec"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    check(sts["spec"]["selector"]["matchLabels"].items() <= labels.items(), "selector matches the pod labels")
    check(pod.get("hostNetwork") is True, "hostNetwork (UDP media on the host's ports)")
    check(pod.get("dnsPolicy") == "ClusterFirstWithHostNet", "hostNetwork needs dnsPolicy ClusterFirstWithHostNet")
    anti = pod.get("affinity", {}).get("podAntiAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", [])
    check(
        any(t["topologyKey"] == "kubernetes.io/hostname"
            and t["labelSelector"]["matchLabels"].items() <= labels.items() for t in anti),
        "required pod anti-affinity on kubernetes.io/hostname over palaver's own pods",
    )
    grace = pod.get("terminationGracePeriodSeconds", 30)
    check(grace >= 30, f"terminationGracePeriodSeconds {grace} leaves drain too little time")

    [c] = [c for c in pod["containers"] if c["name"] == "palaver"]
    ports = {p["name"]: p for p in c.get("ports", [])}
    ready, live = c.get("readinessProbe", {}), c.get("livenessProbe", {})
    check(ready.get("httpGet", {}).get("path") == "/health" and ready["httpGet"].get("scheme") == "HTTPS",
          "readiness probe: GET /health over HTTPS")
    check(live.get("httpGet", {}).get("path") == "/metrics", "liveness probe: GET /metrics (not the database)")
    for probe in (ready, live, c.get("startupProbe", {})):
        port = probe.get("httpGet", {}).get("port")
        check(port is None or port in ports, f"probe port {port} is a named container port")
    stop = " ".join(c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", []))
    check("kill -TERM 1" in stop and "kill -0 1" in stop, "preStop sends SIGTERM to palaver and waits for the drain")
    res = c.get("resources", {})
    check(res.get("requests") and res.get("requests") == res.get("limits"), "requests = limits (Guaranteed QoS)")
    for want, proto in (("https", "TCP"), ("quic", "UDP"), ("media", "UDP"), ("metrics", "TCP"), ("mesh", "UDP")):
        check(ports.get(want, {}).get("protocol", "TCP") == proto and want in ports, f"container port {want}/{proto}")
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    check(mounts.get("data") == "/var/lib/palaver", "the data directory (ledger spool) is on the volume claim")
    check(any(t["metadata"]["name"] == "data" for t in sts["spec"].get("volumeClaimTemplates", [])),
          "volumeClaimTemplates has data")

    pdbs = [p for p in by_kind.get("PodDisruptionBudget", [])
            if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
    check(len(pdbs) == 1 and pdbs[0]["spec"].get("maxUnavailable") == 1, "one PodDisruptionBudget, maxUnavailable 1")

    for svc in by_kind.get("Service", []):
        sel = svc["spec"].get("selector", {})
        if sel.items() <= labels.items():
            for p in svc["spec"]["ports"]:
                tp = p.get("targetPort")
                check(not isinstance(tp, str) or (tp in ports and ports[tp].get("protocol", "TCP") == p.get("protocol", "TCP")),
                      f"service {svc['metadata']['name']} port {p['name']} targets container port {tp} ({p.get('protocol', 'TCP')})")
    check(("Service", sts["spec"]["serviceName"]) in names, "the StatefulSet's governing Service exists")

    # Every Secret and ConfigMap the pods use is rendered, or provided by the operator.
    rendered_objects = {(k, base_name(n, [])) for (k, n) in names}
    used = set()
    for workload in by_kind.get("StatefulSet", []) + by_kind.get("Deployment", []):
        spec = workload["spec"]["template"]["spec"]
        for v in spec.get("volumes", []):
            if "secret" in v:
                used.add(("Secret", v["secret"]["secretName"]))
            if "configMap" in v:
                used.add(("ConfigMap", v["configMap"]["name"]))
        for cont in spec["containers"]:
            for e in cont.get("env", []):
                ref = e.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    used.add(("Secret", ref["secretKeyRef"]["name"]))
                if "configMapKeyRef" in ref:
                    used.add(("ConfigMap", ref["configMapKeyRef"]["name"]))
            for e in cont.get("envFrom", []):
                if "configMapRef" in e:
                    used.add(("ConfigMap", e["configMapRef"]["name"]))
                if "secretRef" in e:
                    used.add(("Secret", e["secretRef"]["name"]))
    for kind, name in sorted(used):
        ok = (kind, name) in rendered_objects or (kind == "Secret" and name in EXTERNAL_SECRETS[overlay])
        check(ok, f"{kind} {name} is used by a pod but neither rendered nor provided by the operator")
    for kind, name in sorted(rendered_objects):
        if kind == "Secret" and base_name(name, ["palaver-cluster"]) == "palaver-cluster":
            check(overlay != "prod", "prod must not carry the cluster Secret in the repository")

    # The palaver.toml template renders into a configuration palaver accepts.
    [config] = [m for m in by_kind.get("ConfigMap", []) if base_name(m["metadata"]["name"], ["palaver-config"]) == "palaver-config"]
    with tempfile.TemporaryDirectory() as tmp:
        template, renderer, out = (os.path.join(tmp, n) for n in ("palaver.toml", "render-config.sh", "out.toml"))
        open(template, "w").write(config["data"]["palaver.toml"])
        open(renderer, "w").write(config["data"]["render-config.sh"])
        env = dict(os.environ, HOST_IP="10.1.2.3", POD_NAME="palaver-0",
                   POSTGRES_URL="postgres://palaver:p%40ss@db:5432/palaver?sslmode=require",
                   REDIS_URL="redis://cache:6379")
        subprocess.run(["sh", renderer, template, out], env=env, check=True)
        cfg = tomllib.load(open(out, "rb"))
        cluster = cfg.get("cluster", {})
        check(cluster.get("postgres_url", "").startswith("postgres://") and cluster.get("redis_url") == "redis://cache:6379"
              and cluster.get("node_id") == "palaver-0", "[cluster] is rendered from the Secret and the pod name")
        check(cfg.get("media", {}).get("announced_ip") == "10.1.2.3", "media is announced on the host IP")
        check(cfg.get("server", {}).get("data_dir") == mounts.get("data"), "data_dir is the mounted volume")
        missing = dict(env)
        del missing["REDIS_URL"]
        r = subprocess.run(["sh", renderer, template, out + "2"], env=missing, capture_output=True, text=True)
        check(r.returncode != 0 and "REDIS_URL" in r.stderr, "a missing Secret key stops the render")
        if palaver:
            # palaver itself parses the rendered file (unknown keys are refused); the TLS
            # files it names only exist in the pod, so only parsing is asked here.
            r = subprocess.run([palaver, "--config", out, "print-config"], capture_output=True, text=True,
                               env={"PATH": os.environ.get("PATH", "")})
            check(r.returncode == 0, f"palaver print-config refused the rendered palaver.toml: {r.stderr.strip()}")

    if failures:
        for f in failures:
            print(f"k8s {overlay}: FAIL {f}")
        sys.exit(1)
    print(f"k8s {overlay}: {len(docs)} objects, policy OK" + (" (palaver accepts the config)" if palaver else ""))


main()
