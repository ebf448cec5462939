"""proto/flyteidl2/** must stay a byte-for-byte mirror of PyPI flyteidl2: the server decodes what
the flyte SDK encodes with the real package, so a field number, type or oneof that drifted would
misread a run's rules without any error. Our mirrors are compiled by the pinned protoc
(scripts/generate.sh --mirror-descriptor-set) and compared, message by message and field by field,
with the descriptors of the flyteidl2 package installed here."""

from __future__ import annotations

import importlib
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

CLIENT_ROOT = Path(__file__).resolve().parents[1]
GENERATE = CLIENT_ROOT / "scripts" / "generate.sh"

FieldKey = tuple[int, str, int, int, str, str | None]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path_factory.mktemp("mirror") / "flyteidl2.binpb"
    done = subprocess.run(
        ["bash", str(GENERATE), "--mirror-descriptor-set", str(out)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"compiling proto/flyteidl2 failed:\n{done.stdout}\n{done.stderr}"
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def real_file(name: str) -> descriptor_pb2.FileDescriptorProto:
    """The installed flyteidl2's descriptor of the file `name` ("flyteidl2/task/run.proto")."""
    module = importlib.import_module(name.removesuffix(".proto").replace("/", ".") + "_pb2")
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)
    return proto


def field_key(message: descriptor_pb2.DescriptorProto, field: descriptor_pb2.FieldDescriptorProto) -> FieldKey:
    oneof = message.oneof_decl[field.oneof_index].name if field.HasField("oneof_index") else None
    return (field.number, field.name, field.type, field.label, field.type_name, oneof)


def describe(key: FieldKey) -> str:
    number, name, type_, label, type_name, oneof = key
    type_text = descriptor_pb2.FieldDescriptorProto.Type.Name(type_)
    label_text = descriptor_pb2.FieldDescriptorProto.Label.Name(label)
    return (
        f"{name} = {number} ({label_text} {type_text}{' ' + type_name if type_name else ''}"
        f"{', oneof ' + oneof if oneof else ''})"
    )


def enum_differences(where: str, ours: descriptor_pb2.EnumDescriptorProto, theirs: descriptor_pb2.EnumDescriptorProto) -> Iterator[str]:
    our_values = [(v.name, v.number) for v in ours.value]
    their_values = [(v.name, v.number) for v in theirs.value]
    if our_values != their_values:
        missing = [v for v in their_values if v not in our_values]
        extra = [v for v in our_values if v not in their_values]
        yield f"enum {where}: values differ; flyteidl2 has {missing or 'nothing more'}, ours has {extra or 'nothing more'} (or the order differs)"


def message_differences(where: str, ours: descriptor_pb2.DescriptorProto, theirs: descriptor_pb2.DescriptorProto) -> Iterator[str]:
    our_fields = {f.name: field_key(ours, f) for f in ours.field}
    their_fields = {f.name: field_key(theirs, f) for f in theirs.field}
    for name in sorted(our_fields.keys() | their_fields.keys(), key=lambda n: (their_fields.get(n) or our_fields[n])[0]):
        mine, real = our_fields.get(name), their_fields.get(name)
        if mine is None:
            assert real is not None
            yield f"message {where}: field {describe(real)} is in flyteidl2 but not in our mirror"
        elif real is None:
            yield f"message {where}: field {describe(mine)} is ours but not flyteidl2's"
        elif mine != real:
            yield f"message {where}: field {name}: ours is {describe(mine)}, flyteidl2's is {describe(real)}"
    yield from nested_differences(where, ours.nested_type, theirs.nested_type, ours.enum_type, theirs.enum_type)


def nested_differences(
    scope: str,
    our_messages: Iterable[descriptor_pb2.DescriptorProto],
    their_messages: Iterable[descriptor_pb2.DescriptorProto],
    our_enums: Iterable[descriptor_pb2.EnumDescriptorProto],
    their_enums: Iterable[descriptor_pb2.EnumDescriptorProto],
) -> Iterator[str]:
    """Every message and enum of ours (map entries included) must exist in flyteidl2's scope with
    the same shape; flyteidl2 may have more, as the mirror carries only what flyte-notify needs."""
    theirs_by_name = {m.name: m for m in their_messages}
    for message in our_messages:
        where = f"{scope}.{message.name}"
        if message.name not in theirs_by_name:
            yield f"message {where} is ours but not in flyteidl2"
            continue
        yield from message_differences(where, message, theirs_by_name[message.name])
    their_enums_by_name = {e.name: e for e in their_enums}
    for enum in our_enums:
        where = f"{scope}.{enum.name}"
        if enum.name not in their_enums_by_name:
            yield f"enum {where} is ours but not in flyteidl2"
            continue
        yield from enum_differences(where, enum, their_enums_by_name[enum.name])


def file_differences(ours: descriptor_pb2.FileDescriptorProto, theirs: descriptor_pb2.FileDescriptorProto) -> Iterator[str]:
    if ours.name != theirs.name:
        yield f"file {ours.name}: flyteidl2's is named {theirs.name}"
    if ours.package != theirs.package:
        yield f"file {ours.name}: package {ours.package}, flyteidl2's is {theirs.package}"
    yield from nested_differences(ours.package, ours.message_type, theirs.message_type, ours.enum_type, theirs.enum_type)


def first_difference(mirror: descriptor_pb2.FileDescriptorSet) -> str | None:
    for ours in mirror.file:
        try:
            theirs = real_file(ours.name)
        except ModuleNotFoundError:
            return f"file {ours.name}: flyteidl2 has no such file"
        for difference in file_differences(ours, theirs):
            return difference
    return None


def test_the_mirror_covers_what_the_service_imports(mirror: descriptor_pb2.FileDescriptorSet) -> None:
    assert sorted(f.name for f in mirror.file) == [
        "flyteidl2/common/identifier.proto",
        "flyteidl2/common/phase.proto",
        "flyteidl2/notification/definition.proto",
        "flyteidl2/task/run.proto",
    ]


def test_every_mirrored_message_and_enum_matches_flyteidl2(mirror: descriptor_pb2.FileDescriptorSet) -> None:
    difference = first_difference(mirror)
    assert difference is None, difference


def test_a_drifted_field_number_is_named(mirror: descriptor_pb2.FileDescriptorSet) -> None:
    """The comparison can fail: renumber one field of a copy and it names that field."""
    drifted = descriptor_pb2.FileDescriptorSet()
    drifted.CopyFrom(mirror)
    run = next(f for f in drifted.file if f.name == "flyteidl2/task/run.proto")
    rule = next(m for m in run.message_type if m.name == "InlineRule")
    next(f for f in rule.field if f.name == "delivery_config_name").number = 12
    assert first_difference(drifted) == (
        "message flyteidl2.task.InlineRule: field delivery_config_name: ours is "
        "delivery_config_name = 12 (LABEL_OPTIONAL TYPE_STRING, oneof delivery), "
        "flyteidl2's is delivery_config_name = 2 (LABEL_OPTIONAL TYPE_STRING, oneof delivery)"
    )


def test_a_field_moved_out_of_its_oneof_is_named(mirror: descriptor_pb2.FileDescriptorSet) -> None:
    drifted = descriptor_pb2.FileDescriptorSet()
    drifted.CopyFrom(mirror)
    definition = next(f for f in drifted.file if f.name == "flyteidl2/notification/definition.proto")
    email = next(m for m in definition.message_type if m.name == "EmailDeliveryTemplate")
    next(f for f in email.field if f.name == "provider_template").ClearField("oneof_index")
    difference = first_difference(drifted)
    assert difference is not None
    assert difference.startswith("message flyteidl2.notification.EmailDeliveryTemplate: field provider_template:")
    assert difference.endswith(", oneof content)")


def test_an_enum_value_renumbered_is_named(mirror: descriptor_pb2.FileDescriptorSet) -> None:
    drifted = descriptor_pb2.FileDescriptorSet()
    drifted.CopyFrom(mirror)
    phase = next(f for f in drifted.file if f.name == "flyteidl2/common/phase.proto")
    next(v for v in phase.enum_type[0].value if v.name == "ACTION_PHASE_PAUSED").number = 11
    difference = first_difference(drifted)
    assert difference is not None
    assert difference.startswith("enum flyteidl2.common.ActionPhase: values differ; flyteidl2 has [('ACTION_PHASE_PAUSED', 9)]")
