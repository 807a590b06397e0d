#!/usr/bin/env python3
"""Writes the release bundle of a built module (test-harness/dist.sh builds it first):

  OUT/agent-iam-VERSION/
    agent_iam.wasm              the filter module (what Envoy, Istio and Kong load)
    agent_iam.wasm.sha256       its SHA-256, in `sha256sum` format
    agent_iam.meta.json         Kong's filter metadata (the configuration's JSON Schema)
    sbom.cdx.json               CycloneDX SBOM: the crates compiled into the module
    CHANGELOG.md                this version's changelog entry
    LICENSE
    oci/                        OCI image layout, Wasm artifact ("oci" variant Istio pulls)
    oci-compat/                 OCI image layout, one tar+gzip layer holding plugin.wasm
  OUT/agent-iam-VERSION.tar.gz  (+ .sha256) the same folder as one archive

Deterministic: the same module and sources give byte-identical files and archives (sorted
JSON keys, fixed file times, sorted archive entries, gzip without a time or a file name).
Times come from SOURCE_DATE_EPOCH, else from the commit. Standard library only.

Usage: dist.py --wasm PATH [--out DIR] [--allow-dirty]"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = "wasm32-wasip1"
ROOT_ID = "agent_iam"
ABI = "proxy_abi_version_0_2_1"

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"


class Refused(Exception):
    pass


def run(*args):
    return subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True).stdout


def git(*args):
    try:
        p = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    except OSError:
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def canonical(obj):
    """JSON bytes that depend only on the content: sorted keys, no whitespace."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def source(wasm_bytes, allow_dirty):
    """The commit the bundle is made from: {"commit", "short", "dirty", "epoch"}. Refuses a
    dirty tree, and a module that was not built from this commit, unless allowed."""
    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != ROOT.resolve():
        ident = {"commit": "unknown", "short": "unknown", "dirty": False, "epoch": 0}
    else:
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        ident = {"commit": git("rev-parse", "HEAD"), "short": git("rev-parse", "--short=12", "HEAD"),
                 "dirty": dirty, "epoch": int(git("show", "-s", "--format=%ct", "HEAD"))}
        problems = []
        if dirty:
            problems.append("the work tree has uncommitted changes")
        short = ident["short"].encode()
        if short + b"-dirty" in wasm_bytes:
            problems.append(f"the module was built from uncommitted changes on {ident['short']}")
        elif short not in wasm_bytes:
            problems.append(f"the module was not built from HEAD ({ident['short']}): rebuild it")
        if problems and not allow_dirty:
            raise Refused("; ".join(problems) + " (--allow-dirty makes the bundle anyway)")
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        ident["epoch"] = int(os.environ["SOURCE_DATE_EPOCH"])
    return ident


def rfc3339(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def changelog_entry(version):
    """This version's section of CHANGELOG.md (Keep a Changelog: `## [VERSION] - DATE`)."""
    text = (ROOT / "CHANGELOG.md").read_text()
    m = re.search(rf"^## \[{re.escape(version)}\][^\n]*\n.*?(?=^## \[|^\[[^\]]+\]: |\Z)", text, re.M | re.S)
    if not m:
        raise Refused(f"CHANGELOG.md has no entry `## [{version}] - YYYY-MM-DD`")
    return "# Changelog\n\n" + m.group(0).rstrip() + "\n"


# ---- SBOM -------------------------------------------------------------------------------

def lock_checksums():
    """{(name, version): sha256} of every registry package in Cargo.lock."""
    out, pkg = {}, {}
    for line in (ROOT / "Cargo.lock").read_text().splitlines() + ["[[package]]"]:
        if line == "[[package]]":
            if "checksum" in pkg:
                out[pkg["name"], pkg["version"]] = pkg["checksum"]
            pkg = {}
        elif m := re.fullmatch(r'(name|version|checksum) = "([^"]*)"', line):
            pkg[m.group(1)] = m.group(2)
    return out


def compiled_graph():
    """The packages compiled into the release module and their edges, from Cargo's own
    feature resolver for the target: `cargo tree` with normal dependencies only (no build
    scripts' or tests' dependencies, no proc macros, which run in the compiler). `cargo
    metadata`'s resolve unifies features across the workspace and lists crates the module
    never compiles. -> (root (name, version), {(name, version): {children}})."""
    text = run("cargo", "tree", "--locked", "-p", "agent-iam", "--target", TARGET, "-e", "normal,no-proc-macro",
               "--prefix", "depth", "-f", "{p}")
    edges, stack, root = {}, [], None
    for line in text.splitlines():
        m = re.fullmatch(r"(\d+)(\S+) v(\S+)(?: \(.*)?", line.strip())
        if not m:
            continue
        depth, node = int(m.group(1)), (m.group(2), m.group(3))
        del stack[depth:]
        if stack:
            edges.setdefault(stack[-1], set()).add(node)
        else:
            root = node
        edges.setdefault(node, set())
        stack.append(node)
    return root, edges


def spdx_expression(license):
    """Cargo's licence field as an SPDX expression (the old `A/B` means `A OR B`)."""
    return " OR ".join(p.strip() for p in license.split("/")) if "/" in license else license


def sbom(version, wasm_sha, ident, epoch):
    meta = json.loads(run("cargo", "metadata", "--locked", "--format-version", "1", "--filter-platform", TARGET))
    packages = {(p["name"], p["version"]): p for p in meta["packages"]}
    checksums = lock_checksums()
    root, edges = compiled_graph()
    ref = {root: f"agent-iam@{version}"}
    components = []
    for key in sorted(k for k in edges if k != root):
        p = packages[key]
        purl = f"pkg:cargo/{key[0]}@{key[1]}"
        ref[key] = purl
        c = {"type": "library", "bom-ref": purl, "name": key[0], "version": key[1], "purl": purl}
        if p.get("description"):
            c["description"] = " ".join(p["description"].split())
        if p.get("license"):
            c["licenses"] = [{"expression": spdx_expression(p["license"])}]
        elif p.get("license_file"):
            c["licenses"] = [{"license": {"name": f"see {p['license_file']} in the crate"}}]
        if key in checksums:
            c["hashes"] = [{"alg": "SHA-256", "content": checksums[key]}]
        if p.get("repository"):
            c["externalReferences"] = [{"type": "vcs", "url": p["repository"]}]
        components.append(c)
    rustc = run("rustc", "-V").strip()
    return {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'agent-iam/{version}/{wasm_sha}')}",
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(epoch),
            "component": {
                "type": "application", "bom-ref": ref[root], "name": "agent-iam", "version": version,
                "description": "agent-iam proxy-wasm filter module (agent_iam.wasm)",
                "licenses": [{"expression": packages[root]["license"]}],
                "hashes": [{"alg": "SHA-256", "content": wasm_sha}],
                "properties": [
                    {"name": "agent-iam:commit", "value": ident["commit"] + ("-dirty" if ident["dirty"] else "")},
                    {"name": "agent-iam:target", "value": TARGET},
                    {"name": "agent-iam:features", "value": "none"},
                    {"name": "agent-iam:rustc", "value": rustc},
                ],
            },
        },
        "components": components,
        "dependencies": [{"ref": ref[k], "dependsOn": sorted(ref[c] for c in edges[k])}
                         for k in sorted(edges, key=lambda k: ref[k])],
    }


# ---- OCI image layouts --------------------------------------------------------------------

class Layout:
    """An OCI image layout (image-spec image-layout.md) holding one manifest."""

    def __init__(self, root):
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True)

    def blob(self, data, media_type, annotations=None):
        digest = sha256(data)
        (self.root / "blobs" / "sha256" / digest).write_bytes(data)
        d = {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}
        if annotations:
            d["annotations"] = annotations
        return d

    def finish(self, manifest, ref_name):
        desc = self.blob(canonical(manifest), MANIFEST, {"org.opencontainers.image.ref.name": ref_name})
        (self.root / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
        index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc]}
        (self.root / "index.json").write_bytes(canonical(index))
        return desc


def image_annotations(version, ident, epoch):
    a = {
        "org.opencontainers.image.title": "agent-iam",
        "org.opencontainers.image.description": "agent-iam: identity for AI agents, a proxy-wasm HTTP filter",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.created": rfc3339(epoch),
    }
    if ident["commit"] != "unknown":
        a["org.opencontainers.image.revision"] = ident["commit"] + ("-dirty" if ident["dirty"] else "")
    return a


def wasm_artifact(root, wasm, version, ident, epoch):
    """Istio's "oci" variant: the runtime config (as the manifest's config and as the first
    of exactly two layers, as Istio's fetcher requires) and the raw module."""
    layout = Layout(root)
    runtime = canonical({"type": "envoy_proxy", "abiVersions": [ABI], "config": {"rootIds": [ROOT_ID]}})
    config = layout.blob(runtime, WASM_CONFIG)
    layers = [
        layout.blob(runtime, WASM_CONFIG, {"org.opencontainers.image.title": "runtime-config.json"}),
        layout.blob(wasm, WASM_LAYER, {"org.opencontainers.image.title": "agent_iam.wasm"}),
    ]
    annotations = image_annotations(version, ident, epoch)
    annotations.update({"module.wasm.runtime/type": "envoy_proxy", "module.wasm.runtime/abi_version": ABI})
    return layout.finish({"schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": layers,
                          "annotations": annotations}, version)


def tar_gz(entries, epoch):
    """A gzipped tar of `entries` ([(name, bytes or None for a folder)], sorted by name),
    with fixed owners, modes and times; gzip without a file name or a time."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(entries):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, compresslevel=9, mtime=0) as gz:
        gz.write(raw.getvalue())
    return raw.getvalue(), packed.getvalue()


def wasm_compat(root, wasm, version, ident, epoch):
    """The compat variant: a plain OCI image with one tar+gzip layer holding plugin.wasm."""
    layout = Layout(root)
    tar, layer_bytes = tar_gz([("plugin.wasm", wasm)], epoch)
    layer = layout.blob(layer_bytes, TAR_GZIP)
    config = layout.blob(canonical({
        "created": rfc3339(epoch), "architecture": "wasm", "os": "wasip1",
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha256(tar)}"]},
    }), IMAGE_CONFIG)
    annotations = image_annotations(version, ident, epoch)
    annotations["module.wasm.image/variant"] = "compat"
    return layout.finish({"schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": [layer],
                          "annotations": annotations}, version)


# ---- the bundle ---------------------------------------------------------------------------

def build(wasm_path, out, allow_dirty):
    try:
        wasm = wasm_path.read_bytes()
    except OSError as e:
        raise Refused(f"{wasm_path}: {e.strerror} (test-harness/build.sh builds the module)") from e
    if wasm[:4] != b"\0asm":
        raise Refused(f"{wasm_path} is not a Wasm module")
    ident = source(wasm, allow_dirty)
    epoch = ident["epoch"]
    [pkg] = [p for p in json.loads(run("cargo", "metadata", "--locked", "--no-deps", "--format-version", "1"))["packages"]
             if p["name"] == "agent-iam"]
    version = pkg["version"]
    name = f"agent-iam-{version}"
    bundle = out / name
    if bundle.exists():
        shutil.rmtree(bundle)
    bundle.mkdir(parents=True)
    wasm_sha = sha256(wasm)
    (bundle / "agent_iam.wasm").write_bytes(wasm)
    (bundle / "agent_iam.wasm.sha256").write_text(f"{wasm_sha}  agent_iam.wasm\n")
    shutil.copyfile(ROOT / "agent_iam.meta.json", bundle / "agent_iam.meta.json")
    shutil.copyfile(ROOT / "LICENSE", bundle / "LICENSE")
    (bundle / "CHANGELOG.md").write_text(changelog_entry(version))
    (bundle / "sbom.cdx.json").write_text(json.dumps(sbom(version, wasm_sha, ident, epoch), indent=2,
                                                     sort_keys=True, ensure_ascii=False) + "\n")
    oci = wasm_artifact(bundle / "oci", wasm, version, ident, epoch)
    compat = wasm_compat(bundle / "oci-compat", wasm, version, ident, epoch)

    entries = []
    for path in sorted(bundle.rglob("*")):
        rel = f"{name}/{path.relative_to(bundle).as_posix()}"
        entries.append((rel, None if path.is_dir() else path.read_bytes()))
        path.chmod(0o755 if path.is_dir() else 0o644)
    bundle.chmod(0o755)
    _, archive = tar_gz([(name, None), *entries], epoch)
    (out / f"{name}.tar.gz").write_bytes(archive)
    (out / f"{name}.tar.gz.sha256").write_text(f"{sha256(archive)}  {name}.tar.gz\n")
    return {"bundle": bundle, "archive": out / f"{name}.tar.gz", "version": version, "wasm_sha256": wasm_sha,
            "oci": oci["digest"], "oci_compat": compat["digest"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wasm", type=Path, default=ROOT / "target" / TARGET / "release" / "agent_iam.wasm")
    ap.add_argument("--out", type=Path, default=ROOT / "dist")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="make the bundle from uncommitted changes, or from a module not built from HEAD")
    a = ap.parse_args()
    try:
        r = build(a.wasm, a.out, a.allow_dirty)
    except Refused as e:
        print(f"dist: {e}", file=sys.stderr)
        return 1
    print(f"{r['bundle'].relative_to(ROOT) if r['bundle'].is_relative_to(ROOT) else r['bundle']}/\n"
          f"  agent_iam.wasm        sha256:{r['wasm_sha256']}\n"
          f"  oci/ manifest         {r['oci']} (tag {r['version']})\n"
          f"  oci-compat/ manifest  {r['oci_compat']} (tag {r['version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
