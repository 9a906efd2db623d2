#!/usr/bin/env bash
# CI: `--provider openvino` on OpenVINO built into onnxruntime (the onnxruntime-openvino wheel),
# which runs on any x86-64 CPU, unlike the [openvino] extra's plugin EP (Intel hardware only).
# onnxruntime-openvino replaces the onnxruntime package, so digitvae goes in with --no-deps: its
# own dependencies would put plain onnxruntime back beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.24.1
venv=.ci/venv-openvino
python3 -m venv --clear "$venv"
py="$venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
"$py" -m pip install --quiet "onnxruntime-openvino==$version" "numpy>=1.24" "click>=8.1" "pillow>=10" "pytest>=8" "hypothesis>=6.100"
"$py" -m pip install --quiet --no-deps .
"$py" - "$version" <<'PY'
import importlib.metadata as md, sys
import onnxruntime as ort
assert md.version("onnxruntime-openvino") == sys.argv[1], md.version("onnxruntime-openvino")
beside = [d for d in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-ep-openvino") if list(md.distributions(name=d))]
assert not beside, f"installed beside onnxruntime-openvino: {beside}"
assert "OPENVINO" in ort.get_device(), f"import onnxruntime is not the OpenVINO build: {ort.get_device()}"
assert "OpenVINOExecutionProvider" in ort.get_available_providers(), ort.get_available_providers()
print(f"onnxruntime {ort.__version__} ({ort.get_device()}): {', '.join(ort.get_available_providers())}")
PY
# Strict: OpenVINO must run every session; decode, encode, reconstruct, generate and iw_nll must
# match the CPU provider within 1e-4 (pixels, codes) and 1e-3 nats.
for model in mnist-vae mnist-cvae; do
  "$venv/bin/digitvae" parity --provider openvino --model "$model" --variant fp32
done
# The tests of OpenVINO really running skip where it cannot run: here each must run and pass.
report=$(mktemp)
"$py" -m pytest -q -p no:cacheprovider tests/test_plugins.py --junitxml="$report"
"$py" - "$report" <<'PY'
import sys
import xml.etree.ElementTree as ET
ran = {c.get("name") for c in ET.parse(sys.argv[1]).iter("testcase") if c.find("skipped") is None}
must = {
    "test_openvino_matches_the_cpu_provider",
    "test_openvino_takes_the_nodes",
    "test_openvino_in_float32_unless_asked",
    "test_cli_provider_openvino",
    "test_bench_times_openvino",
}
assert must <= ran, f"skipped under onnxruntime-openvino: {sorted(must - ran)}"
PY
rm "$report"
