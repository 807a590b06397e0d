import pytest

import harness


def pytest_sessionstart(session):
    missing = [p for p in (harness.CLI, harness.WASM) if not p.exists()]
    if missing:
        raise pytest.UsageError(f"missing build outputs {missing}; run ./test-harness/test.sh")


@pytest.fixture(scope="module")
def envoy():
    """The shipped plugin configuration (envoy/plugin.json) in a real Envoy."""
    with harness.stack(name="main") as e:
        yield e


@pytest.fixture()
def client(envoy):
    c = harness.Client(envoy.listen_port)
    yield c
    c.close()
