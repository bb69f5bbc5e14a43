"""Fill in the placeholders of the IAM policy documents in aws/iam/ and write them ready for `aws iam`.

    python aws/render_policies.py --account 111122223333 --out var/iam

Values come from the CellGuard settings (the same CELLGUARD_* variables the code reads: lake, region, Glue
database, Athena workgroup and results location, DynamoDB table prefix, SageMaker role); options override them.
The account is taken from CELLGUARD_SAGEMAKER_ROLE_ARN when --account is not given. The XGBoost image's registry
account comes from the sagemaker SDK's bundled image table for the region, the same table the training code
resolves the image from. A placeholder without a value, or a value AWS would refuse, stops with its name.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from pipelines.config import Settings

IAM_FOLDER = Path(__file__).resolve().parent / "iam"
PLACEHOLDER = re.compile(r"\$\{(?P<name>[^}]*)\}")

# name -> what it stands for (aws/README.md lists the same)
PLACEHOLDERS: dict[str, str] = {
    "Partition": "AWS partition of the ARNs: aws, aws-cn or aws-us-gov (from the region)",
    "Region": "region of every CellGuard resource (CELLGUARD_AWS_REGION)",
    "Account": "12-digit id of the account holding the resources (from CELLGUARD_SAGEMAKER_ROLE_ARN)",
    "Bucket": "bucket of the lake (CELLGUARD_LAKE_URI s3://<Bucket>/<Prefix>)",
    "Prefix": "prefix of the lake in its bucket, without slashes at either end",
    "AthenaResultsBucket": "bucket of Athena's query results (CELLGUARD_ATHENA_OUTPUT, by default the lake's)",
    "AthenaResultsPrefix": "prefix of Athena's query results (by default <Prefix>/_athena)",
    "GlueDatabase": "Glue database of the lake's tables and views (CELLGUARD_GLUE_DATABASE)",
    "AthenaWorkgroup": "Athena workgroup the SQL runs in (CELLGUARD_ATHENA_WORKGROUP)",
    "TablePrefix": "prefix of the DynamoDB event store's tables (CELLGUARD_DYNAMODB_TABLE_PREFIX)",
    "SageMakerRoleName": "name of the SageMaker execution role, path included (CELLGUARD_SAGEMAKER_ROLE_ARN)",
    "ImageRegistryAccount": "AWS's ECR registry of the XGBoost framework image in the region (from the sagemaker SDK)",
}

_CHECKS: dict[str, tuple[str, str]] = {
    "Partition": (r"aws(-cn|-us-gov)?", "aws, aws-cn or aws-us-gov"),
    "Region": (r"[a-z]{2}(-[a-z]+)+-\d{1,2}", "a region name such as eu-west-1"),
    "Account": (r"\d{12}", "12 digits"),
    "ImageRegistryAccount": (r"\d{12}", "12 digits"),
    "Bucket": (r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "an S3 bucket name"),
    "AthenaResultsBucket": (r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "an S3 bucket name"),
    # A prefix is required: a lake at a bucket's root would need a policy over the whole bucket.
    # No * or ?: they would be wildcards in the policies.
    "Prefix": (r"[A-Za-z0-9!_.'()=-]+(/[A-Za-z0-9!_.'()=-]+)*", "a non-empty key prefix without a slash at either end"),
    "AthenaResultsPrefix": (r"[A-Za-z0-9!_.'()=-]+(/[A-Za-z0-9!_.'()=-]+)*",
                            "a non-empty key prefix without a slash at either end"),
    "GlueDatabase": (r"[a-z0-9_]{1,255}", "lowercase letters, digits and _"),
    "AthenaWorkgroup": (r"[A-Za-z0-9._-]{1,128}", "1-128 of A-Z a-z 0-9 . _ -"),
    "TablePrefix": (r"[A-Za-z0-9._-]{0,200}", "at most 200 of A-Z a-z 0-9 . _ -"),
    "SageMakerRoleName": (r"([\w+=,.@-]+/)*[\w+=,.@-]{1,64}", "an IAM role name, optionally after a path"),
}
assert _CHECKS.keys() == PLACEHOLDERS.keys(), "every placeholder is checked"


@dataclass(frozen=True)
class PolicyFile:
    """One policy document of aws/iam/: its file name and text with placeholders."""

    name: str
    text: str


def policy_files(folder: Path = IAM_FOLDER) -> list[PolicyFile]:
    """Every *.json document in aws/iam/, by name."""
    return [PolicyFile(path.name, path.read_text()) for path in sorted(folder.glob("*.json"))]


def placeholders_in(text: str) -> set[str]:
    """The placeholder names a document uses."""
    return {match["name"] for match in PLACEHOLDER.finditer(text)}


def check_values(values: Mapping[str, str]) -> None:
    """Refuse a value AWS would not accept in an ARN or a condition, naming the placeholder."""
    for name, value in values.items():
        if name not in _CHECKS:
            raise ValueError(f"no placeholder ${{{name}}}: the documents know {', '.join(sorted(PLACEHOLDERS))}")
        pattern, expected = _CHECKS[name]
        if not re.fullmatch(pattern, value):
            raise ValueError(f"${{{name}}} ({PLACEHOLDERS[name]}) must be {expected}, not {value!r}")


def render(document: PolicyFile, values: Mapping[str, str]) -> dict:
    """The document with every placeholder replaced, parsed; an unknown or unset placeholder raises naming it."""
    unknown = sorted(placeholders_in(document.text) - PLACEHOLDERS.keys())
    if unknown:
        raise ValueError(f"{document.name} uses unknown placeholders {unknown}: the renderer knows "
                         f"{sorted(PLACEHOLDERS)}")
    missing = sorted(placeholders_in(document.text) - values.keys())
    if missing:
        raise ValueError(f"{document.name} needs values for {missing} ({'; '.join(PLACEHOLDERS[m] for m in missing)})")
    check_values({name: values[name] for name in placeholders_in(document.text)})
    # Values pass their checks above, so none holds a quote or a backslash that could break the JSON.
    text = PLACEHOLDER.sub(lambda match: values[match["name"]], document.text)
    return json.loads(text)


def partition_of(region: str) -> str:
    """The ARN partition a region belongs to."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def image_registry_account(region: str, framework_version: str) -> str:
    """The ECR registry account of the XGBoost framework image for a region, from the sagemaker SDK's bundled table.

    Read as a file of the installed distribution: importing the SDK takes seconds and is not needed for a table."""
    table_file = next((f for f in metadata.distribution("sagemaker-core").files or []
                       if f.as_posix().endswith("image_uri_config/xgboost.json")), None)
    if table_file is None:
        raise ValueError("the sagemaker-core distribution has no image_uri_config/xgboost.json: reinstall requirements.txt")
    registries = json.loads(table_file.read_text())["training"]["versions"][framework_version]["registries"]
    if region not in registries:
        raise ValueError(f"no XGBoost {framework_version} image in region {region!r}: the SDK lists "
                         f"{', '.join(sorted(registries))}")
    return registries[region]


def split_s3_location(uri: str, what: str) -> tuple[str, str]:
    """(bucket, prefix without slashes at either end) of an s3:// location."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{what} must be s3://bucket/prefix for the AWS backend, not {uri!r}")
    return parsed.netloc, parsed.path.strip("/")


def values_from_settings(settings: Settings, account: str | None = None, region: str | None = None,
                         lake_uri: str | None = None, role_name: str | None = None) -> dict[str, str]:
    """Placeholder values from CellGuard settings (pipelines.config.Settings), with explicit overrides."""
    from pipelines.training.sagemaker_training import XGBOOST_FRAMEWORK_VERSION

    region = region or settings.aws_region
    if not region:
        raise ValueError("no region: set CELLGUARD_AWS_REGION or pass --region")
    bucket, prefix = split_s3_location(lake_uri or settings.lake_uri, "CELLGUARD_LAKE_URI")
    results = settings.athena_output if lake_uri is None else None
    results_bucket, results_prefix = (split_s3_location(results, "CELLGUARD_ATHENA_OUTPUT") if results
                                      else (bucket, f"{prefix}/_athena"))
    role_arn = settings.sagemaker_role_arn or ""
    role_match = re.fullmatch(r"arn:aws[a-z-]*:iam::(?P<account>\d{12}):role/(?P<name>.+)", role_arn)
    account = account or (role_match["account"] if role_match else None)
    if not account:
        raise ValueError("no account: pass --account or set CELLGUARD_SAGEMAKER_ROLE_ARN")
    return {
        "Partition": partition_of(region),
        "Region": region,
        "Account": account,
        "Bucket": bucket,
        "Prefix": prefix,
        "AthenaResultsBucket": results_bucket,
        "AthenaResultsPrefix": results_prefix,
        "GlueDatabase": settings.glue_database,
        "AthenaWorkgroup": settings.athena_workgroup,
        "TablePrefix": settings.dynamodb_table_prefix,
        "SageMakerRoleName": role_name or (role_match["name"] if role_match else "cellguard-sagemaker"),
        "ImageRegistryAccount": image_registry_account(region, XGBOOST_FRAMEWORK_VERSION),
    }


def main(argv: list[str] | None = None) -> int:
    """Render every document of aws/iam/ into --out, one JSON file each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the rendered documents")
    parser.add_argument("--account", help="account id (default: from CELLGUARD_SAGEMAKER_ROLE_ARN)")
    parser.add_argument("--region", help="region (default: CELLGUARD_AWS_REGION)")
    parser.add_argument("--lake-uri", help="s3://bucket/prefix of the lake (default: CELLGUARD_LAKE_URI)")
    parser.add_argument("--sagemaker-role-name", help="execution role name (default: from CELLGUARD_SAGEMAKER_ROLE_ARN, "
                                                      "else cellguard-sagemaker)")
    args = parser.parse_args(argv)
    from pipelines.config import load_settings

    try:
        values = values_from_settings(load_settings(), args.account, args.region, args.lake_uri,
                                      args.sagemaker_role_name)
        rendered = {document.name: render(document, values) for document in policy_files()}
    except ValueError as error:
        print(f"render_policies: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name, document in rendered.items():
        (args.out / name).write_text(json.dumps(document, indent=2) + "\n")
        print(f"{args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
