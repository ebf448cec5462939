# Generated from proto/flytenotify/v1 by grpcio-tools==1.62.3; do not edit. Regenerate with clients/python/scripts/generate.sh.
"""Generated gRPC and protobuf code for flytenotify.v1."""
