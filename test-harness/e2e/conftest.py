import pytest

import harness


def pytest_sessionstart(session):
    module = harness.DYNAMIC_MODULE if harness.BUILD == "dynamic-module" else harness.WASM
    missing = [p for p in (harness.CLI, module) if not p.exists()]
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
    c.envoy = envoy
    yield c
    c.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tail of the Envoy log the test ran against."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        envoys = [v for v in item.funcargs.values() if isinstance(v, harness.Envoy)]
        envoys += [v.envoy for v in item.funcargs.values() if isinstance(getattr(v, "envoy", None), harness.Envoy)]
        for envoy in envoys[:1]:
            report.sections.append((f"Envoy log ({envoy.log_path})", envoy.log()[-20000:]))
