"""Deployment artifacts under infra/, validated offline (no Docker engine, no cloud, no cluster).

- Lambda: the SAM template is translated with aws-sam-translator and both forms are linted with
  cfn-lint; the edge zip is built by infra/lambda/package.py, extracted, and its run.sh serves a
  real edge (interpreter started with -S, so only the zip's own packages are importable) that
  relays to a real core.
- Containers: Dockerfiles and their build-context ignore files are parsed and checked; the
  compose stack is checked structurally and its configs are loaded by the real config parser.
- Kubernetes: every manifest is parsed and checked (probes, non-root, read-only root, limits,
  selectors matching labels, references to ConfigMaps/Secrets that exist); `kubectl kustomize`
  renders the set when kubectl is installed.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from shared.config import Config, EdgeTierConfig, load_config, load_edge_config
from tests.support.net import free_port, wait_http
from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
LAMBDA = INFRA / "lambda"
DOCKER = INFRA / "docker"
K8S = INFRA / "k8s"
HOP_SECRET = "h" * 48
LWA_ACCOUNT = "753240598075"  # publisher of the AWS Lambda Web Adapter layers


def core_config(env: dict[str, str] | None = None) -> Config:
    """The core config shipped for compose and Kubernetes, loaded by the real parser."""
    values = {"INTERLOCK_HOP_SECRET": HOP_SECRET, "REDIS_URL": "redis://redis:6379/0"}
    return load_config(K8S / "interlock.core.yaml", env={**values, **(env or {})})


def edge_config(env: dict[str, str]) -> EdgeTierConfig:
    """The edge bundle's config, loaded as the edge loads it (its own sections only)."""
    return load_edge_config(LAMBDA / "interlock.edge.yaml", env=env)


# --- Lambda: SAM template ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sam_template() -> dict[str, Any]:
    from cfnlint.decode import cfn_yaml

    # cfn-lint's loader understands the short intrinsic forms (!Ref, !Sub, !If ...); the JSON
    # round trip turns its node classes into plain dicts for the translator.
    template: dict[str, Any] = json.loads(json.dumps(cfn_yaml.load(str(LAMBDA / "template.yaml"))))
    return template


@pytest.fixture(scope="module")
def translated(sam_template: dict[str, Any]) -> dict[str, Any]:
    from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
    from samtranslator.translator.transform import transform

    class NoIam(ManagedPolicyLoader):
        """Managed policy names would be looked up in IAM; the template uses none."""

        def __init__(self) -> None:
            super().__init__(None)  # no IAM client: load() never calls it

        def load(self) -> dict[str, str]:
            return {}

    template = copy.deepcopy(sam_template)
    # What `sam package`/`sam deploy` do: the local zip becomes an S3 object.
    template["Resources"]["EdgeFunction"]["Properties"]["CodeUri"] = "s3://artifacts/edge.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")  # pseudo parameters; no AWS call is made
        result: dict[str, Any] = transform(template, {}, NoIam())
    return result


def lint(template: dict[str, Any] | str) -> list[str]:
    from cfnlint.api import lint as cfn_lint

    text = template if isinstance(template, str) else json.dumps(template)
    return [f"{m.rule.id} {m.message}" for m in cfn_lint(text, regions=["us-east-1", "eu-west-1"])]


def resources_of(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


def test_sam_translates_to_a_streaming_function_url_behind_the_web_adapter(
    translated: dict[str, Any], sam_template: dict[str, Any]
) -> None:
    (function,) = resources_of(translated, "AWS::Lambda::Function")
    (url,) = resources_of(translated, "AWS::Lambda::Url")
    assert function["Handler"] == "run.sh"
    runtimes = sam_template["Parameters"]["PythonRuntime"]["AllowedValues"]
    assert all(tuple(map(int, r.removeprefix("python").split("."))) >= (3, 12) for r in runtimes)
    assert sam_template["Parameters"]["Architecture"]["AllowedValues"] == ["arm64", "x86_64"]
    env = function["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["PORT"] == "8080"
    assert url["InvokeMode"] == "RESPONSE_STREAM"
    assert url["TargetFunctionArn"] == {"Ref": "EdgeFunction"}
    # Both architectures' adapter layers, picked by the Architecture parameter.
    layers = json.dumps(function["Layers"])
    for name in ("LambdaAdapterLayerX86", "LambdaAdapterLayerArm64"):
        assert f"{LWA_ACCOUNT}:layer:{name}:" in layers
    # The hop secret never sits in the template nor in the function's configuration: the
    # edge reads it at run time (aws-sm://), allowed by the role on that one secret only.
    assert env["INTERLOCK_HOP_SECRET"] == {"Fn::Sub": "aws-sm://${HopSecretArn}"}
    (role,) = resources_of(translated, "AWS::IAM::Role")
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    reads = [s for s in statements if s.get("Action") == "secretsmanager:GetSecretValue"]
    assert reads == [
        {
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": {"Ref": "HopSecretArn"},
        }
    ]
    assert "resolve:secretsmanager" not in json.dumps(translated)
    # Lambda must not cut off what the core allows one upstream call (streams included).
    assert function["Timeout"] >= core_config().core.upstream_timeout_s
    permissions = resources_of(translated, "AWS::Lambda::Permission")
    assert {p["Action"] for p in permissions} >= {"lambda:InvokeFunctionUrl"}
    assert "mangum" not in (LAMBDA / "template.yaml").read_text().lower()


def test_sam_environment_feeds_the_bundled_edge_config(translated: dict[str, Any]) -> None:
    """Every INTERLOCK_* variable the template sets is read by the edge bundle (no typos), and
    the bundled config loads with the values the template provides."""
    (function,) = resources_of(translated, "AWS::Lambda::Function")
    env = function["Environment"]["Variables"]
    readers = (LAMBDA / "interlock.edge.yaml").read_text() + (LAMBDA / "run.sh").read_text()
    for name in env:
        if name.startswith("INTERLOCK_"):
            assert "${" + name in readers, f"{name} is set but nothing reads it"
    literal = {k: v for k, v in env.items() if isinstance(v, str)}
    config = edge_config(
        {
            **literal,
            "INTERLOCK_CORE_URL": "https://core.internal.example.com",
            "INTERLOCK_HOP_SECRET": HOP_SECRET,
            "INTERLOCK_JWKS_URL": "https://keys.example.com/jwks.json",
        }
    )
    assert config.edge.pools == {"default": ("https://core.internal.example.com",)}
    assert config.auth.jwks_url == "https://keys.example.com/jwks.json"
    assert config.edge.core_timeout_s <= function["Timeout"]


def test_translated_template_passes_cfn_lint(translated: dict[str, Any]) -> None:
    assert lint(translated) == []
    # The linter is really checking: a wrong invoke mode and an over-long timeout are caught.
    broken = copy.deepcopy(translated)
    broken["Resources"]["EdgeFunctionUrl"]["Properties"]["InvokeMode"] = "STREAMING"
    broken["Resources"]["EdgeFunction"]["Properties"]["Timeout"] = 1000
    found = " ".join(lint(broken))
    assert "STREAMING" in found
    assert "1000" in found


def test_sam_template_as_written_passes_cfn_lint() -> None:
    assert lint((LAMBDA / "template.yaml").read_text()) == []


# --- Lambda: run.sh ----------------------------------------------------------------------


def test_run_sh_execs_the_launcher_on_port() -> None:
    """The launcher, never bare uvicorn: it is what applies the edge's connection limits."""
    script = LAMBDA / "run.sh"
    text = script.read_text()
    assert os.access(script, os.X_OK)
    assert text.startswith("#!/bin/sh\n")
    exec_lines = [line for line in text.splitlines() if line.startswith("exec ")]
    assert len(exec_lines) == 1
    assert "-m shared.server edge" in exec_lines[0]
    assert '"${PORT:-8080}"' in exec_lines[0]


def launch(script: Path, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(
            [str(script)], env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT
        )


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM, as Lambda and Kubernetes send it: uvicorn shuts down cleanly (it re-raises the
    signal once done, so -SIGTERM is a clean exit too)."""
    if process.poll() is None:
        process.terminate()
    try:
        code = process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    text = log.read_text(errors="replace")
    assert code in (0, -signal.SIGTERM), text
    assert "Finished server process" in text, text


def base_env() -> dict[str, str]:
    """This environment without anything that would leak interlock settings or sources."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("INTERLOCK_", "PYTHON", "AWS_")) and k not in ("PORT", "HOST")
    }


def test_run_sh_serves_the_edge_on_port(tmp_path: Path) -> None:
    """run.sh from the source tree with a temp config and JWKS: the edge answers on $PORT
    (not the config's port), and the process listening is the launcher itself (exec)."""
    stack = Stack(tmp_path / "stack")  # writes interlock.yaml and creates the key pair
    port = free_port()
    env = {
        **base_env(),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PORT": str(port),
        "INTERLOCK_CONFIG": str(stack.config_path),
        "INTERLOCK_HOP_SECRET": HOP_SECRET,
    }
    process = launch(LAMBDA / "run.sh", env, ROOT, tmp_path / "edge.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process=process)
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"shared.server" in cmdline and b"edge" in cmdline
    finally:
        stop(process, tmp_path / "edge.log")
    assert port != stack.edge_port


# --- Lambda: the zip -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def zip_stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """Config and keys for the packaged-edge test (processes are started by the test)."""
    return Stack(tmp_path_factory.mktemp("zipstack"))


@pytest.fixture(scope="module")
def edge_zip(tmp_path_factory: pytest.TempPathFactory, zip_stack: Stack) -> tuple[Path, str]:
    """Built with --reuse-installed: the installed packages of this environment are copied
    (about a second, no index access) instead of a `pip install --target` per test run. The
    Lambda build (`make package-edge`) differs only in where the same packages come from."""
    out = tmp_path_factory.mktemp("dist") / "edge.zip"
    result = subprocess.run(
        [
            sys.executable,
            str(LAMBDA / "package.py"),
            "--reuse-installed",
            "--jwks",
            str(zip_stack.config.auth.jwks_file),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def test_edge_zip_holds_the_edge_and_its_dependencies_only(edge_zip: tuple[Path, str]) -> None:
    path, report = edge_zip
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
    tops = {name.split("/")[0] for name in infos}
    assert {"edge", "shared", "run.sh", "interlock.edge.yaml", "jwks.json"} <= tops
    assert "edge/main.py" in infos and "shared/config.py" in infos
    # The `edge` extra's dependencies (and theirs), nothing of the core's.
    assert {"starlette", "aiohttp", "jwt", "cryptography", "orjson", "yaml", "uvicorn"} <= tops
    assert not tops & {"core", "redis", "boto3", "botocore", "opentelemetry", "mangum"}
    assert (infos["run.sh"].external_attr >> 16) & 0o777 == 0o755
    assert (infos["edge/main.py"].external_attr >> 16) & 0o777 == 0o644
    size = path.stat().st_size
    assert f"({size} bytes)" in report, report
    assert size < 50 * 1024 * 1024  # Lambda's direct-upload limit
    print(report.strip())


def test_packaging_refuses_an_edge_that_imports_core(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("edge_package", LAMBDA / "package.py")
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(package)
    for name in ("edge", "shared"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    package.check_layering(tmp_path)
    (tmp_path / "shared" / "x.py").write_text(
        "import json\nfrom core.ops.keys import issue_token\n"
    )
    with pytest.raises(SystemExit, match=r"x\.py:2: the edge bundle must not import core"):
        package.check_layering(tmp_path)


def extract(path: Path, dest: Path) -> None:
    """Unzip keeping the modes the zip records (zipfile itself drops them), as Lambda does."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            target = Path(archive.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                target.chmod(mode)


@pytest.fixture(scope="module")
def bundle_env(
    tmp_path_factory: pytest.TempPathFactory, edge_zip: tuple[Path, str]
) -> tuple[Path, dict[str, str]]:
    """The extracted zip and an environment whose python3 sees only the stdlib and the zip."""
    root = tmp_path_factory.mktemp("lambda")
    bundle = root / "task"
    extract(edge_zip[0], bundle)
    shim = root / "bin"
    shim.mkdir()
    (shim / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    (shim / "python3").chmod(0o755)
    return bundle, {**base_env(), "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}


def test_edge_zip_is_self_contained(bundle_env: tuple[Path, dict[str, str]]) -> None:
    bundle, env = bundle_env
    env = {**env, "PYTHONPATH": str(bundle)}
    probe = "import edge.app, starlette, aiohttp, jwt, yaml, uvicorn; import core"
    result = subprocess.run(
        ["python3", "-c", probe], env=env, cwd=bundle, capture_output=True, text=True, timeout=60
    )
    assert "No module named 'core'" in result.stderr, result.stderr


def test_edge_zip_runs_and_relays_to_a_core(
    bundle_env: tuple[Path, dict[str, str]], zip_stack: Stack, tmp_path: Path
) -> None:
    """What the Web Adapter does on Lambda: run the zip's run.sh with $PORT and the template's
    environment, wait for /healthz, send requests. The edge uses the bundled jwks.json."""
    from openai import OpenAI

    bundle, env = bundle_env
    port = free_port()
    env = {
        **env,
        "PORT": str(port),
        "INTERLOCK_CORE_URL": zip_stack.core_url,
        "INTERLOCK_HOP_SECRET": zip_stack.env["INTERLOCK_HOP_SECRET"],
        "INTERLOCK_JWT_ISSUER": zip_stack.config.auth.issuer,
        "INTERLOCK_JWT_AUDIENCE": zip_stack.config.auth.audience,
    }
    core = zip_stack._spawn("core", zip_stack.core_port)
    edge = launch(bundle / "run.sh", env, bundle, tmp_path / "edge.log")
    try:
        wait_http(f"{zip_stack.core_admin_url}/readyz", process=core)
        wait_http(f"http://127.0.0.1:{port}/healthz", process=edge)
        client = OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=zip_stack.token(), max_retries=0
        )
        messages: Any = [{"role": "user", "content": "hello"}]
        reply = client.chat.completions.create(model="mock-1", messages=messages)
        assert reply.choices[0].message.content
        chunks = list(
            client.chat.completions.create(model="mock-1", messages=messages, stream=True)
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finally:
        zip_stack.stop()
        stop(edge, tmp_path / "edge.log")


# --- Containers ----------------------------------------------------------------------------


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        if (pending + line).strip():
            logical.append(pending + line)
        pending = ""
    out = []
    for line in logical:
        word, _, rest = line.strip().partition(" ")
        out.append((word.upper(), " ".join(rest.split())))
    return out


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    return instructions[starts[-1] :]


def base_images(instructions: list[tuple[str, str]]) -> list[str]:
    args = dict(arg.split("=", 1) for word, arg in instructions if word == "ARG" and "=" in arg)
    stages = {rest.split()[-1] for word, rest in instructions if word == "FROM" and " AS " in rest}
    images = []
    for word, rest in instructions:
        if word == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
            if image not in stages:
                images.append(image)
    return images


def dockerignore(dockerfile_path: Path) -> list[str]:
    ignore = dockerfile_path.with_name(dockerfile_path.name + ".dockerignore")
    lines = [line.strip() for line in ignore.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a directory covers
    everything under it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        if any(fnmatch(prefix, glob) for prefix in prefixes):
            result = not negated
    return result


@pytest.mark.parametrize(
    ("name", "probe", "entry"),
    [
        ("Dockerfile.core", "/readyz", ["interlock", "serve", "core"]),
        ("Dockerfile.edge", "/healthz", ["/app/run.sh"]),
    ],
)
def test_dockerfile(name: str, probe: str, entry: list[str]) -> None:
    path = DOCKER / name
    instructions = dockerfile(path)
    final = final_stage(instructions)
    assert sum(word == "FROM" for word, _ in instructions) >= 2, "multi-stage build"
    for image in base_images(instructions):
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", image
        if repository == "python":
            assert tuple(map(int, tag.split("-")[0].split("."))) >= (3, 12), image
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "runs as non-root"
    (healthcheck,) = [rest for word, rest in final if word == "HEALTHCHECK"]
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert probe in " ".join(command)
    if name == "Dockerfile.core":  # readiness lives on the admin listener only
        assert "INTERLOCK_CORE_ADMIN_PORT" in " ".join(command)
    entrypoint = [json.loads(rest) for word, rest in final if word == "ENTRYPOINT"]
    cmd = [json.loads(rest) for word, rest in final if word == "CMD"]
    assert entrypoint[-1] + (cmd[-1] if cmd else []) == entry
    # Everything copied from the context exists and is let through by the ignore file.
    patterns = dockerignore(path)
    for word, rest in instructions:
        if word == "COPY" and "--from=" not in rest:
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert not ignored(source.rstrip("/"), patterns), source


@pytest.mark.parametrize("name", ["Dockerfile.core", "Dockerfile.edge"])
def test_build_context_keeps_secrets_and_clutter_out(name: str) -> None:
    patterns = dockerignore(DOCKER / name)
    for path in (
        ".interlock/signing-key.pem",
        ".interlock/hop-secret",
        ".venv/bin/python",
        ".git/config",
        "dist/interlock-edge-lambda.zip",
        "tests/test_infra.py",
        "edge/__pycache__/app.cpython-312.pyc",
    ):
        assert ignored(path, patterns), path
    assert not ignored("edge/main.py", patterns)
    assert not ignored("shared/config.py", patterns)
    # The edge image cannot pick up core/ even by accident.
    assert ignored("core/main.py", patterns) == (name == "Dockerfile.edge")


def test_edge_dockerfile_builds_the_lambda_bundle() -> None:
    instructions = dockerfile(DOCKER / "Dockerfile.edge")
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert "infra/lambda/package.py" in runs
    copies = [rest.split()[0] for word, rest in instructions if word == "COPY"]
    assert not [c for c in copies if c.startswith("core")]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return data


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_stack_structure(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "core", "edge"}
    assert services["core"]["deploy"]["replicas"] == 2
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), image
        if "build" in service:
            assert (DOCKER / service["build"]["context"]).resolve() == ROOT
            built = ROOT / service["build"]["dockerfile"]
            has_check = any(word == "HEALTHCHECK" for word, _ in final_stage(dockerfile(built)))
            assert has_check, f"{name}: image without HEALTHCHECK"
            assert service.get("read_only") is True and "/tmp" in service.get("tmpfs", [])
        else:
            assert service["healthcheck"]["test"], name
        for dependency in (service.get("depends_on") or {}).values():
            assert dependency["condition"] == "service_healthy"
        for volume in service.get("volumes") or []:
            assert (DOCKER / volume.split(":")[0]).is_file(), volume
    # Only the edge is published, and only on loopback.
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"edge"}
    assert all(str(p).startswith("127.0.0.1:") for p in services["edge"]["ports"])


def test_compose_wiring(compose: dict[str, Any]) -> None:
    services = compose["services"]
    core_env, edge_env = compose_env(services["core"]), compose_env(services["edge"])
    redis = urlsplit(core_env["REDIS_URL"])
    assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)
    assert "REDIS_URL" not in edge_env  # the edge keeps no state
    core_url = urlsplit(edge_env["INTERLOCK_CORE_URL"])
    assert core_url.hostname == "core"
    assert str(core_url.port) in [str(p) for p in services["core"]["expose"]]
    # Secrets come from the caller's environment and are required (${VAR:?message}).
    for env in (core_env, edge_env):
        assert env["INTERLOCK_HOP_SECRET"].startswith("${INTERLOCK_HOP_SECRET:?")
    assert edge_env["INTERLOCK_JWKS"].startswith("${INTERLOCK_JWKS:?")
    # The configs the containers get load with the environment compose gives them.
    mount = services["core"]["volumes"][0].split(":")
    assert mount[1] == core_env["INTERLOCK_CONFIG"]
    config = load_config(DOCKER / mount[0], env={**core_env, "INTERLOCK_HOP_SECRET": HOP_SECRET})
    assert config.state.redis_url == core_env["REDIS_URL"]
    edge = edge_config({**edge_env, "INTERLOCK_HOP_SECRET": HOP_SECRET, "INTERLOCK_JWKS": ""})
    assert edge.edge.pools["default"] == (edge_env["INTERLOCK_CORE_URL"],)


# --- Kubernetes ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name in ("kustomization.yaml", "interlock.core.yaml"):
            continue
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return data


def test_k8s_deployments(manifests: list[dict[str, Any]]) -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind(manifests, "Deployment")}
    assert set(deployments) == {"interlock-core", "interlock-edge"}
    configmaps = {c["metadata"]["name"] for c in of_kind(manifests, "ConfigMap")}
    configmaps |= {g["name"] for g in kustomization()["configMapGenerator"]}
    secrets = {
        (s["metadata"]["name"], key)
        for s in of_kind(manifests, "Secret")
        for key in {**s.get("data", {}), **s.get("stringData", {})}
    }
    upstream_timeout = core_config().core.upstream_timeout_s
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        pod = spec["template"]["spec"]
        assert selects(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])
        assert spec["replicas"] >= 2, name
        # Service links would set INTERLOCK_CORE_PORT/INTERLOCK_EDGE_PORT to tcp://... URLs.
        assert pod["enableServiceLinks"] is False, name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["terminationGracePeriodSeconds"] > upstream_timeout, name
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        volumes = {v["name"]: v for v in pod["volumes"]}
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, volume
        (container,) = pod["containers"]
        image = container["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] in ports, (name, probe)
        expected = "/readyz" if name == "interlock-core" else "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == expected
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert "memory" in resources["limits"], name
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert set(mounts.values()) <= set(volumes), name
        assert "emptyDir" in volumes[mounts["/tmp"]], "read-only root needs a writable /tmp"
        for env in container["env"]:
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert (ref["name"], ref["key"]) in secrets, ref


def test_k8s_services_and_disruption_budgets_select_pods(manifests: list[dict[str, Any]]) -> None:
    pods = [
        (d["spec"]["template"]["metadata"]["labels"], d["spec"]["template"]["spec"])
        for d in of_kind(manifests, "Deployment")
    ]
    services = of_kind(manifests, "Service")
    budgets = of_kind(manifests, "PodDisruptionBudget")
    assert len(services) == len(budgets) == len(pods) == 2
    for service in services:
        matched = [spec for labels, spec in pods if selects(service["spec"]["selector"], labels)]
        assert len(matched) == 1, service["metadata"]["name"]
        names = {p["name"] for c in matched[0]["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names
    for budget in budgets:
        selector = budget["spec"]["selector"]["matchLabels"]
        assert sum(selects(selector, labels) for labels, _ in pods) == 1
        assert budget["spec"].get("maxUnavailable") == 1
    # The core's admin listener (/readyz, /metrics) is probed on the pod, never published.
    (core,) = [
        d for d in of_kind(manifests, "Deployment") if d["metadata"]["name"].endswith("core")
    ]
    container = core["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["port"] == "admin"
    admin_host = {e["name"]: e.get("value") for e in container["env"]}["INTERLOCK_CORE_ADMIN_HOST"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert core_config({"INTERLOCK_CORE_ADMIN_HOST": admin_host}).core.admin_port == ports["admin"]
    for service in services:
        assert all(p["targetPort"] != "admin" for p in service["spec"]["ports"])
    # The edge reaches the core through its Service.
    (edge,) = [
        d for d in of_kind(manifests, "Deployment") if d["metadata"]["name"].endswith("edge")
    ]
    env = {
        e["name"]: e.get("value") for e in edge["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    url = urlsplit(env["INTERLOCK_CORE_URL"])
    core_services = {s["metadata"]["name"]: s for s in services}
    assert url.port in [p["port"] for p in core_services[str(url.hostname)]["spec"]["ports"]]
    # Behind the Ingress all clients share the ingress pods' addresses: no per-address budget,
    # and idle connections outlive the load balancer's idle timeout.
    values = {k: v for k, v in env.items() if v is not None}
    server = edge_config({**values, "INTERLOCK_HOP_SECRET": HOP_SECRET}).edge.server
    assert server.max_connections_per_client == 0
    (ingress,) = of_kind(manifests, "Ingress")
    alb = ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/load-balancer-attributes"]
    assert server.keepalive_timeout_s > int(alb.split("idle_timeout.timeout_seconds=")[1])
    # The bundle's own defaults (Lambda, compose) keep the budget.
    lambda_env = {"INTERLOCK_CORE_URL": "http://core:8081", "INTERLOCK_HOP_SECRET": HOP_SECRET}
    assert edge_config(lambda_env).edge.server.max_connections_per_client == 64


def test_k8s_ingress_suits_streaming(manifests: list[dict[str, Any]]) -> None:
    (ingress,) = of_kind(manifests, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    upstream_timeout = core_config().core.upstream_timeout_s
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > upstream_timeout
    alb = annotations["alb.ingress.kubernetes.io/load-balancer-attributes"]
    assert int(alb.split("idle_timeout.timeout_seconds=")[1]) > upstream_timeout
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] in {s["metadata"]["name"] for s in of_kind(manifests, "Service")}


def test_k8s_config_and_example_secrets(manifests: list[dict[str, Any]]) -> None:
    from edge.jwks import parse_jwks
    from shared.configparse import ConfigError

    (generator,) = kustomization()["configMapGenerator"]
    (source,) = [f.split("=", 1)[1] for f in generator["files"]]
    assert (K8S / source).resolve() == (K8S / "interlock.core.yaml").resolve()
    resources = kustomization()["resources"]
    assert "secret.example.yaml" not in resources
    assert all((K8S / r).is_file() for r in resources)
    # The example placeholders fail loudly instead of running with a published secret.
    (secret,) = of_kind(manifests, "Secret")
    with pytest.raises(ConfigError, match="at least 32"):
        core_config({"INTERLOCK_HOP_SECRET": secret["stringData"]["hop-secret"]})
    (jwks,) = [c for c in of_kind(manifests, "ConfigMap") if c["metadata"]["name"].endswith("jwks")]
    with pytest.raises(ConfigError):
        parse_jwks(jwks["data"]["jwks.json"], "jwks.json")
