"""A local ``tritonserver`` from the ``nvidia-pytriton`` wheel, for serving a repository on this host (and the tests).

The wheel ships Triton 2.51's server binary and its Python backend but pins ``numpy<2``, so it is not installed into
trtbuild's environment: ``make install`` unpacks it (``pip install --no-deps --target .venv/triton``) and puts a
``numpy<2`` beside it (``.venv/triton/numpy1``: the 2.51 Python backend returns empty tensors with NumPy 2). What it
takes to run, found out on this host: the backend folder must hold ``libtriton_python.so``,
``triton_python_backend_utils.py`` and the ``triton_python_backend_stub`` of the running Python version (the wheel keeps
one per version), ``LD_LIBRARY_PATH`` must include the wheel's ``nvidia_pytriton.libs/``, and the stub does not inherit
``PYTHONPATH`` (the deployed ``model.py`` shims put trtbuild on ``sys.path`` themselves).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ..errors import DependencyMissingError, InputError, TrtbuildError

KIT_VERSION = "0.7.0"  # nvidia-pytriton: tritonserver 2.51.0
KIT_HINT = (f"install the Triton server kit: make install, or pip install --no-deps --target .venv/triton "
            f"nvidia-pytriton=={KIT_VERSION} && pip install --target .venv/triton/numpy1 'numpy<2'")


def kit_home() -> Path:
    """Where the unpacked wheel is: ``$TRTBUILD_TRITON_HOME``, else ``<python prefix>/triton``."""
    return Path(os.environ.get("TRTBUILD_TRITON_HOME") or Path(sys.prefix) / "triton")


def find_kit(home: Path | None = None) -> Path:
    home = Path(home or kit_home())
    if not (home / "pytriton" / "tritonserver" / "bin" / "tritonserver").is_file():
        raise DependencyMissingError(f"{home}: no tritonserver here; {KIT_HINT}")
    return home


def stub_paths(home: Path | None = None) -> list[str]:
    """``sys.path`` entries a Python-backend model needs on this host: the kit's ``numpy<2``, then this environment's
    packages and trtbuild's own folder."""
    home = Path(home or kit_home())
    site = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    return [str(home / "numpy1"), *site, str(Path(__file__).resolve().parents[2])]  # the folder holding trtbuild/


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TritonServer:
    """``with TritonServer(repo) as server:`` starts tritonserver on loopback ports, waits until it is ready, and
    always stops it. ``server.http_url`` / ``server.grpc_url`` for clients; ``server.log`` holds its output."""

    def __init__(self, repository: str | os.PathLike, home: Path | None = None, timeout: float = 120,
                 http_port: int | None = None, grpc_port: int | None = None, address: str = "127.0.0.1"):
        self.repository = Path(repository)
        if not (self.repository / ".").is_dir():
            raise InputError(f"{self.repository}: no such model repository; make one with `trtbuild deploy triton`")
        self.home, self.timeout = find_kit(home), timeout
        self.process: subprocess.Popen | None = None
        self.http_port, self.grpc_port = http_port or free_port(), grpc_port or free_port()
        self.metrics_port, self.address = free_port(), address
        self.work = Path(tempfile.mkdtemp(prefix="trtbuild-triton-"))
        self.log = self.work / "tritonserver.log"

    @property
    def http_url(self) -> str:
        return f"http://{self._host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self._host}:{self.grpc_port}"

    @property
    def _host(self) -> str:
        return "127.0.0.1" if self.address in ("0.0.0.0", "") else self.address

    def _backends(self) -> Path:
        server = self.home / "pytriton" / "tritonserver"
        python = self.work / "backends" / "python"
        python.mkdir(parents=True)
        for f in (server / "backends" / "python").iterdir():
            if f.is_file():
                shutil.copy(f, python / f.name)
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = server / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise DependencyMissingError(f"{stub.parent}: the Triton kit has no Python backend stub for Python "
                                         f"{version}; use Python 3.8-3.13")
        shutil.copy(stub, python / stub.name)
        return python.parent

    def start(self) -> TritonServer:
        server = self.home / "pytriton" / "tritonserver"
        env = dict(os.environ)
        libs = str(self.home / "nvidia_pytriton.libs")
        env["LD_LIBRARY_PATH"] = libs + (os.pathsep + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
        cmd = [str(server / "bin" / "tritonserver"), f"--model-repository={self.repository.resolve()}",
               f"--backend-directory={self._backends()}", f"--http-port={self.http_port}",
               f"--grpc-port={self.grpc_port}", f"--metrics-port={self.metrics_port}", "--allow-metrics=false",
               f"--http-address={self.address}", f"--grpc-address={self.address}", "--exit-on-error=true", "--log-verbose=0"]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TrtbuildError(f"tritonserver exited ({self.process.returncode}) while loading "
                                    f"{self.repository}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TrtbuildError(f"tritonserver was not ready within {self.timeout:.0f} s: {self.tail()}")

    def tail(self, lines: int = 3) -> str:
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        keep = [ln for ln in text.splitlines() if ln.startswith(("E", "W")) or "error" in ln.lower()]
        return " | ".join((keep or text.splitlines() or ["no output"])[-lines:])

    def stop(self) -> None:
        """Stop the server, then whatever it left in its process group (Python-backend stubs outlive a killed
        server)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # start_new_session: the group id is the server's pid
        except (ProcessLookupError, PermissionError):
            pass
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
