//! Generates the gRPC code and the reflection descriptor set from proto/ with the vendored
//! protoc, so building needs no system protobuf install.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    unsafe { std::env::set_var("PROTOC", protoc) };

    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/flyteidl/core/execution.proto",
        "proto/flyteidl/core/identifier.proto",
        "proto/flyteidl/admin/common.proto",
        "proto/flyteidl/admin/notification.proto",
        "proto/flyteidl2/common/identifier.proto",
        "proto/flyteidl2/common/phase.proto",
        "proto/flyteidl2/notification/definition.proto",
        "proto/flyteidl2/task/run.proto",
        "proto/flytenotify/v1/notification_service.proto",
        // Only for reflection (see the file); its generated Rust type goes unused.
        "proto/google/rpc/error_details.proto",
    ];
    tonic_prost_build::configure()
        // Malformed requests are INVALID_ARGUMENT, not INTERNAL (see src/api/codec.rs).
        .codec_path("crate::api::codec::ServiceCodec")
        // Sorted maps encode in one order, so a Flyte 2 request's idempotency fingerprint (its
        // bytes re-encoded) is the same on a retry; a HashMap's order differs per instance, and a
        // webhook template with two headers made every retry a "different request".
        .btree_map(".flyteidl2")
        // The same for Flyte 1's webhooks, whose headers go into Enqueue's fingerprint.
        .btree_map(".flytenotify.v1.WebhookNotification.headers")
        .file_descriptor_set_path(out_dir.join("flytenotify_descriptor.bin"))
        .compile_protos(
            &protos,
            &[
                "proto",
                include.to_str().ok_or("non-UTF-8 protoc include path")?,
            ],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
