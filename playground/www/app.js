// The playground page: editors in, drawings out. Every answer (decision, chain, audit
// event, tests, token display, demo tokens) comes from the Rust core in the wasm module;
// this file only moves text between the editors and the module and draws the results.
import init, * as core from "./agent_iam_playground.js";

const $ = (id) => document.getElementById(id);
const state = { files: {}, current: null, keys: null, errors: [], input: null };

function call(fn, ...args) {
  try {
    return JSON.parse(fn(...args));
  } catch (e) {
    // A trap in the module: show it rather than a stale result.
    return { ok: false, errors: [{ panel: "page", message: `internal error: ${e}` }] };
  }
}

function pretty(v) {
  return JSON.stringify(v, null, 2);
}

function saveCurrentFile() {
  if (state.current !== null) state.files[state.current] = $("policy-text").value;
}

function selectFile(name, line) {
  saveCurrentFile();
  state.current = name;
  $("policy-file").value = name;
  $("policy-text").value = state.files[name] ?? "";
  if (line) focusLine($("policy-text"), line);
}

function focusLine(textarea, line) {
  const lines = textarea.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  const end = start + (lines[line - 1] ?? "").length;
  textarea.focus();
  textarea.setSelectionRange(start, end);
  const lh = parseFloat(getComputedStyle(textarea).lineHeight) || 16;
  textarea.scrollTop = Math.max(0, (line - 3) * lh);
}

function showErrors(errors) {
  state.errors = errors;
  const list = $("errors");
  list.replaceChildren();
  for (const p of document.querySelectorAll(".has-error")) p.classList.remove("has-error");
  $("errors-panel").hidden = errors.length === 0;
  for (const e of errors) {
    const li = document.createElement("li");
    const where = [e.panel, e.file, e.line ? `line ${e.line}${e.column ? `:${e.column}` : ""}` : null, e.path]
      .filter(Boolean).join(" · ");
    li.innerHTML = "<code></code> ";
    li.querySelector("code").textContent = where;
    li.append(e.message);
    li.dataset.panel = e.panel;
    li.onclick = () => {
      if (e.file && state.files[e.file] !== undefined) selectFile(e.file, e.line);
      else if (e.line && $(e.panel)) focusLine($(e.panel), e.line);
    };
    list.append(li);
    $(`panel-${e.panel}`)?.classList.add("has-error");
  }
}

function drawChain(nodes) {
  const box = $("chain");
  box.replaceChildren();
  if (!nodes || nodes.length === 0) {
    box.textContent = "— (no verified token)";
    return;
  }
  const w = 170, h = 46, gap = 44;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const width = nodes.length * w + (nodes.length - 1) * gap + 4;
  svg.setAttribute("viewBox", `0 0 ${width} ${h + 8}`);
  svg.setAttribute("width", width);
  svg.innerHTML = `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#5d6679"/></marker></defs>`;
  nodes.forEach((n, i) => {
    const x = 2 + i * (w + gap);
    const g = document.createElementNS(ns, "g");
    g.setAttribute("class", `node ${n.role}`);
    g.setAttribute("data-id", n.id);
    const fill = n.role === "principal" ? "#e8eefc" : n.role === "agent" ? "#e7f6ec" : "#f3f4f6";
    g.innerHTML = `<rect x="${x}" y="4" width="${w}" height="${h}" rx="6" fill="${fill}" stroke="#9aa3b5"/>` +
      `<text x="${x + w / 2}" y="21" text-anchor="middle" font-size="10" fill="#5d6679"></text>` +
      `<text x="${x + w / 2}" y="38" text-anchor="middle" font-size="12" font-family="ui-monospace, monospace"></text>`;
    const [role, id] = g.querySelectorAll("text");
    role.textContent = n.for_itself ? "agent (for itself)" : n.role;
    id.textContent = n.id.length > 24 ? n.id.slice(0, 23) + "…" : n.id;
    svg.append(g);
    if (i > 0) {
      const line = document.createElementNS(ns, "line");
      line.setAttribute("x1", x - gap + 2); line.setAttribute("x2", x - 2);
      line.setAttribute("y1", 4 + h / 2); line.setAttribute("y2", 4 + h / 2);
      line.setAttribute("stroke", "#5d6679"); line.setAttribute("marker-end", "url(#arrow)");
      svg.append(line);
    }
  });
  box.append(svg);
}

function showDecision(r) {
  const d = r.ok ? r.decision : null;
  $("verdict").textContent = d ? d.decision.toUpperCase() : "—";
  $("verdict").className = `verdict ${d ? d.decision : ""}`;
  $("reason").textContent = d ? (d.reason ?? "— (allowed)") : "—";
  $("status").textContent = d ? String(d.status) : "—";
  $("scopes").textContent = d ? (d.scopes.effective.join(" ") || "—") : "—";
  $("policy").textContent = d && d.policy ? `revision ${d.policy.revision}${d.policy.reason ? ` · ${d.policy.reason}` : ""}` : "—";
  const m = d ? d.mcp : null;
  $("mcp").textContent = m ? [m.method || "(a JSON-RPC response)", m.name, m.protocol_version ?? "no protocol version"].filter(Boolean).join(" · ") : "—";
  $("challenge").textContent = r.ok ? (r.response.www_authenticate ?? "—") : "—";
  $("response").textContent = r.ok ? pretty(r.response) : "";
  $("audit").textContent = r.ok ? pretty(r.audit) : "";
  showInput(r.ok ? r.input : null);
  drawChain(r.ok ? r.chain : []);
  const notes = $("notes");
  notes.replaceChildren();
  for (const n of r.notes ?? []) {
    const li = document.createElement("li");
    li.textContent = n;
    notes.append(li);
  }
}

// The MCP editor: the core writes the headers and body a client would send for the
// fields; the user may edit both before evaluating.
function buildMcp() {
  const r = call(core.mcp_request, JSON.stringify({
    method: $("mcp-method").value,
    name: $("mcp-name").value,
    arguments: $("mcp-arguments").value,
    protocol_version: $("mcp-version").value,
  }));
  const others = state.errors.filter((e) => !e.panel.startsWith("mcp-"));
  showErrors(r.ok ? others : others.concat(r.errors));
  if (!r.ok) return;
  $("mcp-headers").value = r.headers.map(([name, value]) => `${name}: ${value}`).join("\n");
  $("mcp-body").value = r.body;
}

// The edited headers and body as the request `agent-iam check` reads; a header repeated
// stays repeated (the core decides what that means).
function mcpRequest() {
  const headers = {};
  const lines = $("mcp-headers").value.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() === "") continue;
    const colon = lines[i].indexOf(":");
    if (colon <= 0) {
      return { errors: [{ panel: "mcp-headers", line: i + 1, message: `line ${i + 1} is not "Name: value"` }] };
    }
    const name = lines[i].slice(0, colon).trim();
    const value = lines[i].slice(colon + 1).trim();
    headers[name] = name in headers ? [].concat(headers[name], value) : value;
  }
  const request = { method: "POST", path: $("mcp-path").value, host: $("mcp-host").value, headers, body: $("mcp-body").value };
  return { text: JSON.stringify(request, null, 2) };
}

function mcpMode() {
  return $("request-mode").value === "mcp";
}

function setMode() {
  $("http-editor").hidden = mcpMode();
  $("mcp-editor").hidden = !mcpMode();
  if (mcpMode() && !$("mcp-body").value) buildMcp();
}

// The input the policy decided on (null: the built-in checks decided alone).
function showInput(input) {
  state.input = input ?? null;
  $("input").textContent = state.input ? pretty(state.input) : "— (the policy did not run)";
  $("export-test").disabled = !state.input;
}

function addFile(name, text) {
  saveCurrentFile();
  if (state.files[name] === undefined) $("policy-file").add(new Option(name, name));
  state.files[name] = text;
  state.current = null;
  selectFile(name);
}

// A `_test.rego` case pinning the current verdict on the shown input, appended to the
// earlier export; also offered as a download (a blob URL: nothing is sent anywhere).
function exportTest() {
  saveCurrentFile();
  const r = call(core.export_test, JSON.stringify({
    config: $("config").value,
    policy_files: state.files,
    input: state.input,
    existing: state.files["agent_iam/playground_test.rego"] ?? null,
  }));
  if (!r.ok) {
    showErrors(r.errors);
    return;
  }
  showErrors([]);
  addFile(r.file, r.text);
  const a = $("download-test");
  if (a.href) URL.revokeObjectURL(a.href);
  a.href = URL.createObjectURL(new Blob([r.text], { type: "text/plain" }));
  a.download = r.file.split("/").pop();
  a.hidden = false;
  done();
}

function replayEvent() {
  saveCurrentFile();
  const r = call(core.replay, JSON.stringify({
    config: $("config").value,
    policy_files: state.files,
    event: $("event").value,
  }));
  if (!r.ok) {
    showErrors(r.errors);
    $("replayed").textContent = "";
    return done();
  }
  showErrors([]);
  $("replayed").textContent = `${r.decision_id ?? "decision"} (route ${r.route ?? "—"}, ${r.agent ?? "—"}): ` +
    `recorded ${r.recorded} · now ${r.now} · ${r.changed ? "CHANGED" : "unchanged"} (policy revision ${r.revision})`;
  $("replayed").className = `hint ${r.changed ? "changed" : "unchanged"}`;
  showInput(r.input);
  done();
}

// The page's state in the URL fragment (deflated JSON, base64url): a case shared as a link.
const EDITORS = ["config", "recipe", "token", "request", "request-mode", "mcp-path", "mcp-host", "mcp-method",
  "mcp-name", "mcp-version", "mcp-arguments", "mcp-headers", "mcp-body", "now", "event"];

async function pack(obj) {
  const stream = new Blob([JSON.stringify(obj)]).stream().pipeThrough(new CompressionStream("deflate-raw"));
  const bytes = new Uint8Array(await new Response(stream).arrayBuffer());
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function unpack(text) {
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
  return JSON.parse(await new Response(stream).text());
}

async function share() {
  saveCurrentFile();
  const editors = Object.fromEntries(EDITORS.map((id) => [id, $(id).value]));
  const hash = `#case=${await pack({ v: 1, editors, files: state.files, current: state.current })}`;
  history.replaceState(null, "", hash);
  $("share-link").value = location.href;
  $("share-link").hidden = false;
  $("share-link").select();
  done();
}

// A shared case: `true` when the fragment held one (and the editors now show it).
async function restore() {
  const m = location.hash.match(/^#case=([A-Za-z0-9_-]+)$/);
  if (!m) return false;
  try {
    const saved = await unpack(m[1]);
    for (const [id, value] of Object.entries(saved.editors ?? {})) if (EDITORS.includes(id)) $(id).value = value;
    state.files = saved.files ?? state.files;
    state.current = null;
    const select = $("policy-file");
    select.replaceChildren();
    for (const name of Object.keys(state.files)) select.add(new Option(name, name));
    selectFile(state.files[saved.current] !== undefined ? saved.current : Object.keys(state.files)[0]);
    $("http-editor").hidden = mcpMode();
    $("mcp-editor").hidden = !mcpMode();
    return true;
  } catch (e) {
    showErrors([{ panel: "page", message: `the link's case could not be read: ${e}` }]);
    return false;
  }
}

function evaluate() {
  saveCurrentFile();
  let request = $("request").value;
  if (mcpMode()) {
    const built = mcpRequest();
    if (built.errors) {
      showErrors(built.errors);
      showDecision({ ok: false });
      return done();
    }
    request = built.text;
    $("mcp-sent").textContent = request;
  }
  const inputs = {
    config: $("config").value,
    policy_files: state.files,
    request,
    token: $("token").value,
    now: Number($("now").value),
  };
  const r = call(core.evaluate, JSON.stringify(inputs));
  showErrors(r.ok ? [] : r.errors);
  showDecision(r);
  done();
}

function done() {
  document.body.dataset.evaluated = String(Number(document.body.dataset.evaluated ?? 0) + 1);
}

function runTests() {
  saveCurrentFile();
  const r = call(core.policy_tests, JSON.stringify(state.files));
  const body = $("tests").tBodies[0];
  body.replaceChildren();
  if (!r.ok) {
    showErrors(r.errors);
    $("tests-summary").textContent = "(did not run)";
    return;
  }
  showErrors([]);
  for (const t of r.results) {
    const tr = body.insertRow();
    const res = tr.insertCell();
    res.className = t.result;
    res.textContent = t.result.toUpperCase();
    tr.insertCell().textContent = t.test + (t.message ? ` — ${t.message}` : "");
  }
  $("tests-summary").textContent = `${r.passed} passed, ${r.failed} failed`;
}

function decodeToken() {
  const t = $("token").value.trim();
  if (!t) {
    $("token-decoded").textContent = "";
    return;
  }
  const r = call(core.decode_token, t);
  $("token-decoded").textContent = r.ok
    ? `header ${pretty(r.header)}\nclaims (not verified here) ${pretty(r.claims)}`
    : r.errors.map((e) => e.message).join("\n");
}

function mint() {
  const r = call(core.mint, JSON.stringify(state.keys), $("recipe").value, Number($("now").value));
  if (!r.ok) {
    showErrors(r.errors);
    return;
  }
  showErrors([]);
  $("token").value = r.token;
  decodeToken();
}

async function main() {
  await init();
  $("version").textContent = `agent-iam ${core.version()}`;
  const defaults = await (await fetch("defaults.json")).json();
  $("config").value = defaults.config;
  $("request").value = defaults.request;
  $("recipe").value = defaults.recipe;
  $("now").value = defaults.now ?? Math.floor(Date.now() / 1000);
  state.files = defaults.policy_files;
  state.keys = defaults.keys;
  const select = $("policy-file");
  for (const name of Object.keys(state.files)) select.add(new Option(name, name));
  selectFile(Object.keys(state.files).find((n) => n.endsWith("authz.rego")) ?? Object.keys(state.files)[0]);
  const shared = await restore();
  select.onchange = () => selectFile(select.value);
  $("evaluate").onclick = evaluate;
  $("run-tests").onclick = runTests;
  $("new-file").onclick = () => {
    const name = prompt("Path of the new module (`*_test.rego` for tests, data.json for data)", "agent_iam/my_rule.rego");
    if (!name || state.files[name] !== undefined) return;
    saveCurrentFile();
    state.files[name] = name.endsWith(".rego") ? "package agent_iam.authz\n\nimport rego.v1\n\n" : "{}\n";
    select.add(new Option(name, name));
    selectFile(name);
  };
  $("mint").onclick = mint;
  $("request-mode").onchange = setMode;
  for (const id of ["mcp-method", "mcp-name", "mcp-arguments"]) $(id).oninput = buildMcp;
  $("mcp-version").onchange = buildMcp;
  $("mcp-build").onclick = buildMcp;
  $("token").oninput = decodeToken;
  $("export-test").onclick = exportTest;
  $("replay").onclick = replayEvent;
  $("share").onclick = share;
  if (shared) decodeToken();
  else mint();
  evaluate();
  runTests();
  document.body.dataset.ready = "1";
}

main().catch((e) => {
  showErrors([{ panel: "page", message: `could not start: ${e}` }]);
});
