"""`digitvae serve`: a real server process on loopback, checked against the runtime and plain onnxruntime."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from helpers import assert_clean_failure, free_ports, invoke
from mnist_files import VALID_IMAGES

from digitvae.runtime import DigitVAE
from digitvae.runtime.digits.idx import read_mnist_labels
from digitvae.runtime.folders.locate import shipped_models_dir

pytestmark = pytest.mark.heavy  # starts MLServer processes

HAVE_MLSERVER = importlib.util.find_spec("mlserver") is not None
needs_serve = pytest.mark.skipif(not HAVE_MLSERVER, reason="needs the [serve] extra (MLServer)")
on_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find child processes")

MODELS = ("mnist-vae", "mnist-cvae")
START_TIMEOUT = 120


@dataclass
class Server:
    """A running `digitvae serve` process and its address."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    grpc_port: int

    def get(self, path: str) -> tuple[int, Any]:
        return _send(urllib.request.Request(self.url + path))

    def post(self, path: str, body: bytes | dict[str, Any]) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        return _send(request)

    def infer(self, model: str, *inputs: dict[str, Any], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        body: dict[str, Any] = {"inputs": list(inputs)}
        if outputs is not None:
            body["outputs"] = [{"name": name} for name in outputs]
        status, reply = self.post(f"/v2/models/{model}/infer", body)
        assert status == 200, reply
        return {o["name"]: _array(o) for o in reply["outputs"]}


def _send(request: urllib.request.Request) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def _array(tensor: dict[str, Any]) -> np.ndarray:
    dtype = {"FP32": np.float32, "INT64": np.int64}[tensor["datatype"]]
    return np.asarray(tensor["data"], dtype=dtype).reshape(tensor["shape"])


def tensor(name: str, array: Any, datatype: str | None = None) -> dict[str, Any]:
    array = np.asarray(array)
    datatype = datatype or ("INT64" if array.dtype.kind in "iu" else "FP32")
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.ravel().tolist()}


def _command() -> list[str]:
    script = Path(sys.executable).with_name("digitvae")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from digitvae.cli.main import main; main()"]


def _descendants(pid: int) -> set[int]:
    """Return every living process below pid, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def _group(pgid: int) -> list[int]:
    """Return the living (not zombie) processes of a process group, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split() if entry.name.isdigit() else []
        except OSError:
            continue
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_server(tmp: Path, *args: str, ports: tuple[int, int] | None = None) -> Server:
    """Start `digitvae serve` on free loopback ports (or the HTTP and gRPC `ports` given) and wait until every model is ready."""
    http, grpc = ports or free_ports(2)
    log = tmp / f"serve-{http}.log"
    env = {k: v for k, v in os.environ.items() if k != "DIGITVAE_DEBUG" and not k.startswith("MLSERVER")}
    env["TMPDIR"] = str(tmp)  # its working folder goes here, where the tests can see it removed
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*_command(), "serve", "--port", str(http), "--grpc-port", str(grpc), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp,
            start_new_session=True,  # its own process group, so a failed test can stop all of it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    server = Server(proc, f"http://127.0.0.1:{http}", log, grpc)
    models = [a for flag, a in zip(args, args[1:]) if flag in ("-m", "--model")] or ["mnist-vae"]
    deadline = time.monotonic() + START_TIMEOUT
    waiting = [f"/v2/models/{m}-{role}/ready" for m in models for role in ("encoder", "decoder", "generate")]
    while waiting:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            stop_group(proc)
            pytest.fail(f"the server was not ready in {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")
        try:
            if server.get(waiting[0])[0] == 200:
                waiting.pop(0)
                continue
        except OSError:
            pass
        time.sleep(0.2)
    return server


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill whatever is left of a server's process group (after a failure)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # One worker process: the answers then cross the process boundary, and SIGTERM has a child to stop.
    running = start_server(tmp_path_factory.mktemp("serve"), "--replicas", "1", *(a for m in MODELS for a in ("-m", m)))
    yield running
    stop_group(running.proc)  # whatever is left of it, if a test failed


@pytest.fixture(scope="module")
def cvae() -> DigitVAE:
    return DigitVAE.load("mnist-cvae")


def _plain(model: str, role: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(shipped_models_dir() / model / f"{role}.onnx"), providers=["CPUExecutionProvider"])


@needs_serve
@on_linux
def test_health_and_metadata_list_every_tensor(server: Server, vae: DigitVAE) -> None:
    assert server.get("/v2/health/ready")[0] == 200
    D = vae.latent_dim
    status, meta = server.get("/v2/models/mnist-vae-decoder")
    assert status == 200
    assert meta["name"] == "mnist-vae-decoder"
    assert meta["inputs"] == [{"name": "z", "datatype": "FP32", "shape": [-1, D]}]
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("logits", "FP32", [-1, 1, 28, 28]),
        ("image", "FP32", [-1, 1, 28, 28]),
    ]
    _, meta = server.get("/v2/models/mnist-cvae-encoder")
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        ("image", "FP32", [-1, 1, 28, 28]),
        ("label", "INT64", [-1]),
    ]
    assert meta["inputs"][0]["parameters"]["also_accepts_shape"] == [-1, 784]
    _, meta = server.get("/v2/models/mnist-vae-generate")
    assert [i["name"] for i in meta["inputs"]] == ["n", "seed", "digit", "noise", "uniform", "label"]
    assert [(o["name"], o["shape"]) for o in meta["outputs"]] == [("z", [-1, D]), ("image", [-1, 28, 28])]


@needs_serve
@on_linux
def test_decoder_equals_plain_onnxruntime_bit_for_bit(server: Server, vae: DigitVAE) -> None:
    plain = _plain("mnist-vae", "decoder")
    for rows in (1, 5, 40):
        z = np.random.default_rng(rows).standard_normal((rows, vae.latent_dim), dtype=np.float32)
        got = server.infer("mnist-vae-decoder", tensor("z", z))
        logits, image = plain.run(["logits", "image"], {"z": z})
        assert got["logits"].shape == got["image"].shape == (rows, 1, 28, 28)
        np.testing.assert_array_equal(got["logits"], logits)
        np.testing.assert_array_equal(got["image"], image)
    only = server.infer("mnist-vae-decoder", tensor("z", z), outputs=["image"])
    assert list(only) == ["image"]


@needs_serve
@on_linux
def test_conditional_decoder_takes_labels(server: Server, cvae: DigitVAE) -> None:
    z = np.random.default_rng(1).standard_normal((10, cvae.latent_dim), dtype=np.float32)
    label = np.arange(10, dtype=np.int64)
    got = server.infer("mnist-cvae-decoder", tensor("z", z), tensor("label", label))
    logits, image = _plain("mnist-cvae", "decoder").run(["logits", "image"], {"z": z, "label": label})
    np.testing.assert_array_equal(got["logits"], logits)
    np.testing.assert_array_equal(got["image"], image)


@needs_serve
@on_linux
def test_encoder_equals_the_runtime_in_both_image_shapes(
    server: Server, vae: DigitVAE, cvae: DigitVAE, digits: np.ndarray
) -> None:
    images = digits[:12].astype(np.float32) / 255
    mean, logvar = vae.encode(images)
    for shape in ((12, 1, 28, 28), (12, 784)):
        got = server.infer("mnist-vae-encoder", tensor("image", images.reshape(shape)))
        np.testing.assert_array_equal(got["mean"], mean)
        np.testing.assert_array_equal(got["logvar"], logvar)
    labels = read_mnist_labels(VALID_IMAGES.with_name("t10k-labels-idx1-ubyte.gz"))[:12]
    got = server.infer("mnist-cvae-encoder", tensor("image", images[:, None]), tensor("label", labels))
    np.testing.assert_array_equal(got["mean"], cvae.encode(images, labels)[0])


@needs_serve
@on_linux
@pytest.mark.parametrize(
    "model, extra, digit",
    [
        ("mnist-vae", [], None),
        ("mnist-vae", [tensor("digit", [7])], 7),
        ("mnist-vae", [tensor("digit", [0, 1, 2, 3, 9, 9])], [0, 1, 2, 3, 9, 9]),
        ("mnist-cvae", [], None),
        ("mnist-cvae", [tensor("digit", [4])], 4),
    ],
)
def test_generate_with_a_seed_equals_the_runtime(
    server: Server, vae: DigitVAE, cvae: DigitVAE, model: str, extra: list[dict[str, Any]], digit: Any
) -> None:
    runtime = vae if model == "mnist-vae" else cvae
    got = server.infer(f"{model}-generate", tensor("n", [6]), tensor("seed", [11]), *extra)
    expected = runtime.generate(6, seed=11, digit=digit)
    assert got["image"].shape == expected.shape == (6, 28, 28)
    np.testing.assert_array_equal(got["image"], expected)
    np.testing.assert_array_equal(got["z"], runtime.sample_latents(6, seed=11, digit=digit))


@needs_serve
@on_linux
def test_generate_without_a_seed_gives_new_digits(server: Server) -> None:
    first = server.infer("mnist-vae-generate", tensor("n", [3]))["image"]
    second = server.infer("mnist-vae-generate", tensor("n", [3]))["image"]
    assert first.shape == (3, 28, 28) and not np.array_equal(first, second)


@needs_serve
@on_linux
@pytest.mark.parametrize("model, label", [("mnist-vae", [-1, -1, 3, 7, 0]), ("mnist-cvae", [0, 1, 2, 8, 9])])
def test_generate_sampler_form_equals_prior_then_decoder(
    server: Server, vae: DigitVAE, cvae: DigitVAE, model: str, label: list[int]
) -> None:
    D = (vae if model == "mnist-vae" else cvae).latent_dim
    rng = np.random.default_rng(5)
    noise = rng.standard_normal((5, D), dtype=np.float32)
    uniform = rng.random(5, dtype=np.float32)
    labels = np.asarray(label, np.int64)
    got = server.infer(f"{model}-generate", tensor("noise", noise), tensor("uniform", uniform), tensor("label", labels))
    (z,) = _plain(model, "prior").run(["z"], {"noise": noise, "uniform": uniform, "label": labels})
    feeds = {"z": z} if model == "mnist-vae" else {"z": z, "label": labels}
    (image,) = _plain(model, "decoder").run(["image"], feeds)
    np.testing.assert_array_equal(got["z"], z)
    assert got["image"].shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(got["image"], image)


@needs_serve
@on_linux
def test_32_concurrent_requests_all_succeed(server: Server, vae: DigitVAE) -> None:
    rng = np.random.default_rng(0)
    codes = [rng.standard_normal((1 + i % 3, vae.latent_dim), dtype=np.float32) for i in range(16)]
    plain = _plain("mnist-vae", "decoder")

    def one(i: int) -> bool:
        if i % 2:
            got = server.infer("mnist-vae-generate", tensor("n", [2]), tensor("seed", [i]))["image"]
            return np.array_equal(got, vae.generate(2, seed=i))
        z = codes[i // 2]
        return np.array_equal(
            server.infer("mnist-vae-decoder", tensor("z", z))["image"], plain.run(["image"], {"z": z})[0]
        )

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(32)))
    assert results == [True] * 32


@needs_serve
@on_linux
def test_tritonclient_http_and_grpc_work_unchanged(server: Server, vae: DigitVAE) -> None:
    import tritonclient.http as http  # MLServer depends on tritonclient[http]

    z = np.random.default_rng(2).standard_normal((3, vae.latent_dim), dtype=np.float32)
    client = http.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_ready() and client.is_model_ready("mnist-vae-decoder")
    assert client.get_model_metadata("mnist-vae-decoder")["inputs"][0]["name"] == "z"
    given = http.InferInput("z", list(z.shape), "FP32")
    given.set_data_from_numpy(z, binary_data=False)  # MLServer speaks JSON tensors only
    wanted = [http.InferRequestedOutput("image", binary_data=False)]
    image = client.infer("mnist-vae-decoder", [given], outputs=wanted).as_numpy("image")
    np.testing.assert_array_equal(image, vae.decode(z)[:, None])

    # In a process of its own: tritonclient.grpc and MLServer register the same protobuf names.
    script = _GRPC_CLIENT.format(port=server.grpc_port)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    if "No module named 'tritonclient.grpc'" in done.stderr or "No module named 'grpc'" in done.stderr:
        pytest.skip("tritonclient.grpc is not installed")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["same", "refused"]


_GRPC_CLIENT = """
import numpy as np
import tritonclient.grpc as grpc
from tritonclient.utils import InferenceServerException
from digitvae.runtime import DigitVAE

client = grpc.InferenceServerClient("127.0.0.1:{port}")
n, seed = grpc.InferInput("n", [1], "INT64"), grpc.InferInput("seed", [1], "INT64")
n.set_data_from_numpy(np.array([4], np.int64))
seed.set_data_from_numpy(np.array([9], np.int64))
image = client.infer("mnist-vae-generate", [n, seed]).as_numpy("image")
print("same" if np.array_equal(image, DigitVAE.load().generate(4, seed=9)) else "different")
bad = grpc.InferInput("z", [1, 5], "FP32")
bad.set_data_from_numpy(np.zeros((1, 5), np.float32))
try:
    client.infer("mnist-vae-decoder", [bad])
except InferenceServerException as exc:
    print("refused" if "INVALID_ARGUMENT" in str(exc) else exc)
"""


_Z = [0.0] * 32
_BAD = {
    "bad JSON": ("mnist-vae-decoder", b'{"inputs": [{"name": "z",'),
    "not an object": ("mnist-vae-decoder", b"[1, 2]"),
    "NaN literal": ("mnist-vae-decoder", b'{"inputs":[{"name":"z","datatype":"FP32","shape":[1,1],"data":[NaN]}]}'),
    "unknown model": ("no-such-model", {"inputs": [tensor("z", [_Z])]}),
    "missing input": ("mnist-cvae-decoder", {"inputs": [tensor("z", [_Z[:16]])]}),
    "unknown input": ("mnist-vae-decoder", {"inputs": [tensor("z", [_Z]), tensor("w", [1.0])]}),
    "missing data": ("mnist-vae-decoder", {"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 32]}]}),
    "wrong shape": ("mnist-vae-decoder", {"inputs": [tensor("z", [_Z[:5]])]}),
    "wrong rank": ("mnist-vae-encoder", {"inputs": [tensor("image", np.zeros((1, 28, 28)))]}),
    "too few values": ("mnist-vae-decoder", {"inputs": [{**tensor("z", [_Z]), "data": [0.0, 1.0]}]}),
    "wrong datatype": ("mnist-vae-decoder", {"inputs": [tensor("z", np.zeros((1, 32), np.int64))]}),
    "unknown datatype": ("mnist-vae-decoder", {"inputs": [{**tensor("z", [_Z]), "datatype": "FP99"}]}),
    "strings": ("mnist-vae-decoder", {"inputs": [{**tensor("z", [_Z]), "data": ["NaN"] * 32}]}),
    "infinite": ("mnist-vae-decoder", {"inputs": [{**tensor("z", [_Z]), "data": [1e300] * 32}]}),
    "pixels above 1": ("mnist-vae-encoder", {"inputs": [tensor("image", np.full((1, 784), 2.0))]}),
    "n too large": ("mnist-vae-generate", {"inputs": [tensor("n", [10**9])]}),
    "n negative": ("mnist-vae-generate", {"inputs": [tensor("n", [-3])]}),
    "n zero": ("mnist-vae-generate", {"inputs": [tensor("n", [0])]}),
    "n not integer": ("mnist-vae-generate", {"inputs": [tensor("n", [2.5], "INT64")]}),
    "seed negative": ("mnist-vae-generate", {"inputs": [tensor("n", [2]), tensor("seed", [-1])]}),
    "digit out of range": ("mnist-vae-generate", {"inputs": [tensor("n", [2]), tensor("digit", [10])]}),
    "digit rows": ("mnist-vae-generate", {"inputs": [tensor("n", [2]), tensor("digit", [1, 2, 3])]}),
    "label out of range": ("mnist-cvae-decoder", {"inputs": [tensor("z", np.zeros((1, 16))), tensor("label", [10])]}),
    "label rows": ("mnist-cvae-decoder", {"inputs": [tensor("z", np.zeros((2, 16))), tensor("label", [1])]}),
    "sampler label -2": (
        "mnist-vae-generate",
        {"inputs": [tensor("noise", [_Z]), tensor("uniform", [0.5]), tensor("label", [-2])]},
    ),
    "sampler label -1 for a conditional decoder": (
        "mnist-cvae-generate",
        {"inputs": [tensor("noise", np.zeros((1, 16))), tensor("uniform", [0.5]), tensor("label", [-1])]},
    ),
    "uniform 1": (
        "mnist-vae-generate",
        {"inputs": [tensor("noise", [_Z]), tensor("uniform", [1.0]), tensor("label", [-1])]},
    ),
    "mixed forms": ("mnist-vae-generate", {"inputs": [tensor("n", [1]), tensor("noise", [_Z])]}),
    "unknown output": ("mnist-vae-decoder", {"inputs": [tensor("z", [_Z])], "outputs": [{"name": "mean"}]}),
    "too many rows": ("mnist-vae-decoder", {"inputs": [tensor("z", np.zeros((1025, 32)))]}),
}


@needs_serve
@on_linux
@pytest.mark.parametrize("case", list(_BAD))
def test_malformed_requests_get_a_4xx_with_a_json_error(server: Server, case: str) -> None:
    model, body = _BAD[case]
    status, reply = server.post(f"/v2/models/{model}/infer", body)
    assert 400 <= status < 500, (status, reply)
    assert isinstance(reply, dict) and ("error" in reply or "detail" in reply), reply
    assert "Traceback" not in json.dumps(reply)


@needs_serve
@on_linux
def test_the_server_survives_bad_requests(server: Server) -> None:
    assert server.get("/v2/models/mnist-vae-decoder/ready")[0] == 200
    assert "image" in server.infer("mnist-vae-decoder", tensor("z", [_Z]))
    assert "Traceback" not in server.log.read_text()


def _stop_and_check(server: Server, sig: signal.Signals, workers: bool = True) -> None:
    """Send sig; the server must exit 0 within 30 s with no process of its own left."""
    family = _descendants(server.proc.pid)
    assert family or not workers, "the server has no worker process to check"
    server.proc.send_signal(sig)
    try:
        code = server.proc.wait(30)
    except subprocess.TimeoutExpired:
        stop_group(server.proc)
        pytest.fail(f"the server ignored {sig.name} for 30 s:\n{server.log.read_text()[-2000:]}")
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in family if _alive(p)]
    grouped = _group(server.proc.pid)
    stop_group(server.proc)
    assert code == 0, server.log.read_text()[-2000:]
    assert left == [], f"processes left behind: {left}"
    assert grouped == [], f"processes of its process group left behind: {grouped}"
    assert list(server.log.parent.glob("digitvae-serve-*")) == [], "its working folder is left behind"


@needs_serve
@on_linux
def test_sigterm_stops_it_and_leaves_no_process(server: Server) -> None:
    _stop_and_check(server, signal.SIGTERM)


@needs_serve
@on_linux
def test_sigint_stops_two_workers_and_the_metrics_server_too(tmp_path: Path) -> None:
    (metrics,) = free_ports(1)
    running = start_server(tmp_path, "--replicas", "2", "--metrics-port", str(metrics))
    assert len(_descendants(running.proc.pid)) >= 2
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=30) as response:
        assert b"rest_server_requests_total" in response.read()
    _stop_and_check(running, signal.SIGINT)


@needs_serve
@on_linux
def test_the_default_runs_inference_in_the_server_process(tmp_path: Path) -> None:
    running = start_server(tmp_path, "-m", "mnist-vae")
    z = np.random.default_rng(3).standard_normal((7, 32), dtype=np.float32)
    got = running.infer("mnist-vae-decoder", tensor("z", z))
    np.testing.assert_array_equal(got["image"], _plain("mnist-vae", "decoder").run(["image"], {"z": z})[0])
    _stop_and_check(running, signal.SIGTERM, workers=False)


@needs_serve
@on_linux
def test_workers_exit_when_the_server_is_killed(tmp_path: Path) -> None:
    running = start_server(tmp_path, "--replicas", "1")
    family = _descendants(running.proc.pid)
    os.kill(running.proc.pid, signal.SIGKILL)
    running.proc.wait(10)
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in family if _alive(p)]
    stop_group(running.proc)
    assert left == [], f"workers outlived their server: {left}"


@needs_serve
@on_linux
@pytest.mark.parametrize("option", ["--port", "--grpc-port", "--metrics-port"])
def test_a_taken_port_is_one_error_line_and_nothing_says_serving(option: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        free = iter(free_ports(2))
        ports = {name: str(port) if name == option else str(next(free)) for name in ("--port", "--grpc-port")}
        if option == "--metrics-port":
            ports[option] = str(port)
        args = [word for pair in ports.items() for word in pair]
        done = _assert_one_error_line(args, f"cannot listen on 127.0.0.1:{port}")
    assert done.returncode == 1
    assert "serving" not in done.stderr and "Ctrl-C" not in done.stderr, done.stderr
    assert done.stdout == ""


@needs_serve
@on_linux
@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--model", "no-such-model"], "no-such-model"),
        (["--port", "9000", "--grpc-port", "9000"], "must differ"),
        (["--variant", "fp64"], "fp64"),
        (["--model", "mnist-vae", "--model", "mnist-vae"], "share a name"),
    ],
)
def test_bad_options_are_one_error_line(args: list[str], fragment: str) -> None:
    _assert_one_error_line(args, fragment)


def _assert_one_error_line(args: list[str], fragment: str) -> subprocess.CompletedProcess[str]:
    """Run `digitvae serve ARGS` in a process of its own; it must fail with one error line naming fragment.

    Not in-process: MLServer and tritonclient.grpc register the same protobuf names, so a test
    process that imported the gRPC client could not import MLServer.
    """
    done = subprocess.run([*_command(), "serve", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment.lower() in errors[0].lower(), done.stderr
    return done


def test_without_the_extra_it_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # importlib.util.find_spec returns None for a module whose sys.modules entry is None.
    monkeypatch.setitem(sys.modules, "mlserver", None)
    assert_clean_failure(invoke("serve"), "[serve]")
