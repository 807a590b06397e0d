// Drives the policy playground in Debian's headless Chromium (playwright-core, no browser
// download) and reports what the page showed, for test_playground_e2e.py to check and to
// replay through a real Envoy.
//
//   node playground.mjs URL OUT_DIR
//
// Writes OUT_DIR/playground.json ({"cases": [...]}) and the screenshots playground.png
// (the default, allowed request: the picture in docs/POLICIES.md), playground-policy-edit.png,
// playground-mcp.png (a write tool refused), playground-errors.png and playground-replay.png.
// Exits non-zero when the page cannot be driven; the checks on what it showed are the
// Python test's.
import { chromium } from "playwright-core";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [url, out] = process.argv.slice(2);
if (!url || !out) {
  console.error("usage: node playground.mjs URL OUT_DIR");
  process.exit(2);
}
mkdirSync(out, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  // This machine has no network beyond 127.0.0.1: no background or component traffic.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1440, height: 1500 } });
const consoleErrors = [];
page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
page.on("pageerror", (e) => consoleErrors.push(String(e)));
await page.goto(url);
await page.waitForSelector("body[data-ready='1']", { timeout: 60_000 });

// What the page shows, read from the DOM (not from the module).
async function shown() {
  return page.evaluate(() => {
    const text = (id) => document.getElementById(id).textContent;
    const parse = (id) => { try { return JSON.parse(text(id)); } catch { return null; } };
    return {
      verdict: text("verdict"),
      reason: text("reason"),
      status: text("status"),
      scopes: text("scopes"),
      policy: text("policy"),
      mcp: text("mcp"),
      challenge: text("challenge"),
      chain: [...document.querySelectorAll("#chain g.node")].map((g) => ({
        role: g.getAttribute("class").replace("node ", ""), id: g.getAttribute("data-id"),
      })),
      chain_arrows: document.querySelectorAll("#chain line").length,
      response: parse("response"),
      audit: parse("audit"),
      notes: [...document.querySelectorAll("#notes li")].map((li) => li.textContent),
      errors: [...document.querySelectorAll("#errors li")].map((li) => li.textContent),
      error_panels: [...document.querySelectorAll(".panel.has-error")].map((p) => p.id),
      tests_summary: text("tests-summary"),
      tests: [...document.querySelectorAll("#tests tr")].map((tr) => [...tr.cells].map((c) => c.textContent)),
      input: parse("input"),
      replayed: text("replayed"),
    };
  });
}

// The inputs the page evaluated, so the test can send the same request through Envoy (in
// MCP mode, the request the page composed from the edited headers and body).
async function inputs() {
  return page.evaluate(() => ({
    config: document.getElementById("config").value,
    mode: document.getElementById("request-mode").value,
    request: document.getElementById("request-mode").value === "mcp"
      ? document.getElementById("mcp-sent").textContent
      : document.getElementById("request").value,
    token: document.getElementById("token").value,
    now: Number(document.getElementById("now").value),
  }));
}

async function policyFiles() {
  // Read each file through the page's own file switcher.
  const names = await page.$$eval("#policy-file option", (os) => os.map((o) => o.value));
  const files = {};
  for (const n of names) {
    await page.selectOption("#policy-file", n);
    files[n] = await page.inputValue("#policy-text");
  }
  await page.selectOption("#policy-file", names.find((n) => n.endsWith("/authz.rego")));
  return files;
}

// Clicks a button whose action ends with the page's `done()`, and waits for it.
async function clickAndWait(selector, on = page) {
  const before = await on.getAttribute("body", "data-evaluated");
  await on.click(selector);
  await on.waitForFunction((b) => document.body.dataset.evaluated !== b, before);
}

async function evaluateCase(name) {
  await clickAndWait("#evaluate");
  return { name, inputs: { ...(await inputs()), policy_files: await policyFiles() }, shown: await shown() };
}

const cases = [];
// 1. The default: alice -> planner -> tool-search reads a ticket (the page evaluates and
//    runs the policy tests on load; evaluate again to record the inputs).
cases.push(await evaluateCase("delegated-read"));
await page.screenshot({ path: join(out, "playground.png"), fullPage: true });

// 2. The same token writes: denied (the route needs tickets:write).
await page.fill("#request", '{"method": "POST", "path": "/tickets/42", "host": "api.agent-iam.test"}');
cases.push(await evaluateCase("delegated-write"));

// 3. A policy edit: a new deny rule in authz.rego, then the read again.
await page.fill("#request", '{"method": "GET", "path": "/tickets/42", "host": "api.agent-iam.test"}');
await page.selectOption("#policy-file", "agent_iam/authz.rego");
const authz = await page.inputValue("#policy-text");
await page.fill("#policy-text", authz + '\ndeny contains "tool_search.paused" if input.agent.id == "agent:tool-search"\n');
cases.push(await evaluateCase("policy-edit"));
await page.click("#run-tests");
await page.waitForFunction(() => document.getElementById("tests-summary").textContent.includes("passed"));
cases.push({ name: "policy-tests-after-edit", shown: await shown() });
await page.screenshot({ path: join(out, "playground-policy-edit.png"), fullPage: true });

// 4. A new module (the page's "New module" button) with a rule of its own, authz.rego back
//    as shipped.
await page.fill("#policy-text", authz);
page.once("dialog", (d) => d.accept("agent_iam/paused.rego"));
await page.click("#new-file");
await page.fill("#policy-text", await page.inputValue("#policy-text") +
  'deny contains "planner.paused" if {\n\tsome a in input.chain\n\ta.sub == "agent:planner"\n}\n');
cases.push(await evaluateCase("new-module"));

// 5. A self-acting agent minted with the helper: no delegation.
await page.fill("#recipe", '{"alg": "EdDSA", "claims": {"sub": "agent:build-bot-7"}}');
await page.click("#mint");
cases.push(await evaluateCase("minted-eddsa-self"));

// 6. The MCP editor, with a one-hop delegation (alice -> agent:tool-search, tickets:read):
//    the shipped policy refuses POSTs from two actors or more, and every MCP call is a POST.
await page.fill("#recipe", '{"alg": "ES256", "claims": {"sub": "user:alice", "act": {"sub": "agent:tool-search"}}}');
await page.click("#mint");
await page.selectOption("#request-mode", "mcp");
await page.fill("#mcp-method", "tools/call");
await page.fill("#mcp-name", "search_tickets");
await page.fill("#mcp-arguments", '{"q": "printer"}');
cases.push(await evaluateCase("mcp-read-tool"));
await page.fill("#mcp-name", "create_ticket");
await page.fill("#mcp-arguments", '{"title": "printer on fire"}');
cases.push(await evaluateCase("mcp-write-tool"));
await page.screenshot({ path: join(out, "playground-mcp.png"), fullPage: true });
// The header says a read tool, the body calls the write tool.
const headers = await page.inputValue("#mcp-headers");
await page.fill("#mcp-headers", headers.replace("Mcp-Name: create_ticket", "Mcp-Name: search_tickets"));
cases.push(await evaluateCase("mcp-header-mismatch"));
// A name that is not plain ASCII travels base64-encoded in Mcp-Name.
await page.fill("#mcp-name", "créer_ticket");
cases.push(await evaluateCase("mcp-encoded-name"));
// A 2025-11-25 client: no mirrored method or name, the same body decides.
await page.selectOption("#mcp-version", "2025-11-25");
await page.fill("#mcp-name", "search_tickets");
await page.fill("#mcp-arguments", '{"q": "printer"}');
cases.push(await evaluateCase("mcp-2025-read-tool"));
await page.selectOption("#mcp-version", "2026-07-28");
await page.selectOption("#request-mode", "http");

// 7. Errors point at the Rego line and the config's JSON path.
await page.fill("#policy-text", authz + "\ndeny contains \"x\" if {\n");
cases.push(await evaluateCase("rego-syntax-error"));
await page.fill("#policy-text", authz);
const config = await page.inputValue("#config");
// An unknown key in the first route (a typo of `required_scopes`).
await page.fill("#config", config.replace('"required_scopes"', '"required_scope"'));
cases.push(await evaluateCase("config-error"));
await page.screenshot({ path: join(out, "playground-errors.png"), fullPage: true });

// 8. The policy input of an allowed read, exported as a `_test.rego` case that the page's
//    own test run passes; then a denied request appended as a second case.
await page.fill("#config", config);
// The policy files as shipped again (step 4's module emptied).
await page.selectOption("#policy-file", "agent_iam/paused.rego");
await page.fill("#policy-text", "package agent_iam.authz\n");
await page.selectOption("#policy-file", "agent_iam/authz.rego");
await page.fill("#request", '{"method": "GET", "path": "/tickets/42", "host": "api.agent-iam.test"}');
cases.push(await evaluateCase("input-shown"));
await clickAndWait("#export-test");
await page.fill("#request", '{"method": "GET", "path": "/tenants/globex/tickets", "host": "api.agent-iam.test"}');
await page.fill("#recipe", '{"alg": "ES256", "claims": {"sub": "user:alice", "act": {"sub": "agent:tool-search"}, "tenant": "acme"}}');
await page.click("#mint");
cases.push(await evaluateCase("cross-tenant"));
await clickAndWait("#export-test");
const exported = await page.inputValue("#policy-text");
const download = await page.getAttribute("#download-test", "download");
await page.click("#run-tests");
await page.waitForFunction(() => document.getElementById("tests-summary").textContent.includes("passed"));
cases.push({ name: "exported-test", file: await page.inputValue("#policy-file"), text: exported, download,
  shown: await shown() });

// 9. A recorded decision event (the cross-tenant deny of examples/replay), replayed with the
//    shipped policy, then with the tenant rule gone.
const trail = readFileSync(new URL("../../../examples/replay/audit.ndjson", import.meta.url), "utf8");
const event = trail.split("\n").find((l) => l.includes('"policy_reason":"tenant.mismatch"'));
await page.fill("#event", event);
await clickAndWait("#replay");
cases.push({ name: "replay-same", event, shown: await shown() });
await page.selectOption("#policy-file", "agent_iam/tenant.rego");
const tenant = await page.inputValue("#policy-text");
await page.fill("#policy-text", tenant.replace('deny contains "tenant.mismatch"', 'unused contains "x"'));
await clickAndWait("#replay");
cases.push({ name: "replay-changed", shown: await shown() });
await page.screenshot({ path: join(out, "playground-replay.png"), fullPage: true });
await page.fill("#policy-text", tenant);

// 10. The case as a link: a new page opened on it shows the same editors and decision.
await page.fill("#request", '{"method": "GET", "path": "/tenants/globex/tickets", "host": "api.agent-iam.test"}');
const original = await evaluateCase("shared-original");
cases.push(original);
await clickAndWait("#share");
const link = await page.inputValue("#share-link");
const other = await browser.newPage({ viewport: { width: 1440, height: 1500 } });
other.on("pageerror", (e) => consoleErrors.push(String(e)));
await other.goto(link);
await other.waitForSelector("body[data-ready='1']", { timeout: 60_000 });
const reopened = await other.evaluate(() => ({
  request: document.getElementById("request").value,
  token: document.getElementById("token").value,
  event: document.getElementById("event").value,
  files: [...document.querySelectorAll("#policy-file option")].map((o) => o.value),
  verdict: document.getElementById("verdict").textContent,
  reason: document.getElementById("reason").textContent,
  policy: document.getElementById("policy").textContent,
}));
cases.push({ name: "shared-reopened", link, reopened });
await other.close();

await browser.close();
writeFileSync(join(out, "playground.json"), JSON.stringify({ cases, console_errors: consoleErrors }, null, 2));
console.log(`playground: ${cases.length} cases, screenshots in ${out}`);
