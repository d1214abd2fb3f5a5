#!/usr/bin/python3
"""Prints the OpenAPI v2 (swagger) definitions of the Kubernetes kinds deploy/*.yml use, and of
everything they reach, as the Kubernetes API's own Python client (Debian's python3-kubernetes,
generated from the API server's OpenAPI document) knows them: every field with its JSON name and
type, and the fields its setters refuse to leave unset (required). The stand-in API server serves
them to kubectl, which validates the manifests against them (DeployManifestTests)."""
import inspect
import json
import re

import kubernetes.client as k8s

# The kinds a manifest may hold: the client's class, and the group/version/kind an API server names it by.
ROOTS = {
    "V1Namespace": ("", "v1", "Namespace"),
    "V1ServiceAccount": ("", "v1", "ServiceAccount"),
    "V1ConfigMap": ("", "v1", "ConfigMap"),
    "V1ClusterRole": ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
    "V1ClusterRoleBinding": ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
    "V1DaemonSet": ("apps", "v1", "DaemonSet"),
}
PRIMITIVES = {
    "str": {"type": "string"},
    "int": {"type": "integer", "format": "int32"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    "object": {},  # IntOrString, RawExtension: the client has no closer type
}


def schema_of(type_name, pending):
    if type_name in PRIMITIVES:
        return dict(PRIMITIVES[type_name])
    m = re.fullmatch(r"list\[(.+)\]", type_name)
    if m:
        return {"type": "array", "items": schema_of(m.group(1), pending)}
    m = re.fullmatch(r"dict\(str, (.+)\)", type_name)
    if m:
        return {"type": "object", "additionalProperties": schema_of(m.group(1), pending)}
    pending.append(type_name)
    return {"$ref": "#/definitions/" + type_name}


def definition(name, pending):
    cls = getattr(k8s, name)
    required = re.findall(r"Invalid value for `(\w+)`, must not be `None`", inspect.getsource(cls))
    d = {
        "type": "object",
        "properties": {cls.attribute_map[f]: schema_of(t, pending) for f, t in cls.openapi_types.items()},
    }
    if required:
        d["required"] = [cls.attribute_map[f] for f in required]
    if name in ROOTS:
        group, version, kind = ROOTS[name]
        d["x-kubernetes-group-version-kind"] = [{"group": group, "kind": kind, "version": version}]
    return d


def main():
    definitions, pending = {}, list(ROOTS)
    while pending:
        name = pending.pop()
        if name not in definitions:
            definitions[name] = definition(name, pending)
    print(json.dumps({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "python3-kubernetes " + k8s.__version__},
                      "paths": {}, "definitions": definitions}, sort_keys=True))


main()
