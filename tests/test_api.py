"""The top-level API: one verb per method, importable straight from `edgeslim`."""
import subprocess
import sys


def test_callable_packages_work_after_plain_import():
    code = ("import edgeslim, torch\n"
            "from edgeslim.models import create\n"
            "m = create('seed-cnn', width=0.25)\n"
            "r = edgeslim.prune(m, edgeslim.Unstructured(sparsity=0.5, scope='layer'), input_shape=(1, 32, 32))\n"
            "assert isinstance(r, edgeslim.Result)\n"
            "assert round(float((r.model.features[3].weight == 0).float().mean()), 1) == 0.5\n"
            "verbs = ('train', 'evaluate', 'export', 'prune', 'quantize', 'distill', 'compress', 'search')\n"
            "assert all(callable(getattr(edgeslim, v)) for v in verbs)\n"
            "assert edgeslim.export.export_onnx and edgeslim.train.fit  # still the packages too\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_import_edgeslim_is_light():
    out = subprocess.run([sys.executable, "-c", "import sys, edgeslim; print('torch' in sys.modules)"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "False"
