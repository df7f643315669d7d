"""Checks of deploy/ that no packaged tool does, run by scripts/checks/deploy.sh.

Subcommands (each prints what it checked and exits 1 on the first class of failure):

  crds FILE...        validate the custom resources (KEDA ScaledObject and TriggerAuthentication,
                      Prometheus-operator ServiceMonitor) against the small schemas below.
                      kubernetes-validate only knows the built-in kinds and skips CRDs with a
                      warning; these schemas pin the fields this project uses (required ones,
                      enums, and no unknown keys in `spec`), not the whole upstream CRD.
  unknown-kinds LOG   fail if kubernetes-validate skipped a kind that `crds` does not cover.
  consistency FILE    cross-check one rendered overlay (queue names, ports, grace period, ...).
  policies FILE...    structural check of IAM / bucket policies beyond "it parses".
  skips DIR           every checkov skip in DIR carries a reason.
"""

import json
import pathlib
import re
import sys

import jsonschema
import yaml

# ---------------------------------------------------------------- custom resources

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": _NAME, "namespace": _NAME},
}
_QUANTITY_STRING = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"}

SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {"name": _NAME, "kind": {"type": "string"}, "apiVersion": {"type": "string"},
                                   "envSourceContainerName": {"type": "string"}},
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {"type": "object"},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"name": {"type": "string"}, "behavior": {"type": "object"}},
                        },
                        "scalingModifiers": {"type": "object"},
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                            "authenticationRef": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name"],
                                "properties": {"name": _NAME, "kind": {"enum": ["TriggerAuthentication",
                                                                               "ClusterTriggerAuthentication"]}},
                            },
                        },
                        # The rabbitmq trigger as this project uses it (KEDA's rabbitmq scaler docs).
                        "if": {"properties": {"type": {"const": "rabbitmq"}}},
                        "then": {
                            "properties": {
                                "metadata": {
                                    "required": ["queueName", "mode", "value"],
                                    "properties": {
                                        "protocol": {"enum": ["auto", "amqp", "http"]},
                                        "mode": {"enum": ["QueueLength", "MessageRate", "DeliverGetRate",
                                                          "PublishedToDeliveredRatio",
                                                          "ExpectedQueueConsumptionTime"]},
                                        "value": _QUANTITY_STRING,
                                        "activationValue": _QUANTITY_STRING,
                                        "excludeUnacknowledged": {"enum": ["true", "false"]},
                                        "unsafeSsl": {"enum": ["true", "false"]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}

TRIGGER_AUTHENTICATION = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["parameter", "name", "key"],
                        "properties": {"parameter": {"type": "string"}, "name": _NAME, "key": {"type": "string"}},
                    },
                },
                "env": {"type": "array"},
                "podIdentity": {"type": "object"},
                "hashiCorpVault": {"type": "object"},
                "configMapTargetRef": {"type": "array"},
            },
        },
    },
}

SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "minProperties": 1,
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                                   "matchExpressions": {"type": "array"}},
                },
                "namespaceSelector": {"type": "object"},
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "targetPort": {"type": ["string", "integer"]},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h)$"},
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array"},
                            "metricRelabelings": {"type": "array"},
                        },
                    },
                },
            },
        },
    },
}

CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGER_AUTHENTICATION,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
}


def documents(path):
    with open(path, encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def check_crds(paths):
    errors, checked = [], 0
    for path in paths:
        for doc in documents(path):
            schema = CRD_SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
            if schema is None:
                continue
            checked += 1
            for error in jsonschema.Draft202012Validator(schema).iter_errors(doc):
                where = "/".join(str(part) for part in error.absolute_path) or "(document)"
                errors.append(f"{path}: {doc['kind']}/{doc.get('metadata', {}).get('name')}: {where}: {error.message}")
    for error in errors:
        print(f"  FAIL {error}")
    print(f"  {checked} custom resources checked against the CRD schemas, {len(errors)} problems")
    return not errors


def check_unknown_kinds(log_path):
    covered = {kind for (_, kind) in CRD_SCHEMAS}
    unknown = set()
    for line in pathlib.Path(log_path).read_text(encoding="utf-8").splitlines():
        match = re.search(r"Couldn't find schema for kind (\S+) with api version (\S+)", line)
        if match and match.group(1) not in covered:
            unknown.add(f"{match.group(2)} {match.group(1)}")
    for kind in sorted(unknown):
        print(f"  FAIL no schema at all for {kind}: add one to scripts/checks/deploy_manifests.py")
    return not unknown


# ---------------------------------------------------------------- rendered overlay

def check_consistency(path):
    docs = documents(path)
    # The webhook ingress (`archiver webhook`) has resources of its own, named archiver-webhook;
    # they are checked apart, below, and the rest is the worker's.
    webhook_docs = [doc for doc in docs if doc["metadata"]["name"].startswith("archiver-webhook")]
    by_kind = {}
    for doc in docs:
        if doc not in webhook_docs:
            by_kind.setdefault(doc["kind"], []).append(doc)
    problems = []

    def one(kind):
        found = by_kind.get(kind, [])
        if len(found) != 1:
            problems.append(f"expected exactly one {kind}, found {len(found)}")
            return None
        return found[0]

    deployment, config, scaled = one("Deployment"), one("ConfigMap"), one("ScaledObject")
    service, monitor, pdb, policy = one("Service"), one("ServiceMonitor"), one("PodDisruptionBudget"), one("NetworkPolicy")
    account, auth = one("ServiceAccount"), one("TriggerAuthentication")
    if problems:
        return report(problems)

    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    container = pod["spec"]["containers"][0]
    settings = dict(config["data"])
    for env in container.get("env", []):
        if "value" in env:
            settings[env["name"]] = env["value"]
    secret_refs = [env["valueFrom"]["secretKeyRef"] for env in container.get("env", [])
                   if "secretKeyRef" in env.get("valueFrom", {})]

    def expect(condition, message):
        if not condition:
            problems.append(message)

    def selects(selector, labels):
        return all(labels.get(key) == value for key, value in selector.items())

    # The pod uses the generated ConfigMap (kustomize renamed the reference with the hash).
    refs = [source["configMapRef"]["name"] for source in container.get("envFrom", []) if "configMapRef" in source]
    expect(config["metadata"]["name"] in refs, "the Deployment does not load the ConfigMap")
    # Draining must end before the kubelet's SIGKILL.
    drain = int(settings.get("ARCHIVER_DRAIN_SECS", "20"))
    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
    expect(grace > drain + 10, f"terminationGracePeriodSeconds {grace} must exceed ARCHIVER_DRAIN_SECS {drain} + 10")
    # Probes and scrapes reach the address the binary listens on.
    addr = settings.get("ARCHIVER_METRICS_ADDR", "127.0.0.1:9090")
    host, _, port = addr.rpartition(":")
    expect(host in ("0.0.0.0", "[::]"), f"ARCHIVER_METRICS_ADDR {addr} is not reachable from outside the pod")
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    for probe_name, probe_path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        probe = container.get(probe_name, {}).get("httpGet", {})
        expect(probe.get("path") == probe_path, f"{probe_name} must GET {probe_path}")
        probe_port = ports.get(probe.get("port"), probe.get("port"))
        expect(str(probe_port) == port, f"{probe_name} port {probe_port} is not the metrics port {port}")
    # Security posture the issue asks for.
    sc = container.get("securityContext", {})
    pod_sc = pod["spec"].get("securityContext", {})
    expect(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem must be true")
    expect(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation must be false")
    expect(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities must drop ALL")
    expect(pod_sc.get("runAsNonRoot") is True or sc.get("runAsNonRoot") is True, "runAsNonRoot must be true")
    expect((sc.get("seccompProfile") or pod_sc.get("seccompProfile", {})).get("type") == "RuntimeDefault",
           "seccompProfile must be RuntimeDefault")
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            expect(resource in container.get("resources", {}).get(kind, {}), f"resources.{kind}.{resource} missing")
    # Identity.
    expect(pod["spec"].get("serviceAccountName") == account["metadata"]["name"], "the pod must use the ServiceAccount")
    expect("eks.amazonaws.com/role-arn" in account["metadata"].get("annotations", {}),
           "the ServiceAccount needs eks.amazonaws.com/role-arn")
    # Scaling: the right Deployment, the right queue, a sane range.
    spec = scaled["spec"]
    expect(spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"], "ScaledObject targets another Deployment")
    expect("replicas" not in deployment["spec"], "the Deployment must not set replicas (KEDA owns them)")
    expect(2 <= spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100), "replicas: need 2 <= min <= max")
    for trigger in spec["triggers"]:
        if trigger["type"] != "rabbitmq":
            continue
        meta = trigger["metadata"]
        expect(meta["queueName"] == settings.get("ARCHIVER_QUEUE", "face-reports"),
               f"KEDA watches queue {meta['queueName']} but the worker consumes {settings.get('ARCHIVER_QUEUE')}")
        expect(meta.get("protocol") == "http" and meta.get("excludeUnacknowledged", "false") == "false",
               "the rabbitmq trigger must use protocol http and count unacknowledged messages")
        expect(meta.get("mode") == "QueueLength", "the rabbitmq trigger must scale on QueueLength")
        expect(trigger.get("authenticationRef", {}).get("name") == auth["metadata"]["name"],
               "the rabbitmq trigger must use the TriggerAuthentication")
    # Secrets referenced exist in the example Secret (when the overlay ships one).
    secrets = {s["metadata"]["name"]: set(s.get("stringData", {})) | set(s.get("data", {}))
               for s in by_kind.get("Secret", [])}
    refs = [(r["name"], r["key"], r.get("optional", False)) for r in secret_refs]
    refs += [(r["name"], r["key"], False) for r in auth["spec"].get("secretTargetRef", [])]
    for name, key, optional in refs:
        if name in secrets:
            expect(key in secrets[name], f"Secret {name} has no key {key}")
        elif secrets:
            expect(optional, f"no Secret {name} in the overlay")
    # Secrets reach the worker as files only (issue 13): no secret in an environment variable,
    # every *_FILE setting on a mounted Secret that has that key, and KEDA's Secret none of them.
    expect(not secret_refs, "the worker must read its secrets from files (*_FILE), not secretKeyRef variables")
    volumes = {v["name"]: v["secret"]["secretName"] for v in pod["spec"].get("volumes", []) if "secret" in v}
    mounted = {m["mountPath"].rstrip("/"): volumes[m["name"]] for m in container.get("volumeMounts", [])
               if m["name"] in volumes}
    for variable, value in settings.items():
        if not variable.endswith("_FILE"):
            continue
        folder, _, key = value.rpartition("/")
        secret = mounted.get(folder)
        expect(secret is not None, f"{variable} {value} is not in a mounted Secret")
        if secret in secrets:
            expect(key in secrets[secret], f"{variable}: Secret {secret} has no key {key}")
    for secret in set(mounted.values()):
        expect(secret in secrets or not secrets, f"no Secret {secret} in the overlay")
    for ref in auth["spec"].get("secretTargetRef", []):
        expect(ref["name"] not in mounted.values(),
               f"KEDA reads Secret {ref['name']}, which the worker mounts: give KEDA a Secret of its own")
    # Metrics reach Prometheus; disruptions and traffic rules select the worker pods.
    expect(selects(service["spec"]["selector"], pod_labels), "the metrics Service does not select the pods")
    expect(selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"].get("labels", {})),
           "the ServiceMonitor does not select the metrics Service")
    service_ports = {p.get("name") for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        expect(endpoint.get("port") in service_ports, f"ServiceMonitor port {endpoint.get('port')} not on the Service")
    expect(selects(pdb["spec"]["selector"]["matchLabels"], pod_labels), "the PodDisruptionBudget does not select the pods")
    expect(selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels), "the NetworkPolicy does not select the pods")
    expect(set(policy["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}, "the NetworkPolicy must restrict both ways")
    egress_ports = sorted({p["port"] for rule in policy["spec"].get("egress", []) for p in rule.get("ports", [])})
    expect(egress_ports == [53, 443, 5671, 5672], f"egress ports {egress_ports}: expected DNS, AMQP(S) and HTTPS only")
    problems += check_webhook(webhook_docs, config, secrets)
    namespaces = {doc["metadata"].get("namespace") for doc in docs if doc["kind"] != "Namespace"}
    expect(len(namespaces) == 1 and None not in namespaces, f"resources spread over namespaces {namespaces}")
    return report(problems, f"{path}: {len(docs)} resources cross-checked")


def check_webhook(docs, config, secrets):
    """The webhook's resources (issue 14): two replicas at least under an HPA on CPU, a Service
    the Ingress (with TLS) routes to, a PDB, and a NetworkPolicy that lets in only the ingress
    controller and Prometheus and lets out only DNS and the broker."""
    problems = []
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)

    def expect(condition, message):
        if not condition:
            problems.append(f"webhook: {message}")

    kinds = ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Ingress",
             "ServiceAccount")
    for kind in kinds:
        expect(len(by_kind.get(kind, [])) == 1, f"expected exactly one {kind}, found {len(by_kind.get(kind, []))}")
    if problems:
        return problems
    deployment, service, hpa, pdb, policy, ingress, account = (by_kind[kind][0] for kind in kinds)
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    container = pod["spec"]["containers"][0]
    settings = dict(config["data"])
    settings.update({env["name"]: env["value"] for env in container.get("env", []) if "value" in env})

    def selects(selector):
        return all(labels.get(key) == value for key, value in selector.items())

    expect(container.get("args") == ["webhook"], "the container must run `archiver webhook`")
    expect(pod["spec"].get("serviceAccountName") == account["metadata"]["name"], "the pod must use its ServiceAccount")
    # Listeners reachable from outside the pod, on the ports the Service names.
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    for variable, name in (("ARCHIVER_WEBHOOK_ADDR", "webhook"), ("ARCHIVER_METRICS_ADDR", "metrics")):
        host, _, port = settings.get(variable, "127.0.0.1:0").rpartition(":")
        expect(host in ("0.0.0.0", "[::]"), f"{variable} is not reachable from outside the pod")
        expect(str(ports.get(name)) == port, f"{variable} port {port} is not the container port {name}")
    for probe_name, probe_path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        probe = container.get(probe_name, {}).get("httpGet", {})
        expect(probe.get("path") == probe_path and probe.get("port") == "metrics", f"{probe_name} must GET {probe_path}")
    # The tenants file (webhook secrets) is a mounted Secret.
    mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
    tenants = settings.get("ARCHIVER_TENANTS_FILE", "")
    expect(any(tenants.startswith(m.rstrip("/") + "/") for m in mounts), "ARCHIVER_TENANTS_FILE is not on a mounted volume")
    drain = int(settings.get("ARCHIVER_DRAIN_SECS", "20"))
    expect(pod["spec"].get("terminationGracePeriodSeconds", 30) > drain + 10, "the grace period must exceed the drain + 10")
    sc = container.get("securityContext", {})
    expect(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
           and sc.get("capabilities", {}).get("drop") == ["ALL"], "the container's securityContext is not locked down")
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            expect(resource in container.get("resources", {}).get(kind, {}), f"resources.{kind}.{resource} missing")
    expect(not any("secretKeyRef" in env.get("valueFrom", {}) for env in container.get("env", [])),
           "secrets must be mounted files, never environment variables")
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    for volume in volumes.values():
        secret = volume.get("secret")
        if secret and secret["secretName"] in secrets:
            for item in secret.get("items", []):
                expect(item["key"] in secrets[secret["secretName"]], f"Secret {secret['secretName']} has no key {item['key']}")
    for variable, value in settings.items():
        if variable.endswith("_FILE") and value.startswith("/"):
            expect(any(value.startswith(m.rstrip("/") + "/") for m in mounts), f"{variable} is not on a mounted volume")
    # Scaling: the HPA owns the count (two at least), on CPU.
    expect("replicas" not in deployment["spec"], "the Deployment must not set replicas (the HPA owns them)")
    spec = hpa["spec"]
    expect(spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"], "the HPA targets another Deployment")
    expect(2 <= spec.get("minReplicas", 1) <= spec["maxReplicas"], "the HPA needs 2 <= minReplicas <= maxReplicas")
    expect(any(m.get("resource", {}).get("name") == "cpu" for m in spec.get("metrics", [])), "the HPA must scale on CPU")
    # Traffic: Ingress (TLS) -> Service -> pods; the PDB and the policy select the pods.
    expect(selects(service["spec"]["selector"]), "the Service does not select the webhook pods")
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    expect(bool(ingress["spec"].get("tls")), "the Ingress must terminate TLS")
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            expect(backend["name"] == service["metadata"]["name"], "the Ingress routes to another Service")
            expect(backend["port"].get("name") == "webhook" and "webhook" in service_ports,
                   "the Ingress must route to the Service's webhook port")
            expect(path["path"].startswith("/webhooks"), "the Ingress must expose /webhooks/ only")
    expect(selects(pdb["spec"]["selector"]["matchLabels"]), "the PodDisruptionBudget does not select the webhook pods")
    expect(selects(policy["spec"]["podSelector"]["matchLabels"]), "the NetworkPolicy does not select the webhook pods")
    expect(set(policy["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}, "the NetworkPolicy must restrict both ways")
    ingress_ports = sorted({p["port"] for rule in policy["spec"].get("ingress", []) for p in rule.get("ports", [])})
    expect(ingress_ports == [8080, 9090], f"ingress ports {ingress_ports}: expected the webhook and metrics ports only")
    expect(all(rule.get("from") for rule in policy["spec"].get("ingress", [])), "every ingress rule must name its sources")
    egress_ports = sorted({p["port"] for rule in policy["spec"].get("egress", []) for p in rule.get("ports", [])})
    expect(egress_ports == [53, 5671, 5672], f"egress ports {egress_ports}: expected DNS and AMQP(S) only")
    return problems


def report(problems, success=""):
    for problem in problems:
        print(f"  FAIL {problem}")
    if not problems and success:
        print(f"  {success}")
    return not problems


# ---------------------------------------------------------------- AWS policies

def check_policies(paths):
    problems = []
    for path in paths:
        doc = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
        if "Statement" not in doc:
            continue  # lifecycle and encryption configurations: parsing is the check
        if doc.get("Version") != "2012-10-17":
            problems.append(f"{path}: Version must be 2012-10-17")
        sids = [s.get("Sid") for s in doc["Statement"]]
        if len(set(sids)) != len(sids):
            problems.append(f"{path}: duplicate Sid")
        for statement in doc["Statement"]:
            sid = statement.get("Sid", "?")
            for field in ("Effect", "Action", "Resource"):
                if field not in statement:
                    problems.append(f"{path}: {sid}: no {field}")
            if statement.get("Effect") not in ("Allow", "Deny"):
                problems.append(f"{path}: {sid}: Effect must be Allow or Deny")
            actions = statement.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            # Least privilege: wildcards only in Deny statements.
            if statement.get("Effect") == "Allow" and any("*" in action for action in actions):
                problems.append(f"{path}: {sid}: wildcard action in an Allow")
            resources = statement.get("Resource", [])
            resources = [resources] if isinstance(resources, str) else resources
            if statement.get("Effect") == "Allow" and "*" in resources:
                problems.append(f"{path}: {sid}: Allow on every resource")
    return report(problems, f"{len(paths)} JSON documents: policy structure ok")


# ---------------------------------------------------------------- checkov skips

def check_skips(root):
    problems, count = [], 0
    for path in sorted(pathlib.Path(root).rglob("*")):
        if not path.is_file() or path.suffix not in ("", ".yaml", ".yml", ".json") and path.name != "Dockerfile":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for match in re.finditer(r"checkov:skip=([A-Z0-9_]+)(:?)(.*)", line):
                count += 1
                if not match.group(2) or len(match.group(3).strip()) < 10:
                    problems.append(f"{path}:{number}: skip of {match.group(1)} without a reason")
            match = re.search(r"checkov\.io/skip\d+:\s*([A-Z0-9_]+)(=?)(.*)", line)
            if match:
                count += 1
                if not match.group(2) or len(match.group(3).strip()) < 10:
                    problems.append(f"{path}:{number}: skip of {match.group(1)} without a reason")
    return report(problems, f"{count} checkov skips, each with a reason")


def main(argv):
    command, args = argv[1], argv[2:]
    handlers = {
        "crds": lambda: check_crds(args),
        "unknown-kinds": lambda: check_unknown_kinds(args[0]),
        "consistency": lambda: check_consistency(args[0]),
        "policies": lambda: check_policies(args),
        "skips": lambda: check_skips(args[0]),
    }
    return 0 if handlers[command]() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
