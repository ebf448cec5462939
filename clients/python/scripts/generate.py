"""Generates src/flytenotify/v1 from proto/flytenotify/v1/*.proto. Run it through generate.sh,
which provides the pinned grpcio-tools.

Only flyte-notify's own protos are compiled. The repo's proto/flyteidl/** files are mirrors that
exist so protoc can resolve the imports; the generated code imports them as
`from flyteidl.admin import common_pb2` etc., i.e. from the PyPI flyteidl package, so the shared
messages are flytekit's own classes and there is a single descriptor for each in the process.

The same holds for proto/flyteidl2/**: mirrors of PyPI flyteidl2's files, imported by the
generated code from the flyteidl2 package (`from flyteidl2.task import run_pb2`), so a run's
InlineRuleList from the flyte SDK is the same class here. `--mirror-descriptor-set PATH` compiles
those mirrors on their own into a FileDescriptorSet, which tests/test_flyteidl2_mirror.py compares
with the real package's descriptors.

The proto package path flytenotify/v1 is also our Python package path, so the generated imports
(`from flytenotify.v1 import notification_service_pb2`) need no rewriting; the only
post-processing is the banner and the package __init__.py.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.resources
import re
import shutil
import sys
import tempfile
from pathlib import Path

CLIENT_ROOT = Path(__file__).resolve().parent.parent
REPO_ROOT = CLIENT_ROOT.parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
PROTO_PACKAGE = "flytenotify/v1"
OUT_DIR = CLIENT_ROOT / "src" / "flytenotify" / "v1"

# Generated modules may import only these: anything else would be a module that the installed
# distributions do not provide (e.g. a flyteidl file we mirror but flyteidl does not ship).
ALLOWED_IMPORT_PACKAGES = (
    "google.protobuf",
    "flyteidl.admin",
    "flyteidl.core",
    "flyteidl2.common",
    "flyteidl2.notification",
    "flyteidl2.task",
    "flytenotify.v1",
)
MIRROR_PACKAGE = "flyteidl2"
IMPORT_RE = re.compile(r"^from (\S+) import \S+_pb2 as ", re.MULTILINE)


def banner(tools_version: str) -> str:
    return (
        "# Generated from proto/flytenotify/v1 by grpcio-tools=="
        f"{tools_version}; do not edit. Regenerate with clients/python/scripts/generate.sh.\n"
    )


def protoc_main(outputs: list[str], protos: list[str]) -> None:
    from grpc_tools import protoc  # only in generate.sh's venv

    # grpc_tools bundles the well-known types (google/protobuf/timestamp.proto); `python -m
    # grpc_tools.protoc` adds this include itself, protoc.main() does not.
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", *outputs, *protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def run_protoc(protos: list[str], out: Path) -> None:
    protoc_main([f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}"], protos)


def write_mirror_descriptor_set(path: Path) -> None:
    """Compiles proto/flyteidl2/** alone (no imports outside it are included) into `path`."""
    protos = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in (PROTO_ROOT / MIRROR_PACKAGE).rglob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / MIRROR_PACKAGE}")
    protoc_main([f"--descriptor_set_out={path}"], protos)


def generate(tools_version: str, work: Path) -> dict[str, str]:
    """Returns {file name: content} of the package as it should be committed."""
    # Paths relative to the include root, so the "source:" comments name no local directory.
    protos = sorted(p.relative_to(PROTO_ROOT).as_posix() for p in (PROTO_ROOT / PROTO_PACKAGE).glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / PROTO_PACKAGE}")
    run_protoc(protos, work)

    produced = sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file())
    unexpected = [p for p in produced if not p.startswith(PROTO_PACKAGE + "/")]
    if unexpected:
        raise SystemExit(f"protoc generated files outside {PROTO_PACKAGE}: {unexpected}")

    head = banner(tools_version)
    files: dict[str, str] = {
        "__init__.py": head + '"""Generated gRPC and protobuf code for flytenotify.v1."""\n',
    }
    for rel in produced:
        text = (work / rel).read_text(encoding="utf-8")
        if rel.endswith("_pb2.py"):
            for package in IMPORT_RE.findall(text):
                if not package.startswith(ALLOWED_IMPORT_PACKAGES):
                    raise SystemExit(f"{rel} imports {package}, which no dependency provides")
            if "from flyteidl.admin import common_pb2" not in text:
                # The point of this layout: the shared messages must be flyteidl's own.
                raise SystemExit(f"{rel} does not import flyteidl.admin.common_pb2")
        files[Path(rel).name] = head + text
    return files


def check(expected: dict[str, str]) -> int:
    actual = {p.name: p.read_text(encoding="utf-8") for p in OUT_DIR.iterdir() if p.is_file()} if OUT_DIR.is_dir() else {}
    problems = 0
    for name in sorted(expected.keys() | actual.keys()):
        want, have = expected.get(name), actual.get(name)
        if want == have:
            continue
        problems += 1
        if have is None:
            print(f"missing: {OUT_DIR / name}")
        elif want is None:
            print(f"not generated (stale?): {OUT_DIR / name}")
        else:
            sys.stdout.writelines(
                difflib.unified_diff(
                    have.splitlines(keepends=True),
                    want.splitlines(keepends=True),
                    fromfile=f"committed/{name}",
                    tofile=f"regenerated/{name}",
                )
            )
    if problems:
        print(f"{problems} generated file(s) out of date; run clients/python/scripts/generate.sh")
        return 1
    print(f"generated code is up to date ({len(expected)} files in {OUT_DIR.relative_to(REPO_ROOT)})")
    return 0


def write(files: dict[str, str]) -> None:
    # Everything in OUT_DIR is generated, so stale modules from a removed .proto go too.
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    OUT_DIR.mkdir(parents=True)
    for name, text in sorted(files.items()):
        (OUT_DIR / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} files to {OUT_DIR.relative_to(REPO_ROOT)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed code differs")
    parser.add_argument("--grpcio-tools-version", required=True, help="set by generate.sh")
    parser.add_argument(
        "--mirror-descriptor-set",
        type=Path,
        metavar="PATH",
        help="only compile proto/flyteidl2 into a FileDescriptorSet at PATH (for the mirror test)",
    )
    args = parser.parse_args()

    from importlib.metadata import version

    installed = version("grpcio-tools")
    if installed != args.grpcio_tools_version:
        raise SystemExit(f"grpcio-tools {installed} is installed; generate.sh pins {args.grpcio_tools_version}")
    if args.mirror_descriptor_set is not None:
        write_mirror_descriptor_set(args.mirror_descriptor_set)
        return 0
    with tempfile.TemporaryDirectory(prefix="flytenotify-gen-") as tmp:
        files = generate(args.grpcio_tools_version, Path(tmp))
    if args.check:
        return check(files)
    write(files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
