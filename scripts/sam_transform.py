"""Expands the SAM template into plain CloudFormation, offline, as
CloudFormation's AWS::Serverless transform would, so that cfn-lint can also
check what is really deployed (circular dependencies, generated permissions).

Usage: sam_transform.py TEMPLATE > OUT.json

Local CodeUri paths become a placeholder S3 location, as `sam package` would
upload them; the template uses no managed policies, so none are resolved.
"""

import json
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

PLACEHOLDER_CODE = "s3://placeholder-bucket/function.zip"


class NoManagedPolicies:
    """The template names no managed policy: nothing to look up."""

    def load(self):
        return {}


def packaged(template):
    """Replaces local CodeUri paths (functions and Globals) like `sam package`."""
    holders = [template.get("Globals", {}).get("Function", {})]
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            holders.append(resource.setdefault("Properties", {}))
    for holder in holders:
        code = holder.get("CodeUri")
        if isinstance(code, str) and not code.startswith("s3://"):
            holder["CodeUri"] = PLACEHOLDER_CODE
    return template


def main():
    with open(sys.argv[1], encoding="utf-8") as source:
        template = yaml_parse(source.read())
    expanded = transform(packaged(template), {}, NoManagedPolicies())
    json.dump(expanded, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
