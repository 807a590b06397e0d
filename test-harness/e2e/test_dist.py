"""The release bundle (test-harness/dist.sh), made from the module this suite built: what it
holds, that two runs give the same bytes, that both OCI image layouts follow the OCI image
spec - checked by two independent implementations, the OCI's Python bindings
(`opencontainers` from PyPI) and skopeo (Debian's package, containers/image), plus every
digest and size checked against the blobs here - that the Wasm artifact and the compat image
have the shape Istio's fetcher pulls, and that the SBOM lists exactly the crates compiled
into the module."""

import gzip
import hashlib
import io
import json
import logging
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
from opencontainers.digest.exceptions import ErrDigestInvalidFormat, ErrDigestInvalidLength, ErrDigestUnsupported
from opencontainers.image.v1 import Descriptor, Image, ImageLayout, Index, Manifest

import harness

DIST = harness.HARNESS_DIR / "scripts" / "dist.py"
VERSION = "0.1.0"
NAME = f"agent-iam-{VERSION}"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"


def make_bundle(out, wasm=harness.WASM, allow_dirty=True):
    args = [sys.executable, str(DIST), "--wasm", str(wasm), "--out", str(out)]
    if allow_dirty:
        args.append("--allow-dirty")
    return subprocess.run(args, capture_output=True, text=True, cwd=harness.ROOT, timeout=300)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """The bundle, made twice (into two folders) from the suite's module."""
    outs = []
    for run in ("first", "second"):
        out = tmp_path_factory.mktemp(f"dist-{run}")
        proc = make_bundle(out)
        assert proc.returncode == 0, proc.stderr
        outs.append(out)
    return outs


@pytest.fixture(scope="module")
def bundle(bundles):
    return bundles[0] / NAME


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---- the OCI image spec -------------------------------------------------------------------

class ArtifactManifest(Manifest):
    """An image manifest as image-spec 1.1 has it for artifacts: any config and layer media
    type. `opencontainers` 0.0.15 implements image-spec 1.0, whose manifest only took the
    image config and the tar layer types (its `Manifest._validate`); everything else it checks
    (schemaVersion, the config descriptor, a non-empty list of valid layer descriptors, the
    annotations, no unknown field) it still checks here."""

    def _validate(self):
        return True


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def oci_python(kind, doc):
    """What `opencontainers` (the OCI's Python bindings) says is wrong with `doc` loaded as
    `kind` (Index, Manifest, Image, ImageLayout, Descriptor) with validation on: [] when it
    accepts it. It reports through its logger and `sys.exit`, and bad digests by raising."""
    doc = dict(doc)
    problems = []
    # `mediaType` in an index or a manifest came with image-spec 1.0.2, after the version
    # the package implements (it rejects the field as unknown): checked here instead.
    if kind in (Index, Manifest, ArtifactManifest) and "mediaType" in doc:
        expected = INDEX if kind is Index else MANIFEST
        if doc.pop("mediaType") != expected:
            problems.append(f"mediaType is not {expected}")
    log = logging.getLogger("opencontainers.logger")
    handler = _Messages()
    log.addHandler(handler)
    try:
        kind().load(doc, validate=True)
    except SystemExit:
        problems += handler.messages or [f"{kind.__name__} is invalid"]
    except (ErrDigestInvalidFormat, ErrDigestInvalidLength, ErrDigestUnsupported) as e:
        problems.append(str(e))
    finally:
        log.removeHandler(handler)
    # What the package leaves to the caller: the versions' values, and annotations being
    # strings (image-spec annotations.md).
    if kind in (Index, Manifest, ArtifactManifest) and doc.get("schemaVersion") != 2:
        problems.append(f"schemaVersion {doc.get('schemaVersion')!r} is not 2")
    if kind is ImageLayout and doc.get("imageLayoutVersion") != "1.0.0":
        problems.append(f"imageLayoutVersion {doc.get('imageLayoutVersion')!r} is not 1.0.0")
    for d in [doc, *doc.get("manifests", []), doc.get("config"), *doc.get("layers", [])]:
        annotations = d.get("annotations", {}) if isinstance(d, dict) else {}
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            problems.append("annotations must map strings to strings")
    return problems


def layout_problems(root):
    """Everything in the OCI image layout at `root` that breaks the image spec: the
    `oci-layout` file, `index.json`, each manifest and image config as `opencontainers`
    reads them, and every descriptor's digest and size against its blob (no blob missing,
    none left over, each blob named by its own digest)."""
    problems = []

    def check(kind, doc, where):
        problems.extend(f"{where}: {e}" for e in oci_python(kind, doc))

    def blob(desc, where):
        m = re.fullmatch(r"sha256:([0-9a-f]{64})", desc.get("digest", ""))
        if not m:
            problems.append(f"{where}: digest {desc.get('digest')!r} is not sha256:<64 hex>")
            return None
        path = root / "blobs" / "sha256" / m.group(1)
        if not path.is_file():
            problems.append(f"{where}: blob {desc['digest']} missing")
            return None
        data = path.read_bytes()
        if len(data) != desc.get("size"):
            problems.append(f"{where}: size {desc.get('size')} but the blob has {len(data)} bytes")
        if hashlib.sha256(data).hexdigest() != m.group(1):
            problems.append(f"{where}: blob {desc['digest']} does not hash to its digest")
        used.add(m.group(1))
        return data

    used = set()
    if not (root / "oci-layout").is_file() or not (root / "index.json").is_file():
        return ["oci-layout or index.json missing"]
    check(ImageLayout, json.loads((root / "oci-layout").read_text()), "oci-layout")
    index = json.loads((root / "index.json").read_text())
    check(Index, index, "index.json")
    for i, mdesc in enumerate(index.get("manifests", [])):
        where = f"index.json manifests[{i}]"
        if "org.opencontainers.image.ref.name" not in mdesc.get("annotations", {}):
            problems.append(f"{where}: no org.opencontainers.image.ref.name")
        data = blob(mdesc, where)
        if data is None:
            continue
        if mdesc.get("mediaType") != MANIFEST:
            problems.append(f"{where}: mediaType {mdesc.get('mediaType')}")
            continue
        manifest = json.loads(data)
        config = manifest.get("config", {})
        artifact = config.get("mediaType") != IMAGE_CONFIG
        check(ArtifactManifest if artifact else Manifest, manifest, f"manifest {mdesc['digest']}")
        config_data = blob(config, f"manifest {mdesc['digest']} config")
        if config_data is not None and not artifact:
            check(Image, json.loads(config_data), f"config {config['digest']}")
        for j, layer in enumerate(manifest.get("layers", [])):
            blob(layer, f"manifest {mdesc['digest']} layers[{j}]")
    left = {p.name for p in (root / "blobs" / "sha256").iterdir()} - used
    problems.extend(f"blob {d} is not referenced" for d in sorted(left))
    return problems


def manifest_of(root):
    [desc] = json.loads((root / "index.json").read_text())["manifests"]
    return desc, json.loads((root / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_bytes())


def blob_bytes(root, desc):
    return (root / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_bytes()


# ---- the tests ----------------------------------------------------------------------------

def test_two_runs_give_byte_identical_bundles(bundles):
    first, second = (files(b) for b in bundles)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
    assert f"{NAME}.tar.gz" in first


def test_the_bundle_holds_the_module_its_hash_its_metadata_and_its_papers(bundle):
    names = set(files(bundle))
    assert {"agent_iam.wasm", "agent_iam.wasm.sha256", "agent_iam.meta.json", "sbom.cdx.json", "CHANGELOG.md",
            "LICENSE", "oci/oci-layout", "oci/index.json", "oci-compat/oci-layout", "oci-compat/index.json"} <= names
    assert {n.split("/")[0] for n in names} == {"agent_iam.wasm", "agent_iam.wasm.sha256", "agent_iam.meta.json",
                                                 "sbom.cdx.json", "CHANGELOG.md", "LICENSE", "oci", "oci-compat"}
    wasm = (bundle / "agent_iam.wasm").read_bytes()
    assert wasm == harness.WASM.read_bytes()
    line = (bundle / "agent_iam.wasm.sha256").read_text()
    assert line == f"{hashlib.sha256(wasm).hexdigest()}  agent_iam.wasm\n"
    check = subprocess.run(["sha256sum", "-c", "agent_iam.wasm.sha256"], cwd=bundle, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout == "agent_iam.wasm: OK\n"
    assert (bundle / "agent_iam.meta.json").read_bytes() == (harness.ROOT / "agent_iam.meta.json").read_bytes()
    assert (bundle / "LICENSE").read_bytes() == (harness.ROOT / "LICENSE").read_bytes()
    notes = (bundle / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(VERSION)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", notes, re.M)
    assert notes.count("\n## [") == 1  # this version's entry only


def test_the_archive_holds_the_folder_with_fixed_owners_times_and_order(bundles, bundle):
    data = (bundles[0] / f"{NAME}.tar.gz").read_bytes()
    assert data[:3] == b"\x1f\x8b\x08" and data[3] & 0x08 == 0  # gzip, no file name
    assert data[4:8] == b"\0\0\0\0"  # no time
    sums = (bundles[0] / f"{NAME}.tar.gz.sha256").read_text()
    assert sums == f"{hashlib.sha256(data).hexdigest()}  {NAME}.tar.gz\n"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names) and names[0] == NAME
        assert len({m.mtime for m in members}) == 1
        assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
        content = {m.name.removeprefix(f"{NAME}/"): tar.extractfile(m).read() for m in members if m.isfile()}
    assert content == files(bundle)


@pytest.mark.parametrize("layout", ["oci", "oci-compat"])
def test_each_oci_layout_follows_the_image_spec(bundle, layout):
    assert layout_problems(bundle / layout) == []
    desc, manifest = manifest_of(bundle / layout)
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == VERSION
    assert manifest["annotations"]["org.opencontainers.image.version"] == VERSION
    assert manifest["annotations"]["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_the_checks_catch_a_broken_layout(bundle, tmp_path):
    """The validators fail on what they are there to catch."""
    root = tmp_path / "oci"
    shutil.copytree(bundle / "oci", root)
    desc, manifest = manifest_of(root)
    _, image = manifest_of(bundle / "oci-compat")
    config = json.loads(blob_bytes(bundle / "oci-compat", image["config"]))
    assert oci_python(ArtifactManifest, manifest) == []
    assert oci_python(Manifest, image) == [] and oci_python(Image, config) == []
    # image-spec 1.0's rule, which the artifact is exempt from, holds for the compat image.
    assert oci_python(Manifest, dict(image, config=manifest["config"]))
    assert oci_python(Manifest, dict(image, layers=manifest["layers"]))
    assert oci_python(ArtifactManifest, dict(manifest, schemaVersion=1))
    assert oci_python(ArtifactManifest, dict(manifest, schemaVersion="2"))
    assert oci_python(ArtifactManifest, dict(manifest, mediaType=INDEX))
    assert oci_python(ArtifactManifest, dict(manifest, layers=[]))
    assert oci_python(ArtifactManifest, {k: v for k, v in manifest.items() if k != "config"})
    assert oci_python(ArtifactManifest, dict(manifest, layers=[dict(manifest["layers"][0], mediaType="wasm")]))
    assert oci_python(ArtifactManifest, dict(manifest, annotations={"org.opencontainers.image.version": 1}))
    assert oci_python(Descriptor, dict(desc, digest="sha256"))
    assert oci_python(Descriptor, dict(desc, digest="sha256:" + "0" * 63))
    assert oci_python(Descriptor, {k: v for k, v in desc.items() if k != "size"})
    assert oci_python(Index, {"schemaVersion": 2, "manifests": [dict(desc, size="1")]})
    assert oci_python(Index, {"schemaVersion": 2, "manifests": [desc], "mediaType": MANIFEST})
    assert oci_python(ImageLayout, {"imageLayoutVersion": "2.0.0"})
    assert oci_python(Image, {"architecture": "wasm"})  # no os, no rootfs
    assert oci_python(Image, dict(config, rootfs={"type": "layers", "diff_ids": ["387a33"]}))
    assert oci_python(Image, dict(config, created="yesterday"))
    wasm_blob = root / "blobs" / "sha256" / manifest["layers"][1]["digest"].split(":")[1]
    wasm_blob.write_bytes(wasm_blob.read_bytes() + b"\0")
    assert [p for p in layout_problems(root) if "does not hash" in p or "size" in p]
    (root / "blobs" / "sha256" / ("0" * 64)).write_bytes(b"stray")
    assert f"blob {'0' * 64} is not referenced" in layout_problems(root)


def test_the_wasm_artifact_has_the_shape_istio_pulls(bundle):
    """Istio's fetcher (pkg/wasm/imagefetcher.go) reads a manifest whose layers are exactly
    two, one of them `…content.layer.v1+wasm` holding the raw module; its WasmPlugin
    `sha256` is the manifest's digest."""
    root = bundle / "oci"
    desc, manifest = manifest_of(root)
    assert manifest["config"]["mediaType"] == WASM_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [WASM_CONFIG, WASM_LAYER]
    assert blob_bytes(root, manifest["layers"][1]) == harness.WASM.read_bytes()
    runtime = json.loads(blob_bytes(root, manifest["config"]))
    assert runtime == {"type": "envoy_proxy", "abiVersions": ["proxy_abi_version_0_2_1"],
                       "config": {"rootIds": ["agent_iam"]}}
    assert blob_bytes(root, manifest["layers"][0]) == blob_bytes(root, manifest["config"])


def test_the_compat_image_is_one_layer_holding_exactly_plugin_wasm(bundle):
    root = bundle / "oci-compat"
    _, manifest = manifest_of(root)
    assert manifest["config"]["mediaType"] == IMAGE_CONFIG
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == TAR_GZIP
    packed = blob_bytes(root, layer)
    assert packed[3] & 0x08 == 0 and packed[4:8] == b"\0\0\0\0"
    tar_bytes = gzip.decompress(packed)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        [member] = tar.getmembers()
        assert member.name == "plugin.wasm" and member.isfile()
        assert tar.extractfile(member).read() == harness.WASM.read_bytes()
    config = json.loads(blob_bytes(root, manifest["config"]))
    assert config["rootfs"] == {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar_bytes).hexdigest()}"]}
    assert (config["architecture"], config["os"]) == ("wasm", "wasip1")


def skopeo(*args):
    if not shutil.which("skopeo"):
        pytest.fail("skopeo is missing: test-harness/scripts/skopeo-setup.sh installs it (test.sh runs it)")
    return subprocess.run(["skopeo", *args], capture_output=True, timeout=120)


@pytest.mark.parametrize("layout", ["oci", "oci-compat"])
def test_skopeo_reads_each_layout_and_verifies_its_blobs(bundle, layout, tmp_path):
    root = bundle / layout
    desc, manifest = manifest_of(root)
    ref = f"oci:{root}:{VERSION}"
    raw = skopeo("inspect", "--raw", ref)
    assert raw.returncode == 0, raw.stderr
    assert f"sha256:{hashlib.sha256(raw.stdout).hexdigest()}" == desc["digest"]
    config = skopeo("inspect", "--config", "--raw", ref)
    assert config.returncode == 0, config.stderr
    assert config.stdout == blob_bytes(root, manifest["config"])
    inspected = skopeo("inspect", ref)
    if layout == "oci":
        # containers/image tells an artifact from an image by the config's media type.
        assert inspected.returncode != 0
        assert f'artifact with type \\"{WASM_CONFIG}\\"'.encode() in inspected.stderr
    else:
        assert inspected.returncode == 0, inspected.stderr
        image = json.loads(inspected.stdout)
        assert (image["Digest"], image["Architecture"], image["Os"]) == (desc["digest"], "wasm", "wasip1")
        assert image["Layers"] == [layer["digest"] for layer in manifest["layers"]]
    copied = skopeo("copy", "--quiet", ref, f"dir:{tmp_path / 'copy'}")
    assert copied.returncode == 0, copied.stderr
    got = {p.name: p.read_bytes() for p in (tmp_path / "copy").iterdir()}
    assert got.pop("manifest.json") == blob_bytes(root, desc)
    assert got.pop("version").startswith(b"Directory Transport Version: ")
    assert got == {d["digest"].split(":")[1]: blob_bytes(root, d) for d in [manifest["config"], *manifest["layers"]]}
    module = harness.WASM.read_bytes()
    if layout == "oci":
        assert got[manifest["layers"][1]["digest"].split(":")[1]] == module
    else:
        with tarfile.open(fileobj=io.BytesIO(got[manifest["layers"][0]["digest"].split(":")[1]])) as tar:
            assert tar.extractfile("plugin.wasm").read() == module
    # A blob that does not match its digest is refused.
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    last = broken / "blobs" / "sha256" / manifest["layers"][-1]["digest"].split(":")[1]
    last.write_bytes(last.read_bytes()[:-1] + bytes([last.read_bytes()[-1] ^ 1]))
    refused = skopeo("copy", "--quiet", f"oci:{broken}:{VERSION}", f"dir:{tmp_path / 'copy2'}")
    assert refused.returncode != 0 and b"digest" in refused.stderr.lower()


def cargo_lock():
    out, pkg = {}, {}
    for line in (harness.ROOT / "Cargo.lock").read_text().splitlines() + ["[[package]]"]:
        if line == "[[package]]":
            if pkg:
                out[pkg["name"], pkg["version"]] = pkg.get("checksum")
            pkg = {}
        elif m := re.fullmatch(r'(name|version|checksum) = "([^"]*)"', line):
            pkg[m.group(1)] = m.group(2)
    return out


def test_the_sbom_lists_the_crates_compiled_into_the_module(bundle):
    bom = json.loads((bundle / "sbom.cdx.json").read_text())
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
    assert re.fullmatch(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", bom["serialNumber"])
    top = bom["metadata"]["component"]
    assert top["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(harness.WASM.read_bytes()).hexdigest()}]
    assert (top["name"], top["version"], top["licenses"]) == ("agent-iam", VERSION, [{"expression": "Apache-2.0"}])
    lock = cargo_lock()
    names = set()
    for c in bom["components"]:
        key = (c["name"], c["version"])
        assert key in lock, key
        assert c["purl"] == c["bom-ref"] == f"pkg:cargo/{c['name']}@{c['version']}"
        assert c["hashes"] == [{"alg": "SHA-256", "content": lock[key]}]
        assert c["licenses"] and all(set(lic) in ({"expression"}, {"license"}) for lic in c["licenses"])
        names.add(c["name"])
    # What the filter compiles in, and what it never does: the CLI's and the tests' crates,
    # proc macros (they run in the compiler), crates only another workspace member enables.
    assert {"regorus", "proxy-wasm", "serde_json", "p256", "rsa", "ed25519-dalek", "jwt-compact", "sha2"} <= names
    assert not names & {"clap", "tokio", "hyper", "schemars", "criterion", "proptest", "libtest-mimic",
                        "serde_derive", "thiserror-impl", "cfg_aliases", "wasm-bindgen", "embedded-io"}
    refs = {c["bom-ref"] for c in bom["components"]} | {top["bom-ref"]}
    deps = {d["ref"]: d["dependsOn"] for d in bom["dependencies"]}
    assert set(deps) == refs and all(set(v) <= refs for v in deps.values())
    assert "pkg:cargo/proxy-wasm@0.2.5" in deps[top["bom-ref"]]
    reachable, todo = set(), [top["bom-ref"]]
    while todo:
        r = todo.pop()
        if r not in reachable:
            reachable.add(r)
            todo += deps[r]
    assert reachable == refs  # nothing listed that the module does not reach


def test_dist_refuses_a_module_not_built_from_the_commit(tmp_path):
    fake = tmp_path / "agent_iam.wasm"
    fake.write_bytes(b"\0asm\x01\0\0\0")
    proc = make_bundle(tmp_path / "out", wasm=fake, allow_dirty=False)
    assert proc.returncode == 1
    assert "was not built from HEAD" in proc.stderr and "--allow-dirty" in proc.stderr
    assert not (tmp_path / "out" / NAME).exists()
    proc = make_bundle(tmp_path / "out", wasm=tmp_path / "missing.wasm")
    assert proc.returncode != 0
