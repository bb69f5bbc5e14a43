"""The IAM policies of aws/iam/ against the AWS calls the code makes: adding a call without a policy change fails here.

What it proves:
- every document parses, has Version 2012-10-17, uses only placeholders aws/render_policies.py knows, renders
  with nothing left over, names only IAM actions that exist (botocore's operation names, plus the few IAM-only
  actions listed below) and fits IAM's size limits;
- every AWS operation the code makes is allowed by the policy of the role that runs it, on the resource the code
  names. The operations are found by reading pipelines/, dags/ and plugins/ with `ast`: methods of boto3 clients
  (created with `aws_client("<service>", ...)` or `<session|boto3>.client("<service>")`, or handed in under the
  service's name), their paginators and waiters (botocore's models give each method's operation:
  `client.meta.method_to_api_mapping`), the awswrangler functions called (awswrangler's own source is read the
  same way for the Glue operations each reaches), the pyarrow S3 filesystem methods the lake uses, and the Glue
  and S3 work Athena does with the caller's credentials for each kind of statement the code submits. Resources
  come from the code: SageMaker names from its naming functions, DynamoDB tables and indexes from
  `table_definitions`, Glue tables and views from the catalog's definitions, lake keys from the zones' constants;
- which role runs what comes from the import graph: the workers run what the DAGs and the CLI reach, the API host
  what `pipelines.serving.api` reaches, less the exceptions listed with their reasons; the SageMaker execution
  role needs what the jobs and models the code creates read and write;
- least privilege: every action a policy grants is needed by some call (or listed as a deliberate extra with its
  reason), and the requests a role must not make are refused (the API host writing outside predictions/, any
  role outside the lake prefix, the Glue database, the workgroup, the `cellguard` SageMaker names; the execution
  role passed to another service).

What it cannot prove:
- the policies are evaluated here by a small evaluator (Allow and Deny, `*` and `?`, StringEquals, StringLike,
  ArnLike), not by AWS: service control policies, permission boundaries, bucket and KMS key policies and Lake
  Formation are not checked, and nothing here runs against live AWS;
- which IAM action and resource an operation needs, and what Athena and SageMaker do on the caller's behalf,
  follow AWS's documentation as written into the tables below (and pyarrow's S3 requests as recorded against a
  moto server), not an observation of AWS itself;
- the lake keys each role touches come from reading the code (the zone tables below), not from the scan;
- a client the scanner cannot attribute to a service fails the test, but calls made through getattr or strings
  are not seen.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import os
import re
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("pipelines", "dags", "plugins")  # plugins/ is on sys.path: its modules import as `cellguard_airflow…`

# ---------------------------------------------------------------------------------------------- the renderer


def _load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_policies", REPO / "aws" / "render_policies.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


renderer = _load_renderer()

ACCOUNT = "111122223333"  # the documentation account id AWS uses in examples
REGION = "eu-west-1"
SAMPLE_ENV = {
    "CELLGUARD_BACKEND": "aws",
    "CELLGUARD_LAKE_URI": "s3://example-fleet-lake/cellguard",
    "CELLGUARD_AWS_REGION": REGION,
    "CELLGUARD_SAGEMAKER_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/cellguard-sagemaker",
    "CELLGUARD_GLUE_DATABASE": "cellguard",
    "CELLGUARD_ATHENA_WORKGROUP": "cellguard",
    "CELLGUARD_DYNAMODB_TABLE_PREFIX": "cellguard-",
}
ROLE_FILES = {"workers": "workers.json", "api-host": "api-host.json", "sagemaker-execution": "sagemaker-execution.json"}
TRUST_FILE = "sagemaker-execution-trust.json"
MANAGED_POLICY_LIMIT = 6_144  # characters without whitespace (IAM quotas)
TRUST_POLICY_LIMIT = 2_048


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """CellGuard settings of a sample AWS deployment, read the way the code reads them."""
    from pipelines.config import load_settings

    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("CELLGUARD_")]:
            patch.delenv(name)
        for name, value in SAMPLE_ENV.items():
            patch.setenv(name, value)
        patch.setenv("CELLGUARD_HOME", str(tmp_path_factory.mktemp("home")))
        yield load_settings()


@pytest.fixture(scope="module")
def values(settings: Any) -> dict[str, str]:
    return renderer.values_from_settings(settings)


@pytest.fixture(scope="module")
def policies(values: dict[str, str]) -> dict[str, dict]:
    """Every document of aws/iam/, rendered for the sample deployment, by role (and `trust`)."""
    rendered = {document.name: renderer.render(document, values) for document in renderer.policy_files()}
    assert set(rendered) == {*ROLE_FILES.values(), TRUST_FILE}, "aws/iam/ holds exactly the documented policies"
    return {**{role: rendered[name] for role, name in ROLE_FILES.items()}, "trust": rendered[TRUST_FILE]}


# ---------------------------------------------------------------------------------------------- a policy evaluator


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def wildcard_match(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    """IAM's matching: `*` any run of characters (`/` included), `?` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


CONDITION_OPERATORS = {
    "StringEquals": lambda expected, actual: expected == actual,
    "StringLike": wildcard_match,
    "ArnLike": wildcard_match,
}


def conditions_hold(statement: dict, context: dict[str, str]) -> bool:
    """Every condition of a statement holds for the request's context (a key the request lacks fails it)."""
    for operator, keys in statement.get("Condition", {}).items():
        test = CONDITION_OPERATORS[operator]
        for key, expected in keys.items():
            if key not in context or not any(test(e, context[key]) for e in _as_list(expected)):
                return False
    return True


def allows(policy: dict, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """An identity policy allows the request: some Allow statement matches and no Deny statement does."""
    allowed = False
    for statement in policy["Statement"]:
        if not any(wildcard_match(p, action, case_sensitive=False) for p in _as_list(statement["Action"])):
            continue
        if not any(wildcard_match(p, resource) for p in _as_list(statement["Resource"])):
            continue
        if not conditions_hold(statement, context or {}):
            continue
        if statement["Effect"] == "Deny":
            return False
        allowed = True
    return allowed


@dataclass(frozen=True)
class Need:
    """One permission a request needs: an IAM action on every listed resource, with the request's condition keys."""

    action: str
    resources: tuple[str, ...]
    why: str
    context: tuple[tuple[str, str], ...] = ()

    def refused_by(self, policy: dict) -> list[str]:
        """The resources the policy does not allow this action on."""
        return [r for r in self.resources if not allows(policy, self.action, r, dict(self.context))]


# ---------------------------------------------------------------------------------------------- botocore's models

CLIENT_SERVICES = ("s3", "glue", "athena", "dynamodb", "sagemaker", "sagemaker-runtime")
# Services whose actions the policies name without the code calling them (SageMaker's execution role).
MODEL_ONLY_SERVICES = ("logs", "ecr", "cloudwatch", "sts", "iam")
# IAM actions that are no API operation of their service.
IAM_ONLY_ACTIONS = {"s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:ListMultipartUploadParts",
                    "dynamodb:ConditionCheckItem", "iam:PassRole"}


@functools.cache
def botocore_session() -> Any:
    import botocore.session

    return botocore.session.Session()


@functools.cache
def clients() -> dict[str, Any]:
    """A botocore client per service the code uses (never sends a request: fake keys, no endpoint is called)."""
    session = botocore_session()
    return {service: session.create_client(service, region_name=REGION, aws_access_key_id="unused",
                                           aws_secret_access_key="unused") for service in CLIENT_SERVICES}


def iam_prefix(service: str) -> str:
    """The IAM action prefix of a service (sagemaker-runtime's actions are `sagemaker:…`)."""
    return clients()[service].meta.service_model.signing_name


@functools.cache
def operations_by_prefix() -> dict[str, set[str]]:
    """Every API operation name, by IAM action prefix."""
    found: dict[str, set[str]] = defaultdict(set)
    for service, client in clients().items():
        found[iam_prefix(service)] |= set(client.meta.service_model.operation_names)
    for service in MODEL_ONLY_SERVICES:  # their IAM prefix is their botocore name (CloudWatch signs as `monitoring`)
        found[service] |= set(botocore_session().get_service_model(service).operation_names)
    return found


# ---------------------------------------------------------------------------------------------- reading the code


@dataclass(eq=False)
class SourceModule:
    """One Python module of the repository: its import name, path, syntax tree and the repository modules it imports."""

    name: str
    path: Path
    tree: ast.Module
    imports: set[str] = field(default_factory=set)

    @functools.cached_property
    def nodes(self) -> list[ast.AST]:
        """Every node of the tree, walked once."""
        return list(ast.walk(self.tree))


@functools.cache
def source_modules() -> dict[str, SourceModule]:
    """Every module under pipelines/, dags/ and plugins/ (plugins' under the names Airflow imports them by)."""
    modules = {}
    for root in SCANNED:
        base = REPO / root
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(REPO if root != "plugins" else base).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = SourceModule(name, path, ast.parse(path.read_text(), str(path)))
    for module in modules.values():
        for node in module.nodes:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                     if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            module.imports |= {n for n in names if n in modules}
    return modules


def reachable(entries: list[str], cut: set[str] = frozenset()) -> set[str]:
    """Modules imported, directly or not, from the entry modules (at any depth of the code: task-level imports
    count), never going through a `cut` module."""
    modules, seen, todo = source_modules(), set(), list(entries)
    while todo:
        name = todo.pop()
        if name in seen or name in cut:
            continue
        seen.add(name)
        todo.extend(modules[name].imports)
    return seen


def created_service(node: ast.AST) -> str | None:
    """The service of a client-creating call: `aws_client("glue", …)`, `boto3.client("s3")`, `session.client("s3")`."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    first, func = node.args[0], node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if name in ("aws_client", "client") and isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


def receiver_key(node: ast.AST) -> str | None:
    """What a receiver is called: `s3` for `s3`, `client` for `self.client`."""
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


@functools.cache
def services_created_in(module: SourceModule) -> frozenset[str]:
    return frozenset(service for node in module.nodes if (service := created_service(node)))


def assigned_services(module: SourceModule) -> dict[str, set[str]]:
    """Receiver names bound to a created client in this module: by assignment, keyword argument or alias."""
    found: dict[str, set[str]] = defaultdict(set)
    pairs: list[tuple[ast.AST, ast.AST]] = []
    for node in module.nodes:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs += list(zip(target.elts, node.value.elts, strict=False))
                else:
                    pairs.append((target, node.value))
        elif isinstance(node, ast.keyword) and node.arg:
            pairs.append((ast.Name(node.arg), node.value))
    created = [{s for n in ast.walk(value) if (s := created_service(n))} for _, value in pairs]
    for _ in range(3):  # aliases of aliases: `client = self._s3_client`
        for (target, value), services in zip(pairs, created, strict=True):
            if not services and receiver_key(value) in found:
                services = found[receiver_key(value)]
            if services and (key := receiver_key(target)):
                found[key] |= services
    return found


def non_clients(module: SourceModule) -> set[str]:
    """Names that are certainly no AWS client: imports, and module-level values made by other calls (a regex)."""
    names = {alias.asname or alias.name.split(".")[0] for node in module.nodes
             if isinstance(node, ast.Import | ast.ImportFrom) for alias in node.names}
    for node in module.tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and created_service(node.value) is None:
            names |= {key for target in node.targets if (key := receiver_key(target))}
    return names


def awswrangler_aliases(module: SourceModule) -> set[str]:
    return {alias.asname or alias.name for node in module.nodes if isinstance(node, ast.Import)
            for alias in node.names if alias.name == "awswrangler"}


def attribute_path(node: ast.AST) -> tuple[str, ...] | None:
    """`wr.catalog.create_database` as ("wr", "catalog", "create_database"); None if not a dotted name."""
    if isinstance(node, ast.Name):
        return (node.id,)
    if isinstance(node, ast.Attribute) and (head := attribute_path(node.value)):
        return (*head, node.attr)
    return None


SERVICE_NAMED_RECEIVERS = {"s3": "s3", "glue": "glue", "athena": "athena", "dynamodb": "dynamodb",
                           "sagemaker": "sagemaker", "runtime": "sagemaker-runtime"}


@dataclass(frozen=True)
class AwsCall:
    """One AWS operation the code makes: where, on which service (boto3's name), which operation."""

    module: str
    line: int
    service: str
    operation: str

    def __str__(self) -> str:
        return f"{self.service} {self.operation} ({self.module}:{self.line})"


class UnattributedCall(AssertionError):
    """A call the scanner cannot tie to one AWS service: name the client after its service or create it here."""


def operations_named(method: str, args: list[ast.expr]) -> dict[str, str]:
    """The operation each client service would run for `<client>.<method>(args)` (paginators and waiters too)."""
    found = {}
    text = args[0].value if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str) else None
    for service, client in clients().items():
        methods = client.meta.method_to_api_mapping
        if method == "get_paginator" and text in methods and client.can_paginate(text):
            found[service] = methods[text]
        elif method == "get_waiter" and text and text in client.waiter_names:
            found[service] = client.get_waiter(text).config.operation
        elif method in methods:
            found[service] = methods[method]
    return found


def boto3_calls(module: SourceModule) -> list[AwsCall]:
    """Every boto3 client operation a module names, called or passed on (`write = client.put_item`)."""
    modules = source_modules()
    nearby = services_created_in(module).union(*(services_created_in(modules[m]) for m in module.imports))
    skip, wrangler = non_clients(module), awswrangler_aliases(module)
    assigned = None
    called_funcs = {id(node.func) for node in module.nodes if isinstance(node, ast.Call)}
    calls = []
    for node in module.nodes:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attribute, args = node.func, node.args
        elif isinstance(node, ast.Attribute) and id(node) not in called_funcs:
            attribute, args = node, []
        else:
            continue
        operations = operations_named(attribute.attr, args)
        receiver = attribute.value
        path = attribute_path(receiver)
        if not operations or (path and path[0] in wrangler):
            continue
        if isinstance(receiver, ast.Call):
            service = created_service(receiver)
            if service is None:
                continue  # a method of something a call returned (a hook, a regex): not a client this code made
        elif (key := receiver_key(receiver)) in skip:
            continue
        elif key in SERVICE_NAMED_RECEIVERS:
            service = SERVICE_NAMED_RECEIVERS[key]
        elif len((assigned := assigned if assigned is not None else assigned_services(module)).get(key, ())) == 1:
            (service,) = assigned[key]
        else:
            candidates = operations.keys() & nearby
            if len(candidates) != 1:
                raise UnattributedCall(
                    f"{module.path.relative_to(REPO)}:{node.lineno}: `{ast.unparse(attribute)}` could be "
                    f"{' or '.join(sorted(operations))}, and the module "
                    f"{'uses ' + ', '.join(sorted(candidates)) if candidates else 'creates no such client'}: name the "
                    f"client after its service ({', '.join(SERVICE_NAMED_RECEIVERS)}) or create it in this module")
            (service,) = candidates
        if service not in operations:
            raise UnattributedCall(f"{module.path.relative_to(REPO)}:{node.lineno}: a {service} client has no "
                                   f"method {attribute.attr}")
        calls.append(AwsCall(module.name, node.lineno, service, operations[service]))
    return calls


# awswrangler's functions are read from its own source: the Glue operations each reaches, by function name, within
# the package of the function (its catalog functions hold their Glue client as `client_glue`).
@functools.cache
def _wrangler_functions(package: str) -> dict[str, tuple[set[str], set[str]]]:
    """Per function of an awswrangler package: the Glue client methods it calls, and the functions it calls."""
    location = Path(importlib.util.find_spec("awswrangler").origin).parent  # found, not imported (seconds)
    functions: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for path in (location / package).glob("*.py"):
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef):
                continue
            methods, called = functions[function.name]
            for node in ast.walk(function):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                if isinstance(func, ast.Attribute) and receiver_key(func.value) == "client_glue":
                    if func.attr == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                        methods.add(node.args[0].value)
                    else:
                        methods.add(func.attr)
                called.add(receiver_key(func) or "")
                for keyword in node.keywords:  # _utils.try_it(f=_overwrite_table, …)
                    if keyword.arg == "f" and (callee := receiver_key(keyword.value)):
                        (methods if isinstance(keyword.value, ast.Attribute) else called).add(callee)
    return functions


def awswrangler_operations(function_path: tuple[str, ...]) -> set[str]:
    """The Glue operations an awswrangler function such as ("catalog", "create_database") reaches."""
    package, name = function_path[0], function_path[-1]
    functions = _wrangler_functions(package)
    seen, todo, methods = set(), [name], set()
    while todo:
        current = todo.pop()
        if current in seen or current not in functions:
            continue
        seen.add(current)
        methods |= functions[current][0]
        todo.extend(functions[current][1])
    mapping = clients()["glue"].meta.method_to_api_mapping
    return {mapping[m] for m in methods if m in mapping}


def awswrangler_calls(module: SourceModule) -> list[AwsCall]:
    """The Glue operations of every awswrangler function a module calls."""
    aliases, calls = awswrangler_aliases(module), []
    if not aliases:
        return calls
    for node in module.nodes:
        if isinstance(node, ast.Call) and (path := attribute_path(node.func)) and path[0] in aliases:
            operations = awswrangler_operations(path[1:])
            assert operations, (f"{module.path.relative_to(REPO)}:{node.lineno}: awswrangler's {'.'.join(path[1:])} "
                                f"reaches no Glue operation this test can find: read its source and extend the scan")
            calls += [AwsCall(module.name, node.lineno, "glue", op) for op in sorted(operations)]
    return calls


# pyarrow's S3 filesystem, method by method: the S3 requests it sends (recorded against a moto server with
# pyarrow 25: a write is a multipart upload, a delete puts a marker for the parent folder, looking up a missing
# key lists `<key>/`).
PYARROW_S3_METHODS = {
    "get_file_info": ("s3:GetObject", "s3:ListBucket"),
    "open_input_stream": ("s3:GetObject",),
    "open_input_file": ("s3:GetObject",),
    "open_output_stream": ("s3:PutObject", "s3:AbortMultipartUpload"),
    "delete_file": ("s3:GetObject", "s3:DeleteObject", "s3:PutObject", "s3:ListBucket"),
    "create_dir": ("s3:PutObject",),
    "move": ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"),
}


def pyarrow_methods(module: SourceModule) -> set[str]:
    """The S3 filesystem methods a module uses: `<lake>.fs.<method>(…)`, and reads given `filesystem=<lake>.fs`."""
    found = set()
    for node in module.nodes:
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute) and receiver_key(node.func.value) == "fs":
            found.add(node.func.attr)
        if any(k.arg == "filesystem" and receiver_key(k.value) == "fs" for k in node.keywords):
            found.add("open_input_file")
    return found


@functools.cache
def aws_calls() -> dict[str, list[AwsCall]]:
    """Every AWS operation of every module that makes one, by module."""
    found = {}
    for name, module in source_modules().items():
        calls = boto3_calls(module) + awswrangler_calls(module)
        if calls:
            found[name] = calls
    return found


# ---------------------------------------------------------------------------------------------- roles


WORKER_ENTRIES = sorted(m for m in source_modules() if m.startswith("dags.")) + ["pipelines.cli"]
ROLE_ENTRIES = {
    # `cellguard serve-api` is the CLI's, but it runs on the API host with the API host's role.
    "workers": (WORKER_ENTRIES, {"pipelines.serving.api"}),
    "api-host": (["pipelines.serving.api"], set()),
}
# Modules a role reaches by import but whose AWS calls it never makes, with the reason.
NOT_RUN_BY = {
    "api-host": {
        "pipelines.serving.sagemaker_deploy": "the API imports endpoint_name() from it; deploying is bms_training's",
        "pipelines.training.sagemaker_training": "reached through sagemaker_deploy and the training pipeline's "
                                                 "feature lists; the API never trains",
    },
}
# Operations of modules a role runs that it still never makes, with the reason.
OPERATIONS_NOT_MADE_BY = {
    "api-host": {
        ("dynamodb", "CreateTable"): "the event store's tables exist before the API starts: the workers create them "
                                     "(aws/README.md); the API host only finds them ACTIVE",
    },
}
# Modules no entry point reaches yet, and the role that will run them.
NOT_WIRED_YET: dict[str, str] = {}
# Grants a policy holds that no scanned call needs, with the reason.
DELIBERATE_EXTRAS = {
    "workers": {
        "athena:StopQueryExecution": "lets an operator cancel a runaway feature query with the workers' credentials",
        "athena:GetWorkGroup": "read-only, one workgroup: clients check the workgroup's result-location enforcement",
    },
}


def modules_run_by(role: str) -> set[str]:
    """The modules with AWS calls a role runs."""
    entries, cut = ROLE_ENTRIES[role]
    run = reachable(entries, cut) - NOT_RUN_BY.get(role, {}).keys()
    run |= {module for module, owner in NOT_WIRED_YET.items() if owner == role}
    return run & aws_calls().keys()


def calls_made_by(role: str) -> list[AwsCall]:
    excluded = OPERATIONS_NOT_MADE_BY.get(role, {})
    return [call for module in sorted(modules_run_by(role)) for call in aws_calls()[module]
            if (call.service, call.operation) not in excluded]


# ---------------------------------------------------------------------------------------------- names from the code

RUN_ID = "scheduled__2026-01-02T03:00:00+00:00"  # an Airflow run id: colons and a plus sign
DAY = date(2026, 1, 2)
DIGEST = "0123456789abcdef" * 4


@dataclass(frozen=True)
class Names:
    """The AWS names and lake keys the code derives, for the sample deployment."""

    settings: Any
    values: dict[str, str]

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"

    @property
    def version(self) -> str:
        from pipelines.training.registry import new_version_id

        return new_version_id(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "signals6", DIGEST)

    def sagemaker(self, kind: str) -> tuple[str, ...]:
        """ARNs of the SageMaker resources of one kind the code names."""
        from pipelines.features.window_signals import FEATURE_SETS
        from pipelines.serving import batch_transform as transform
        from pipelines.serving import sagemaker_deploy as deploy
        from pipelines.training import sagemaker_training as training

        training_job = training.training_job_base_name(RUN_ID, "full", DIGEST)
        names = {
            "training-job": [training_job, training.job_names(training_job)[-1]],
            "model": [deploy.model_name(self.version)],
            "endpoint-config": [deploy.endpoint_config_name(self.version, RUN_ID)],
            "endpoint": [deploy.endpoint_name(feature_set) for feature_set in FEATURE_SETS],
            "transform-job": [transform.transform_job_base_name(RUN_ID, deploy.model_name(self.version), DIGEST)],
        }[kind]
        return tuple(self.arn("sagemaker", f"{kind}/{name}") for name in names)

    def glue_tables(self) -> tuple[str, ...]:
        from pipelines.features.athena_runner import TEMP_TABLE_PREFIX, run_name
        from pipelines.storage.glue_catalog import TABLES, VIEWS

        temp = f"{TEMP_TABLE_PREFIX}_{run_name(RUN_ID).replace('-', '_')}_{DAY:%Y%m%d}"
        names = [t.name for t in TABLES] + [v.name for v in VIEWS] + [temp]
        return tuple(self.arn("glue", f"table/{self.settings.glue_database}/{name}") for name in names)

    def glue_database(self) -> tuple[str, ...]:
        return self.arn("glue", "catalog"), self.arn("glue", f"database/{self.settings.glue_database}")

    def dynamodb(self, with_indexes: bool = False) -> tuple[str, ...]:
        from pipelines.storage.dynamodb_event_store import table_definitions

        arns = []
        for table, definition in table_definitions(self.settings.dynamodb_table_prefix).items():
            arns.append(self.arn("dynamodb", f"table/{table}"))
            if with_indexes:
                arns += [self.arn("dynamodb", f"table/{table}/index/{index['IndexName']}")
                         for index in definition.get("GlobalSecondaryIndexes", [])]
        return tuple(arns)

    def workgroup(self) -> str:
        return self.arn("athena", f"workgroup/{self.settings.athena_workgroup}")

    def execution_role(self) -> str:
        return self.settings.sagemaker_role_arn

    def lake_object(self, key: str) -> str:
        return f"arn:aws:s3:::{self.values['Bucket']}/{self.values['Prefix']}/{key}"

    def lake_bucket(self) -> str:
        return f"arn:aws:s3:::{self.values['Bucket']}"

    def lake_prefix(self, key: str) -> str:
        """The s3:prefix of a listing below a lake key."""
        return f"{self.values['Prefix']}/{key}"

    def results(self, name: str) -> str:
        return f"arn:aws:s3:::{self.values['AthenaResultsBucket']}/{self.values['AthenaResultsPrefix']}/{name}"


@pytest.fixture(scope="module")
def names(settings: Any, values: dict[str, str]) -> Names:
    return Names(settings, values)


# Lake keys per module whose own boto3 S3 calls touch one place (the lake's generic reads are checked per zone).
MODULE_S3_KEYS = {
    "pipelines.features.athena_runner": "_athena/features/{run}/2026-01-02_2026-01-02/daily/dt=2026-01-02/part-0",
    "pipelines.ingest.data_docs_mirror": "reports/data_docs/index.html",
    "pipelines.storage.lake": "models/bms/champions/full.json",
}
S3_OPERATION_ACTIONS = {"GetObject": "s3:GetObject", "HeadObject": "s3:GetObject", "PutObject": "s3:PutObject",
                        "DeleteObject": "s3:DeleteObject", "DeleteObjects": "s3:DeleteObject",
                        "ListObjectsV2": "s3:ListBucket", "AbortMultipartUpload": "s3:AbortMultipartUpload"}
TRANSACTION_ITEM_ACTIONS = {"Put": "dynamodb:PutItem", "Update": "dynamodb:UpdateItem",
                            "Delete": "dynamodb:DeleteItem", "ConditionCheck": "dynamodb:ConditionCheckItem"}
PASSES_ROLE = ("RoleArn", "ExecutionRoleArn")


def transaction_item_actions(module: str) -> set[str]:
    """The item actions a module puts in its transactions: dict literals keyed Put, Update, Delete, ConditionCheck."""
    return {TRANSACTION_ITEM_ACTIONS[key.value] for node in source_modules()[module].nodes
            if isinstance(node, ast.Dict) for key in node.keys
            if isinstance(key, ast.Constant) and key.value in TRANSACTION_ITEM_ACTIONS}


def sagemaker_resources(operation: str, names: Names) -> tuple[str, ...]:
    """The SageMaker resources an operation acts on (CreateEndpoint and UpdateEndpoint name a config too)."""
    for fragment, kind in (("TrainingJob", "training-job"), ("TransformJob", "transform-job"),
                           ("EndpointConfig", "endpoint-config"), ("Endpoint", "endpoint"), ("Model", "model")):
        if fragment in operation:
            extra = names.sagemaker("endpoint-config") if operation in ("CreateEndpoint", "UpdateEndpoint") else ()
            return names.sagemaker(kind) + extra
    raise AssertionError(f"no resource rule for sagemaker {operation}: add one to sagemaker_resources")


def needs_of(call: AwsCall, names: Names) -> list[Need]:
    """What one operation needs from IAM, on the resources the code names."""
    action = f"{iam_prefix(call.service)}:{call.operation}"
    why = str(call)
    if call.service in ("sagemaker", "sagemaker-runtime"):
        resources = sagemaker_resources(call.operation, names)
        needs = [Need(action, resources, why)]
        members = clients()[call.service].meta.service_model.operation_model(call.operation).input_shape.members
        if call.operation.startswith("Create") and "Tags" in members:
            needs.append(Need("sagemaker:AddTags", resources, f"{why}: tags on create"))
        if any(member in members for member in PASSES_ROLE):
            needs.append(Need("iam:PassRole", (names.execution_role(),), f"{why}: passes the execution role",
                              (("iam:PassedToService", "sagemaker.amazonaws.com"),)))
        return needs
    if call.service == "glue":
        if "Database" in call.operation:
            return [Need(action, names.glue_database(), why)]
        if "Table" in call.operation or "Partition" in call.operation:
            return [Need(action, names.glue_database() + names.glue_tables(), why)]
        raise AssertionError(f"no resource rule for glue {call.operation}")
    if call.service == "athena":
        needs = [Need(action, (names.workgroup(),), why)]
        return needs + (athena_needs(names) if call.operation == "StartQueryExecution" else [])
    if call.service == "dynamodb":
        if call.operation == "TransactWriteItems":  # no IAM action of its own: each item's action is checked
            return [Need(item_action, names.dynamodb(), why) for item_action in transaction_item_actions(call.module)]
        return [Need(action, names.dynamodb(with_indexes=call.operation == "Query"), why)]
    if call.service == "s3":
        assert call.module in MODULE_S3_KEYS, f"{call}: add the lake key its S3 calls touch to MODULE_S3_KEYS"
        key = MODULE_S3_KEYS[call.module].format(run=_run_name())
        if S3_OPERATION_ACTIONS.get(call.operation) == "s3:ListBucket":
            return [Need("s3:ListBucket", (names.lake_bucket(),), why,
                         (("s3:prefix", names.lake_prefix(key.rsplit("/", 1)[0] + "/")),))]
        assert call.operation in S3_OPERATION_ACTIONS, f"{call}: add its IAM action to S3_OPERATION_ACTIONS"
        needs = [Need(S3_OPERATION_ACTIONS[call.operation], (names.lake_object(key),), why)]
        if call.operation == "GetObject":  # a missing key answers 404 (NoSuchKey) only with ListBucket on it
            needs.append(Need("s3:ListBucket", (names.lake_bucket(),), f"{why}: NoSuchKey rather than AccessDenied",
                              (("s3:prefix", names.lake_prefix(key)),)))
        return needs
    raise AssertionError(f"no IAM rule for the {call.service} client ({call}): add one to needs_of")


def _run_name() -> str:
    from pipelines.features.athena_runner import run_name

    return run_name(RUN_ID)


# ---------------------------------------------------------------------------------------------- Athena on your behalf

# Athena reads and writes S3 and the Glue catalog with the caller's credentials. Kinds of statement the code may
# submit (found in its string constants, upper case), and what each needs beyond reading the tables.
STATEMENT_KINDS = re.compile(r"\b(CREATE(?: OR REPLACE)?(?: EXTERNAL)? (?:TABLE|VIEW|DATABASE)|DROP (?:TABLE|VIEW|DATABASE)"
                             r"|ALTER TABLE|INSERT INTO|UNLOAD|MSCK REPAIR TABLE|DELETE FROM|MERGE INTO|VACUUM|OPTIMIZE)\b")
KNOWN_STATEMENTS = {"CREATE TABLE", "CREATE OR REPLACE VIEW", "UNLOAD"}


def statement_kinds(module: str) -> set[str]:
    """The kinds of SQL statement a module's strings hold (docstrings left out)."""
    nodes = source_modules()[module].nodes
    docstrings = {id(node.body[0].value) for node in nodes
                  if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return {match for node in nodes
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            for match in STATEMENT_KINDS.findall(node.value)}


def athena_submitters() -> set[str]:
    """Modules that hand SQL to Athena: they call run_statement (pipelines/storage/athena.py) or start_query_execution."""
    return {name for name, module in source_modules().items() for node in module.nodes
            if isinstance(node, ast.Call) and receiver_key(node.func) in ("run_statement", "start_query_execution")}


def athena_needs(names: Names) -> list[Need]:
    """What Athena does with the caller's credentials for the statements the code submits."""
    from pipelines.features.athena_runner import STAGING_PREFIX
    from pipelines.storage.glue_catalog import TABLES, VIEWS

    kinds = set().union(*(statement_kinds(module) for module in athena_submitters()))
    unknown = kinds - KNOWN_STATEMENTS
    assert not unknown, f"the code submits {sorted(unknown)} to Athena: add what Athena needs for them to athena_needs"
    why = "Athena on the caller's behalf"
    tables = tuple(r for r in names.glue_tables() if r.rsplit("/", 1)[1] in {t.name for t in TABLES})
    zone_keys = [f"{t.prefix}/dt={DAY}/part.parquet" if t.partitioned else f"{t.prefix}/part" for t in TABLES]
    results_bucket = f"arn:aws:s3:::{names.values['AthenaResultsBucket']}"
    needs = [
        Need("glue:GetDatabase", names.glue_database(), why),
        Need("glue:GetTable", names.glue_database() + tables, why),
        Need("s3:GetObject", tuple(names.lake_object(key) for key in zone_keys), f"{why}: reads the zones"),
        *(Need("s3:ListBucket", (names.lake_bucket(),), f"{why}: lists {key.rsplit('/', 1)[0]}/",
               (("s3:prefix", names.lake_prefix(key.rsplit("/", 1)[0] + "/")),)) for key in zone_keys),
        Need("s3:GetBucketLocation", (names.lake_bucket(), results_bucket), f"{why}: results and zones"),
        *(Need(action, (names.results("0000-query-id.csv"),), f"{why}: query results")
          for action in ("s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")),
        Need("s3:ListBucketMultipartUploads", (results_bucket,), f"{why}: query results"),
        Need("s3:ListBucket", (results_bucket,), f"{why}: query results",
             (("s3:prefix", f"{names.values['AthenaResultsPrefix']}/"),)),
    ]
    staging = f"{STAGING_PREFIX}/{_run_name()}/{DAY}_{DAY}/"
    if kinds & {"CREATE TABLE", "UNLOAD"}:  # both write below the run's staging prefix, which must be empty
        needs += [Need("s3:PutObject", (names.lake_object(f"{staging}daily/dt={DAY}/part-0"),), f"{why}: staging"),
                  Need("s3:ListBucket", (names.lake_bucket(),), f"{why}: staging is empty",
                       (("s3:prefix", names.lake_prefix(staging)),))]
    if "CREATE TABLE" in kinds:  # CTAS: a Glue table with a partition per date
        temp = names.glue_tables()[-1:]
        needs += [Need(a, names.glue_database() + temp, f"{why}: CTAS")
                  for a in ("glue:CreateTable", "glue:BatchCreatePartition")]
        # The UNLOAD reads the CTAS table, whose partitions are registered rather than projected.
        needs += [Need(a, names.glue_database() + temp, f"{why}: reads the CTAS table's partitions")
                  for a in ("glue:GetPartition", "glue:GetPartitions", "glue:BatchGetPartition")]
    if "CREATE OR REPLACE VIEW" in kinds:
        views = tuple(r for r in names.glue_tables() if r.rsplit("/", 1)[1] in {v.name for v in VIEWS})
        needs += [Need(a, names.glue_database() + views, f"{why}: views") for a in ("glue:CreateTable", "glue:UpdateTable")]
    return needs


# ---------------------------------------------------------------------------------------------- the lake, by zone

# What each role does with which lake keys through the Lake class (pyarrow's S3 filesystem, and one boto3 GET for
# whole-object reads), read from the code: the workers write every zone; the API host reads the registry, the daily
# zones and predictions, and writes predictions (api-*.parquet flushes, never a delete).
LAKE_METHOD_REQUESTS = {
    "list": lambda key: [("s3:ListBucket", key.rsplit("/", 1)[0] + "/")],
    "exists": lambda key: [("s3:GetObject", key), ("s3:ListBucket", f"{key}/")],
    "read": lambda key: [("s3:GetObject", key), ("s3:ListBucket", key)],  # a missing key answers 404, not 403
    "write": lambda key: [("s3:PutObject", key), ("s3:AbortMultipartUpload", key)],
    "delete": lambda key: [("s3:GetObject", key), ("s3:ListBucket", f"{key}/"), ("s3:DeleteObject", key),
                           ("s3:PutObject", key.rsplit("/", 1)[0] + "/")],
}


def zone_keys(names: Names) -> dict[str, str]:
    """A sample key of every zone of the lake, built with the code's own constants and key functions."""
    from pipelines.serving.batch_transform import TRANSFORM_PREFIX
    from pipelines.storage import alerts_zone, daily_zone, predictions_zone
    from pipelines.training import registry
    from pipelines.training.sagemaker_training import CHANNELS_PREFIX, CODE_PREFIX, OUTPUT_PREFIX
    from pipelines.training.train import ARCHIVE_FILE

    version = registry.version_key(names.version)
    return {
        "landing": "landing/simulator/fleet-0001.parquet",
        "quarantine": "quarantine/rows/object.parquet",
        "manifest": "_manifest/object.json",
        "frames": f"{daily_zone.FRAMES_PREFIX}/dt={DAY}/object.parquet",
        "daily": daily_zone.partition_key(daily_zone.DAILY_PREFIX, DAY),
        "cell_daily": daily_zone.partition_key(daily_zone.CELL_DAILY_PREFIX, DAY),
        "batch predictions": predictions_zone.partition_key(DAY, "batch", names.version),
        "api predictions": predictions_zone.partition_key(DAY, "api", f"request-{DIGEST[:16]}"),
        "alerts": alerts_zone.partition_key(DAY),
        "champion pointer": f"{registry.CHAMPIONS_PREFIX}signals6.json",
        "model card": f"{version}card.json",
        "model archive": f"{version}{ARCHIVE_FILE}",
        "model report": f"{version}{registry.REPORT_FOLDER}/index.html",
        "data docs": "reports/data_docs/index.html",
        "training code": f"{CODE_PREFIX}training-{DIGEST[:16]}.tar.gz",
        "inference code": f"{CODE_PREFIX}inference-{DIGEST[:16]}.tar.gz",
        "training channel": f"{CHANNELS_PREFIX}cellguard-full-job/train/train.parquet",
        "training output": f"{OUTPUT_PREFIX}cellguard-full-job/output/model.tar.gz",
        "transform input": f"{TRANSFORM_PREFIX}cellguard-transform-job/input/part-00000.csv",
        "transform output": f"{TRANSFORM_PREFIX}cellguard-transform-job/output/part-00000.csv.out",
    }


API_READS = ("daily", "cell_daily", "batch predictions", "api predictions", "champion pointer", "model card",
             "model archive", "model report")
EVERY_ZONE = None  # the workers: every method on every zone
LAKE_USE: dict[str, dict[str, tuple[str, ...]] | None] = {
    "workers": EVERY_ZONE,
    "api-host": {**{zone: ("list", "exists", "read") for zone in API_READS},
                 "api predictions": ("list", "exists", "read", "write")},
}
# What the API host must not do to the lake (method -> zones).
API_REFUSED = {"write": ("daily", "cell_daily", "frames", "champion pointer", "model card", "model archive",
                         "batch predictions", "alerts"),
               "delete": ("api predictions", "batch predictions", "daily"),
               "read": ("landing", "quarantine", "frames", "manifest", "training channel")}
REFUSED_ACTION = {"write": "s3:PutObject", "delete": "s3:DeleteObject", "read": "s3:GetObject"}


def lake_needs(role: str, names: Names) -> list[Need]:
    """The S3 requests a role's lake use sends, as IAM needs."""
    keys = zone_keys(names)
    use = LAKE_USE[role] if LAKE_USE[role] is not EVERY_ZONE else {zone: tuple(LAKE_METHOD_REQUESTS) for zone in keys}
    needs = []
    for zone, methods in use.items():
        for method in methods:
            for action, key in LAKE_METHOD_REQUESTS[method](keys[zone]):
                if action == "s3:ListBucket":
                    needs.append(Need(action, (names.lake_bucket(),), f"{method} {zone}",
                                      (("s3:prefix", names.lake_prefix(key)),)))
                else:
                    needs.append(Need(action, (names.lake_object(key),), f"{method} {zone}"))
    return needs


# ---------------------------------------------------------------------------------------------- what SageMaker needs


def execution_role_needs(names: Names) -> list[Need]:
    """What the execution role needs for the jobs and models the workers create (from the scan)."""
    from pipelines.training.sagemaker_training import XGBOOST_FRAMEWORK_VERSION

    created = {call.operation for call in calls_made_by("workers") if call.service == "sagemaker"}
    keys = zone_keys(names)
    image = (f"arn:aws:ecr:{REGION}:{renderer.image_registry_account(REGION, XGBOOST_FRAMEWORK_VERSION)}"
             f":repository/sagemaker-xgboost")

    def runs(why: str, kind: str, log_stream: str, reads: tuple[str, ...], writes: tuple[str, ...],
             lists: tuple[str, ...]) -> list[Need]:
        namespace = f"/aws/sagemaker/{kind}"
        group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{namespace}"
        return [
            *(Need("s3:GetObject", (names.lake_object(keys[zone]),), f"{why} reads {zone}") for zone in reads),
            *(Need(action, (names.lake_object(keys[zone]),), f"{why} writes {zone}")
              for zone in writes for action in ("s3:PutObject", "s3:AbortMultipartUpload")),
            *(Need("s3:ListBucket", (names.lake_bucket(),), f"{why} lists {zone}",
                   (("s3:prefix", names.lake_prefix(keys[zone].rsplit("/", 1)[0] + "/")),)) for zone in lists),
            Need("s3:GetBucketLocation", (names.lake_bucket(),), why),
            Need("logs:CreateLogGroup", (group,), why),
            *(Need(action, (f"{group}:log-stream:{log_stream}",), why)
              for action in ("logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams")),
            Need("cloudwatch:PutMetricData", ("*",), why, (("cloudwatch:namespace", namespace),)),
            *(Need(action, (image,), f"{why} pulls the XGBoost image")
              for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")),
            Need("ecr:GetAuthorizationToken", ("*",), why),
        ]

    needs = []
    if "CreateTrainingJob" in created:
        needs += runs("a training job", "TrainingJobs", "cellguard-full-job/algo-1-1767322800",
                      ("training code", "training channel"), ("training output",), ("training channel",))
    if "CreateModel" in created:
        needs += runs("an endpoint", "Endpoints", "AllTraffic/i-0123456789abcdef0",
                      ("model archive", "inference code"), (), ())
    if "CreateTransformJob" in created:
        needs += runs("a transform job", "TransformJobs", "cellguard-transform-job/i-0123456789abcdef0-1767322800",
                      ("transform input", "model archive", "inference code"), ("transform output",),
                      ("transform input",))
    assert needs, "the workers create no SageMaker job or model: is the scan still finding them?"
    return needs


def role_needs(role: str, names: Names) -> list[Need]:
    """Everything a role needs."""
    if role == "sagemaker-execution":
        return execution_role_needs(names)
    return [need for call in calls_made_by(role) for need in needs_of(call, names)] + lake_needs(role, names)


# ============================================================================================== tests: the documents


def test_every_document_parses_with_the_2012_version_and_known_placeholders() -> None:
    for document in renderer.policy_files():
        parsed = json.loads(document.text)
        assert parsed["Version"] == "2012-10-17", document.name
        assert parsed["Statement"], document.name
        used = renderer.placeholders_in(document.text)
        assert used <= renderer.PLACEHOLDERS.keys(), f"{document.name}: {sorted(used - renderer.PLACEHOLDERS.keys())}"
        sids = [s["Sid"] for s in parsed["Statement"]]
        assert len(sids) == len(set(sids)) and all(re.fullmatch(r"[A-Za-z0-9]+", s) for s in sids), document.name


def test_the_readme_documents_every_placeholder() -> None:
    readme = (REPO / "aws" / "README.md").read_text()
    assert all(f"${{{name}}}" in readme for name in renderer.PLACEHOLDERS)


def test_rendered_documents_have_no_placeholder_left_and_fit_iam_limits(policies: dict[str, dict]) -> None:
    for role, document in policies.items():
        text = json.dumps(document)
        assert "${" not in text, role
        assert ACCOUNT in text and "example-fleet-lake" in text or role == "trust"
        limit = TRUST_POLICY_LIMIT if role == "trust" else MANAGED_POLICY_LIMIT
        assert len(re.sub(r"\s", "", text)) <= limit, f"{role} is over IAM's {limit}-character limit"


def test_documents_use_only_what_the_evaluator_here_understands(policies: dict[str, dict]) -> None:
    for role, document in policies.items():
        for statement in document["Statement"]:
            assert statement["Effect"] in ("Allow", "Deny")
            assert not {"NotAction", "NotResource", "NotPrincipal"} & statement.keys(), (role, statement["Sid"])
            assert set(statement.get("Condition", {})) <= CONDITION_OPERATORS.keys(), (role, statement["Sid"])
            if role != "trust":
                assert "Principal" not in statement and statement["Resource"], (role, statement["Sid"])


def test_every_action_named_exists(policies: dict[str, dict]) -> None:
    operations = operations_by_prefix()
    for role, document in policies.items():
        for statement in document["Statement"]:
            for action in _as_list(statement["Action"]):
                prefix, _, name = action.partition(":")
                assert "*" not in action, f"{role}: {action}: name each action"
                assert action in IAM_ONLY_ACTIONS or name in operations[prefix], f"{role}: no IAM action {action}"


def test_a_wildcard_resource_only_where_the_action_has_no_resource_level_permissions(policies: dict[str, dict]) -> None:
    # AWS's authorization reference lists no resource type for these two.
    without_resources = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
    for role, document in policies.items():
        for statement in document["Statement"]:
            if "*" in _as_list(statement.get("Resource", [])):
                assert set(_as_list(statement["Action"])) <= without_resources, (role, statement["Sid"])


def test_the_renderer_refuses_what_aws_would(values: dict[str, str]) -> None:
    document = renderer.PolicyFile("x.json", '{"Version": "2012-10-17", "Statement": [{"Resource": "${Bucket}/${Prefix}"}]}')
    assert renderer.render(document, values)["Statement"][0]["Resource"] == "example-fleet-lake/cellguard"
    with pytest.raises(ValueError, match=r"unknown placeholders \['aws:username'\]"):
        renderer.render(renderer.PolicyFile("x.json", '{"a": "${aws:username}"}'), values)
    with pytest.raises(ValueError, match=r"needs values for \['Prefix'\]"):
        renderer.render(document, {"Bucket": "example-fleet-lake"})
    with pytest.raises(ValueError, match=r"\$\{Prefix\}.*not ''"):
        renderer.render(document, {**values, "Prefix": ""})
    with pytest.raises(ValueError, match=r"\$\{Account\}.*12 digits, not '1234'"):
        renderer.check_values({"Account": "1234"})
    with pytest.raises(ValueError, match="no XGBoost .* image in region 'xx-nowhere-1'"):
        renderer.image_registry_account("xx-nowhere-1", "3.2-0")
    assert renderer.partition_of("cn-north-1") == "aws-cn" and renderer.partition_of("us-gov-west-1") == "aws-us-gov"


def test_the_renderer_writes_every_document_from_the_settings(settings: Any, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SAMPLE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CELLGUARD_ATHENA_OUTPUT", "s3://example-query-results/athena")
    assert renderer.main(["--out", str(tmp_path)]) == 0
    workers = json.loads((tmp_path / "workers.json").read_text())
    resources = [r for s in workers["Statement"] for r in _as_list(s["Resource"])]
    assert "arn:aws:s3:::example-query-results/athena/*" in resources
    assert f"arn:aws:iam::{ACCOUNT}:role/cellguard-sagemaker" in resources
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*ROLE_FILES.values(), TRUST_FILE])
    monkeypatch.setenv("CELLGUARD_LAKE_URI", "s3://example-fleet-lake")
    monkeypatch.delenv("CELLGUARD_ATHENA_OUTPUT")
    assert renderer.main(["--out", str(tmp_path / "again")]) == 2  # a lake at the bucket's root: refused


# ============================================================================================== tests: the scan


def test_the_scan_finds_the_calls_each_backend_module_makes() -> None:
    found = {module: {(c.service, c.operation) for c in calls} for module, calls in aws_calls().items()}
    assert {("athena", "StartQueryExecution"), ("athena", "GetQueryExecution")} <= found["pipelines.storage.athena"]
    assert {("dynamodb", "TransactWriteItems"), ("dynamodb", "Query"), ("dynamodb", "DescribeTable"),
            ("dynamodb", "PutItem"), ("dynamodb", "UpdateItem")} <= found["pipelines.storage.dynamodb_event_store"]
    assert ("sagemaker-runtime", "InvokeEndpoint") in found["pipelines.serving.sagemaker_scoring"]
    assert {("sagemaker", "CreateTransformJob")} <= found["pipelines.serving.batch_transform"]
    assert {("glue", "GetDatabase"), ("glue", "CreateDatabase"), ("glue", "CreateTable"), ("glue", "UpdateTable"),
            ("glue", "GetTable")} <= found["pipelines.storage.glue_catalog"]  # awswrangler's, read from its source
    assert ("s3", "ListObjectsV2") in found["pipelines.features.athena_runner"]  # a paginator
    assert transaction_item_actions("pipelines.storage.dynamodb_event_store") == {"dynamodb:PutItem",
                                                                                   "dynamodb:UpdateItem"}
    assert statement_kinds("pipelines.features.athena_runner") == {"CREATE TABLE", "UNLOAD"}
    assert statement_kinds("pipelines.storage.glue_catalog") == {"CREATE OR REPLACE VIEW"}
    assert {"pipelines.features.athena_runner", "pipelines.storage.glue_catalog"} <= athena_submitters()
    assert pyarrow_methods(source_modules()["pipelines.storage.lake"]) >= {"get_file_info", "open_output_stream",
                                                                           "delete_file"}


def test_the_scan_refuses_a_client_it_cannot_attribute() -> None:
    module = SourceModule("example", REPO / "example.py", ast.parse(
        "def f(thing):\n    return thing.create_table(TableName='x')\n"))
    with pytest.raises(UnattributedCall, match="could be dynamodb or glue"):
        boto3_calls(module)
    named = SourceModule("example", REPO / "example.py", ast.parse("def f(glue):\n    glue.create_table()\n"))
    assert [(c.service, c.operation) for c in boto3_calls(named)] == [("glue", "CreateTable")]


def test_a_new_call_without_a_policy_change_is_refused(policies: dict[str, dict], names: Names) -> None:
    module = SourceModule("pipelines.serving.example", REPO / "example.py", ast.parse(
        "def retire(settings):\n"
        "    sagemaker = aws_client('sagemaker', settings)\n"
        "    sagemaker.delete_endpoint(EndpointName='cellguard-full')\n"))
    (call,) = boto3_calls(module)
    assert (call.service, call.operation) == ("sagemaker", "DeleteEndpoint")
    (need,) = needs_of(call, names)
    assert sorted(need.refused_by(policies["workers"])) == [names.arn("sagemaker", "endpoint/cellguard-full"),
                                                            names.arn("sagemaker", "endpoint/cellguard-signals6")]


def test_every_client_the_code_creates_is_a_service_the_policies_cover() -> None:
    created = set().union(*(services_created_in(m) for m in source_modules().values()))
    assert created <= set(CLIENT_SERVICES), f"new AWS services: {sorted(created - set(CLIENT_SERVICES))}"


def test_the_lake_uses_only_pyarrow_methods_whose_s3_requests_are_known() -> None:
    used = set().union(*(pyarrow_methods(m) for m in source_modules().values()))
    assert used <= PYARROW_S3_METHODS.keys(), f"add {sorted(used - PYARROW_S3_METHODS.keys())} to PYARROW_S3_METHODS"
    needed = {action for method in used for action in PYARROW_S3_METHODS[method]}
    granted = {action for _, requests in LAKE_METHOD_REQUESTS.items() for action, _ in requests("a/b")}
    assert needed <= granted, f"LAKE_METHOD_REQUESTS misses {sorted(needed - granted)}"


def test_every_module_with_aws_calls_is_run_by_a_role() -> None:
    run = modules_run_by("workers") | modules_run_by("api-host")
    assert set(aws_calls()) <= run, f"no role runs {sorted(set(aws_calls()) - run)}: add it to ROLE_ENTRIES or NOT_WIRED_YET"
    wired = reachable(*ROLE_ENTRIES["workers"]) | reachable(*ROLE_ENTRIES["api-host"])
    stale = [module for module in NOT_WIRED_YET if module in wired]
    assert not stale, f"{stale} are wired now: remove them from NOT_WIRED_YET"


# ============================================================================================== tests: the roles


@pytest.mark.parametrize("role", ["workers", "api-host", "sagemaker-execution"])
def test_every_call_a_role_makes_is_allowed(role: str, policies: dict[str, dict], names: Names) -> None:
    refused = [f"{need.action} on {r} ({need.why})" for need in role_needs(role, names)
               for r in need.refused_by(policies[role])]
    assert not refused, f"{ROLE_FILES[role]} refuses:\n" + "\n".join(refused)


@pytest.mark.parametrize("role", ["workers", "api-host", "sagemaker-execution"])
def test_every_action_a_role_is_granted_is_needed(role: str, policies: dict[str, dict], names: Names) -> None:
    needed = {need.action.lower() for need in role_needs(role, names)}
    extras = {action.lower() for action in DELIBERATE_EXTRAS.get(role, {})}
    granted = {a.lower() for s in policies[role]["Statement"] for a in _as_list(s["Action"])}
    assert granted - needed - extras == set(), f"{ROLE_FILES[role]} grants actions no call needs"


def test_the_api_host_cannot_write_outside_predictions_delete_or_run_jobs(policies: dict[str, dict],
                                                                          names: Names) -> None:
    api, keys = policies["api-host"], zone_keys(names)
    for method, zones in API_REFUSED.items():
        for zone in zones:
            assert not allows(api, REFUSED_ACTION[method], names.lake_object(keys[zone])), f"the API host may {method} {zone}"
    assert not allows(api, "s3:ListBucket", names.lake_bucket(), {"s3:prefix": names.lake_prefix("")})
    assert not allows(api, "s3:ListBucket", names.lake_bucket(), {"s3:prefix": names.lake_prefix("landing/")})
    for action in ("dynamodb:CreateTable", "dynamodb:DeleteTable", "dynamodb:Scan", "dynamodb:DeleteItem"):
        assert not allows(api, action, names.dynamodb()[0])
    for action, resource in (("sagemaker:CreateTrainingJob", names.sagemaker("training-job")[0]),
                             ("sagemaker:UpdateEndpoint", names.sagemaker("endpoint")[0]),
                             ("glue:CreateTable", names.glue_tables()[0]),
                             ("athena:StartQueryExecution", names.workgroup())):
        assert not allows(api, action, resource), f"the API host may {action}"


def test_nothing_is_allowed_outside_cellguards_resources(policies: dict[str, dict], names: Names) -> None:
    outside = [
        ("s3:GetObject", "arn:aws:s3:::example-fleet-lake/other-team/x.parquet", {}),
        ("s3:PutObject", "arn:aws:s3:::another-bucket/cellguard/x.parquet", {}),
        ("s3:ListBucket", names.lake_bucket(), {"s3:prefix": "other-team/"}),
        ("s3:ListBucket", names.lake_bucket(), {}),
        ("glue:GetTable", names.arn("glue", "table/other_database/frames"), {}),
        ("glue:DeleteTable", names.arn("glue", "table/other_database/frames"), {}),
        ("athena:StartQueryExecution", names.arn("athena", "workgroup/primary"), {}),
        ("dynamodb:PutItem", names.arn("dynamodb", "table/orders"), {}),
        ("dynamodb:Query", names.arn("dynamodb", "table/orders/index/by_date"), {}),
        ("sagemaker:CreateTrainingJob", names.arn("sagemaker", "training-job/other-job"), {}),
        ("sagemaker:UpdateEndpoint", names.arn("sagemaker", "endpoint/fraud-model"), {}),
        ("sagemaker:InvokeEndpoint", names.arn("sagemaker", "endpoint/fraud-model"), {}),
        ("sagemaker:DeleteEndpoint", names.sagemaker("endpoint")[0], {}),
        ("iam:PassRole", names.execution_role(), {"iam:PassedToService": "ec2.amazonaws.com"}),
        ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin", {"iam:PassedToService": "sagemaker.amazonaws.com"}),
    ]
    for role in ROLE_FILES:
        for action, resource, context in outside:
            assert not allows(policies[role], action, resource, context), f"{role} may {action} on {resource}"


def test_the_execution_role_reads_inputs_writes_outputs_only(policies: dict[str, dict], names: Names) -> None:
    role, keys = policies["sagemaker-execution"], zone_keys(names)
    for zone in ("champion pointer", "model card", "model archive", "batch predictions", "daily"):
        assert not allows(role, "s3:PutObject", names.lake_object(keys[zone])), zone
    for zone in ("frames", "daily", "landing", "champion pointer"):
        assert not allows(role, "s3:GetObject", names.lake_object(keys[zone])), zone
    assert not allows(role, "iam:PassRole", names.execution_role(), {"iam:PassedToService": "sagemaker.amazonaws.com"})
    assert not allows(role, "ecr:BatchGetImage", f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/sagemaker-xgboost")


def test_only_sagemaker_in_this_account_assumes_the_execution_role(policies: dict[str, dict]) -> None:
    (statement,) = policies["trust"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "sts:AssumeRole"
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert conditions_hold(statement, {"aws:SourceAccount": ACCOUNT})
    assert not conditions_hold(statement, {"aws:SourceAccount": "444455556666"})
    assert not conditions_hold(statement, {})
