// The install wizard's page: three steps (LOCATION, CAPACITY, INSTALLATION)
// over the installer's JSON API (docs/wizard.md). No library, nothing loaded
// from elsewhere; all text from the bundle or the installer is set as text.
"use strict";

const $ = (id) => document.getElementById(id);
const STEPS = ["location", "capacity", "installation"];
let csrf = null;
let app = null;
let polling = null;
// The answer of the last AWS check that passed (VPCs, subnets), or null.
let awsChecked = null;
const AWS_FIELDS = ["accessKeyId", "secretAccessKey", "region"];
// The answer of the last Azure check that passed (the VM's group), or null.
let azureChecked = null;
// The machines waiting in CAPACITY (/api/v1/capacity), and its poll.
let lineView = null;
let linePolling = null;
let lineShown = "";
const AZURE_FIELDS = ["tenantId", "clientId", "clientSecret", "subscriptionId"];

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

async function api(path, body) {
  const init = body === undefined
    ? { credentials: "same-origin" }
    : {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(body),
      };
  const r = await fetch(path, init);
  let data = null;
  try { data = await r.json(); } catch (_) { data = null; }
  return { ok: r.ok, status: r.status, data };
}

function show(step) {
  for (const s of STEPS) $(s).hidden = s !== step;
  const at = STEPS.indexOf(step);
  document.querySelectorAll("#steps li").forEach((li, i) => {
    if (i === at) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
    li.classList.toggle("past", i < at);
  });
  $("bar").setAttribute("aria-valuenow", String(at + 1));
  $("bar-fill").style.width = `${((at + 1) / STEPS.length) * 100}%`;
  document.title = `${step[0].toUpperCase()}${step.slice(1)} · ${app ? app.name : "Install"}`;
}

// The same rule the installer applies: a DNS label (RFC 1123) of at most 63 characters.
function nameProblem(name) {
  if (!name) return "Give the deployment a name.";
  if (name.length > 63) return `At most 63 characters (${name.length} given).`;
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name))
    return "Lower-case letters, digits and '-', starting and ending with a letter or digit.";
  return null;
}

function checkName() {
  const input = $("deployment");
  const problem = nameProblem(input.value.trim());
  $("deployment-error").textContent = problem && input.value !== "" ? problem : "";
  input.setAttribute("aria-invalid", problem && input.value !== "" ? "true" : "false");
  return problem;
}

function fillApp() {
  $("app-name").textContent = app.name;
  $("app-version").textContent = `version ${app.version}`;
  $("app-description").textContent = app.description || "";
  if (app.logo) {
    $("logo").src = app.logo;
    $("logo").alt = `${app.name} logo`;
    $("logo").hidden = false;
    $("logo-placeholder").hidden = true;
  }
  $("deployment-hint").textContent =
    `A good example of a deployment name is '${app.exampleName}'.`;
  const providers = $("providers");
  providers.replaceChildren();
  for (const p of app.providers) {
    const input = el("input", {
      type: "radio", name: "provider", value: p.name, id: `provider-${p.name}`,
      disabled: !p.available, checked: p.name === "onprem",
      "aria-describedby": `provider-${p.name}-desc`,
    });
    providers.append(el("label", { class: `card${p.available ? "" : " disabled"}`, for: `provider-${p.name}` },
      input, el("span", { class: "title", text: p.title }),
      el("div", { class: "desc", id: `provider-${p.name}-desc`, text: p.description })));
  }
  if (app.eula) {
    $("eula-box").hidden = false;
    $("eula-text").textContent = app.eula;
  }
  const f = app.flavors;
  $("flavor-prompt").textContent = f.prompt || "How many nodes?";
  $("flavor-description").textContent = f.description || "";
  const flavors = $("flavors");
  flavors.replaceChildren();
  if (f.items.length === 0) {
    flavors.append(el("p", { class: "hint", text: "One node: this machine." }));
  }
  for (const item of f.items) {
    const nodes = item.nodes.map((n) => `${n.count} × ${n.profile}`).join(", ");
    const input = el("input", {
      type: "radio", name: "flavor", value: item.name, id: `flavor-${item.name}`,
      checked: item.name === f.default, "aria-describedby": `flavor-${item.name}-desc`,
    });
    flavors.append(el("label", { class: "card", for: `flavor-${item.name}` },
      input, el("span", { class: "title", text: item.name }),
      el("div", { class: "desc", id: `flavor-${item.name}-desc`,
        text: `${item.description ? item.description + ". " : ""}${nodes}` })));
  }
}

function chosen(name) {
  const c = document.querySelector(`input[name=${name}]:checked`);
  return c ? c.value : null;
}

function awsKeys() {
  return {
    accessKeyId: $("accessKeyId").value.trim(),
    secretAccessKey: $("secretAccessKey").value,
    region: $("region").value.trim() || null,
  };
}

function choices() {
  const c = {
    deployment: $("deployment").value.trim(),
    provider: chosen("provider"),
    flavor: chosen("flavor"),
    eulaAccepted: $("eula").checked,
  };
  if (c.provider === "aws") {
    c.aws = awsKeys();
    c.subnetId = $("subnet").value || null;
  }
  if (c.provider === "azure") c.azure = azurePrincipal();
  if (c.provider === "aws" || c.provider === "azure") {
    c.instanceTypes = {};
    document.querySelectorAll("#types-fields input").forEach((i) => { c.instanceTypes[i.dataset.profile] = i.value.trim(); });
  }
  return c;
}

function azurePrincipal() {
  return {
    tenantId: $("tenantId").value.trim(),
    clientId: $("clientId").value.trim(),
    clientSecret: $("clientSecret").value,
    subscriptionId: $("subscriptionId").value.trim() || null,
  };
}

// A refusal of a card's check, on its field (or in the card's state line).
function showProblem(r, fields, state, failed) {
  const field = r && r.data && r.data.field;
  const text = (r && r.data && r.data.error) || "The installer did not answer; try again.";
  $(state).textContent = failed;
  if (field && $(`${field}-error`)) {
    $(`${field}-error`).textContent = text;
    if (fields.includes(field)) {
      $(field).setAttribute("aria-invalid", "true");
      $(field).focus();
    }
  } else {
    $(state).textContent = text;
  }
}

async function checkAzure() {
  for (const f of AZURE_FIELDS) {
    $(`${f}-error`).textContent = "";
    $(f).setAttribute("aria-invalid", "false");
  }
  $("provider-error").textContent = "";
  $("azure-state").textContent = "Signing in to Azure…";
  $("azure-check").disabled = true;
  const r = await api("/api/v1/azure/check", azurePrincipal()).catch(() => null);
  $("azure-check").disabled = false;
  azureChecked = null;
  if (!r || !r.ok) {
    showProblem(r, AZURE_FIELDS, "azure-state", "The application cannot install yet.");
    return false;
  }
  azureChecked = r.data;
  $("azure-state").textContent =
    `The application may install here: the VM ${azureChecked.vm} in the resource group ${azureChecked.resourceGroup} (${azureChecked.location}).`;
  return true;
}

// On a cloud, an instance type (AWS) or VM size (Azure) for each profile the
// install makes machines of: the flavor's nodes but this first one.
function fillTypes() {
  const provider = chosen("provider");
  const item = app.flavors.items.find((i) => i.name === chosen("flavor"));
  const fields = $("types-fields");
  fields.replaceChildren();
  const cloud = provider === "aws" || provider === "azure";
  const made = othersOf(item);
  $("types").hidden = !cloud || made.length === 0;
  $("capacity-hint").textContent = cloud && made.length
    ? "This machine becomes the first node; the install makes the others, each joining by itself."
    : made.length && lineView && lineView.open
      ? "This machine becomes the first node; the others join with the commands above."
      : "This machine becomes the first node. When its install is done, the page shows the command that adds each other node of the flavor.";
  fillLine();
  if (!cloud) return;
  const word = provider === "aws" ? "Instance type" : "VM size";
  for (const n of made) {
    const id = `type-${n.profile}`;
    const known = provider === "aws" ? (n.awsInstanceTypes || []) : [];
    fields.append(el("div", { class: "field" },
      el("label", { for: id, text: `${word} of ${n.profile} (${n.made} machine${n.made > 1 ? "s" : ""})` }),
      el("input", { id, "data-profile": n.profile, value: known[0] || "", autocomplete: "off", spellcheck: "false",
        placeholder: provider === "aws" ? "m5.large" : "Standard_D4s_v3", required: true, "aria-describedby": `${id}-error` }),
      el("p", { id: `${id}-error`, class: "error", role: "alert" })));
  }
}

// The flavor's nodes but this first one, per profile (what the install makes
// on a cloud, or what waits here on bare metal).
function othersOf(item) {
  return item ? item.nodes.map((n, i) => ({ ...n, made: n.count - (i === 0 ? 1 : 0) })).filter((n) => n.made > 0) : [];
}

// On bare metal, a flavor of several nodes: the join commands, the machines
// waiting with their preflight results, and the Install button held until
// the flavor's count is here.
function fillLine() {
  clearTimeout(linePolling);
  const item = app.flavors.items.find((i) => i.name === chosen("flavor"));
  const others = othersOf(item);
  const wanted = chosen("provider") === "onprem" && others.length > 0 && !$("capacity").hidden;
  $("line").hidden = !(wanted && lineView && lineView.open);
  if (!wanted) { holdInstall(null); return; }
  pollLine();
}

async function pollLine() {
  clearTimeout(linePolling);
  const r = await api("/api/v1/capacity").catch(() => null);
  if (r && r.ok) lineView = r.data;
  if ($("capacity").hidden || !lineView || !lineView.open) { $("line").hidden = true; holdInstall(null); return; }
  $("line").hidden = false;
  renderLine();
  linePolling = setTimeout(pollLine, 1000);
}

function checksCell(n) {
  if (!n.checks) return el("td", { text: "runs once the bundle is fetched" });
  const warned = n.checks.filter((c) => c.status === "warn").length;
  const summary = n.failed.length
    ? `failed: ${n.failed.join(", ")}`
    : `passed${warned ? ` (${warned} warning${warned > 1 ? "s" : ""})` : ""}`;
  const list = el("ul", { class: "checks" });
  for (const c of n.checks) {
    list.append(el("li", { class: c.status, text: `${c.name}: ${c.status} · ${c.detail}${c.fix ? ` (fix: ${c.fix})` : ""}` }));
  }
  return el("td", {}, el("details", {}, el("summary", { class: n.failed.length ? "fail" : "pass", text: summary }), list));
}

function renderLine() {
  const item = app.flavors.items.find((i) => i.name === chosen("flavor"));
  const others = othersOf(item);
  const box = $("line-commands");
  const key = others.map((n) => n.profile).join(",");
  if (box.dataset.profiles !== key) {
    box.replaceChildren();
    for (const n of others) {
      const cmd = lineView.commands[n.profile];
      if (!cmd) continue;
      box.append(el("p", { class: "title", text: `${n.profile} (${n.made} machine${n.made > 1 ? "s" : ""})` }),
        el("div", { class: "join" }, el("code", { class: "line-command", "data-profile": n.profile, text: cmd }),
          copyButton(cmd, `Copy the join command for ${n.profile}`)));
    }
    box.dataset.profiles = key;
  }
  const counted = (profile) => lineView.nodes.filter((n) => n.profile === profile && !n.gone && !n.failed.length).length;
  const short = others.filter((n) => counted(n.profile) < n.made);
  $("line-count").textContent = short.length
    ? `Waiting for ${short.map((n) => `${n.made - counted(n.profile)} more ${n.profile}`).join(", ")} (${lineView.nodes.length} machine${lineView.nodes.length === 1 ? "" : "s"} here).`
    : "The flavor's machines are here: press Install.";
  holdInstall(short.length ? "Waiting for the flavor's machines." : null);
  // A row being used (a profile being chosen, checks open) is left alone.
  const busy = document.activeElement && $("line-nodes").contains(document.activeElement);
  const shown = JSON.stringify(lineView.nodes.map((n) => [n.name, n.ip, n.profile, n.checks, n.gone]));
  if (busy || shown === lineShown) return;
  lineShown = shown;
  const profiles = item ? item.nodes.map((n) => n.profile) : [];
  const rows = lineView.nodes.map((n) => {
    const select = el("select", { "aria-label": `Profile of ${n.name}`, "data-node": n.name });
    for (const p of profiles.includes(n.profile) ? profiles : [n.profile, ...profiles]) {
      select.append(el("option", { value: p, text: p, selected: p === n.profile }));
    }
    select.addEventListener("change", () => assign(n.name, select.value));
    const state = n.gone ? "not heard from" : n.failed.length ? "stopped: fix it and run the command again" : "waiting";
    return el("tr", { "data-node": n.name }, el("td", { text: n.name }), el("td", { text: n.ip }),
      el("td", {}, select), checksCell(n), el("td", { text: state }));
  });
  $("line-nodes").replaceChildren(...rows);
}

async function assign(node, profile) {
  $("line-error").textContent = "";
  const r = await api("/api/v1/assign", { node, profile }).catch(() => null);
  if (!r || !r.ok) {
    $("line-error").textContent = (r && r.data && r.data.error) || "The installer did not answer; try again.";
    return;
  }
  lineView = r.data;
  lineShown = "";
  renderLine();
}

// Holds the Install button (with why) unless the admin installs without the nodes.
function holdInstall(why) {
  const held = why && !$("without-nodes").checked;
  $("start-install").disabled = Boolean(held);
  $("start-install").title = held ? why : "";
}

function fillSubnets() {
  const vpc = $("vpc").value;
  const subnets = awsChecked.subnets.filter((s) => s.vpc === vpc);
  $("subnet").replaceChildren(...subnets.map((s) => el("option", {
    value: s.id, text: `${s.id} (${s.cidr}${s.zone ? ", " + s.zone : ""})`, selected: s.id === awsChecked.subnet,
  })));
}

async function checkAws() {
  for (const f of AWS_FIELDS) {
    $(`${f}-error`).textContent = "";
    $(f).setAttribute("aria-invalid", "false");
  }
  $("provider-error").textContent = "";
  $("aws-state").textContent = "Checking the keys with AWS…";
  $("aws-check").disabled = true;
  const r = await api("/api/v1/aws/check", awsKeys()).catch(() => null);
  $("aws-check").disabled = false;
  awsChecked = null;
  $("aws-network").hidden = true;
  if (!r || !r.ok) {
    showProblem(r, AWS_FIELDS, "aws-state", "The keys do not work yet.");
    return false;
  }
  awsChecked = r.data;
  const mine = awsChecked.subnets.find((s) => s.id === awsChecked.subnet);
  $("vpc").replaceChildren(...awsChecked.vpcs.map((v) => el("option", {
    value: v.id, text: `${v.id} (${v.cidr})`, selected: mine && v.id === mine.vpc,
  })));
  fillSubnets();
  $("aws-network").hidden = false;
  $("aws-state").textContent =
    `The keys work in ${awsChecked.region}: ${awsChecked.vpcs.length} VPC(s) and ${awsChecked.subnets.length} subnet(s) visible.`;
  return true;
}

function providerChanged() {
  $("aws-box").hidden = chosen("provider") !== "aws";
  $("azure-box").hidden = chosen("provider") !== "azure";
}

function locationValid() {
  let ok = true;
  const problem = nameProblem($("deployment").value.trim());
  $("deployment-error").textContent = problem || "";
  $("deployment").setAttribute("aria-invalid", problem ? "true" : "false");
  if (problem) { ok = false; $("deployment").focus(); }
  $("provider-error").textContent = chosen("provider") ? "" : "Choose where the cluster runs.";
  if (!chosen("provider")) ok = false;
  if (chosen("provider") === "aws" && !awsChecked) {
    $("accessKeyId-error").textContent = "Check the keys first (the button below the fields).";
    ok = false;
  }
  if (chosen("provider") === "azure" && !azureChecked) {
    $("clientId-error").textContent = "Check the application first (the button below the fields).";
    ok = false;
  }
  if (app.eula && !$("eula").checked) {
    $("eula-error").textContent = "Accept the licence agreement to install.";
    ok = false;
  } else {
    $("eula-error").textContent = "";
  }
  return ok;
}

async function startInstall(ev) {
  ev.preventDefault();
  if (app.flavors.items.length && !chosen("flavor")) {
    $("flavor-error").textContent = "Choose a flavor.";
    return;
  }
  const missing = [...document.querySelectorAll("#types-fields input")].find((i) => !i.value.trim());
  if (missing) {
    $(`${missing.id}-error`).textContent = "Give the machines' type.";
    missing.focus();
    return;
  }
  const button = $("start-install");
  button.disabled = true;
  $("install-error").textContent = "";
  const r = await api("/api/v1/install", choices()).catch(() => null);
  button.disabled = false;
  if (r && r.ok) clearTimeout(linePolling);
  if (!r) {
    $("install-error").textContent = "The installer did not answer; try again.";
    return;
  }
  if (!r.ok) {
    const field = r.data && r.data.field;
    const text = (r.data && r.data.error) || `The installer refused (HTTP ${r.status}).`;
    if (["deployment", "provider", "eula", ...AWS_FIELDS, ...AZURE_FIELDS].includes(field)) {
      show("location");
      $(`${field}-error`).textContent = text;
      $(field === "provider" ? "provider-onprem" : field).focus();
    } else if (field === "flavor") {
      $("flavor-error").textContent = text;
    } else if (field && field.startsWith("type-") && $(`${field}-error`)) {
      $(`${field}-error`).textContent = text;
    } else {
      $("install-error").textContent = text;
    }
    return;
  }
  enterInstallation();
}

function enterInstallation() {
  show("installation");
  $("main").focus();
  poll();
}

const STATE_WORDS = { unstarted: "waiting", inProgress: "running", completed: "done", failed: "failed" };

function phaseTree(phases) {
  const ul = el("ul", { class: "phases" });
  for (const p of phases) {
    const secs = p.seconds !== null && p.seconds !== undefined ? ` · ${p.seconds.toFixed(1)}s` : "";
    const li = el("li", {},
      el("div", { class: "phase" },
        el("span", { class: "what", text: `${p.description} (${p.id})` }),
        el("span", { class: `badge ${p.state}`, text: `${STATE_WORDS[p.state] || p.state}${secs}` })));
    if (p.phases && p.phases.length) li.append(phaseTree(p.phases));
    ul.append(li);
  }
  return ul;
}

function copyButton(text, label) {
  const b = el("button", { type: "button", class: "secondary", "aria-label": label, text: "Copy" });
  b.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      b.textContent = "Copied";
    } catch (_) {
      b.textContent = "Select and copy";
    }
    setTimeout(() => { b.textContent = "Copy"; }, 2000);
  });
  return b;
}

// The join command of each profile: the summary's per-profile commands, or its one command.
function joinCommands(s) {
  const commands = Object.entries(s.joinCommands || {});
  if (!commands.length && s.joinCommand) commands.push(["node", s.joinCommand]);
  return commands;
}

function renderJoining(p) {
  const s = p.summary || {};
  const f = p.flavor;
  $("joining-count").textContent = f
    ? `Waiting for the ${f.name} flavor's nodes: ${f.profiles.map((x) => `${x.ready} of ${x.want} ${x.profile}`).join(", ")} Ready.`
    : "Waiting for the other nodes.";
  const box = $("joining-commands");
  if (!box.dataset.filled) {
    box.replaceChildren();
    for (const [profile, cmd] of joinCommands(s)) {
      box.append(el("p", { class: "title", text: profile }),
        el("div", { class: "join" }, el("code", { class: "join-command", "data-profile": profile, text: cmd }),
          copyButton(cmd, `Copy the join command for ${profile}`)));
    }
    box.dataset.filled = "1";
  }
  const rows = (p.nodes || []).map((n) => el("tr", {},
    el("td", { text: n.name }), el("td", { text: n.ip || "" }),
    el("td", { text: n.profile || "" }), el("td", { text: n.ready ? "Ready" : "joining" })));
  $("nodes").replaceChildren(...rows);
}

function renderDone(p) {
  const s = p.summary || {};
  const list = $("done-list");
  list.replaceChildren();
  const item = (term, value) => { if (value) list.append(el("dt", { text: term }), el("dd", {}, value)); };
  item("App", document.createTextNode(`${s.app} ${s.version} on node ${s.node} (${s.nodeIp})`));
  if (s.endpoints && s.endpoints.length) {
    const ul = el("ul");
    for (const e of s.endpoints) ul.append(el("li", {}, el("code", { text: e })));
    item("Endpoints", ul);
  }
  if (p.monitoring && p.monitoring.length) {
    const ul = el("ul");
    for (const m of p.monitoring) ul.append(el("li", { text: m }));
    item("Monitoring", ul);
  }
  item("Admin kubeconfig", el("span", {}, "On this machine, as root: ", el("code", { text: s.kubeconfig })));
  item("kubectl", el("code", { text: `${s.kubectl} --kubeconfig ${s.kubeconfig} get nodes` }));
  const joins = $("joins");
  joins.replaceChildren();
  const commands = joinCommands(s);
  if (commands.length) {
    joins.append(el("h3", { text: "Add the other nodes" }),
      el("p", { class: "hint", text: "Run on each new machine, as root (each command holds a token valid for a day):" }));
    for (const [profile, cmd] of commands) {
      joins.append(el("p", { class: "title", text: profile }),
        el("div", { class: "join" }, el("code", { text: cmd }), copyButton(cmd, `Copy the join command for ${profile}`)));
    }
  }
}

function render(p) {
  const words = {
    running: "Installing…",
    failed: "The install failed.",
    done: "The install is done.",
    joining: "This node is installed.",
    choosing: "Waiting for the install to start.",
    watching: "Installing from the command line…",
  };
  $("install-state").textContent = words[p.stage] || p.stage;
  $("watching").hidden = !p.watching;
  if (p.watching) $("watching").textContent = `This page follows the install that process ${p.watching} runs, with its log. Once it ends, the page shows the result here.`;
  $("phases").replaceWith(Object.assign(phaseTree(p.phases || []), { id: "phases" }));
  const log = $("log");
  const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.textContent = (p.log || []).join("\n");
  if (atEnd) log.scrollTop = log.scrollHeight;
  $("failure").hidden = p.stage !== "failed";
  if (p.stage === "failed") {
    $("failure-error").textContent = p.error || "";
    $("failure-hint").textContent = p.hint ? `Hint: ${p.hint}` : "";
  }
  $("joining").hidden = p.stage !== "joining";
  if (p.stage === "joining") renderJoining(p);
  $("done").hidden = p.stage !== "done";
  if (p.stage === "done") renderDone(p);
}

async function poll() {
  clearTimeout(polling);
  let p = null;
  try {
    const r = await api("/api/v1/progress");
    if (r.ok) p = r.data;
  } catch (_) { p = null; }
  $("connection").hidden = p !== null;
  if (p) render(p);
  if (!p || ["running", "failed", "joining", "watching"].includes(p.stage)) polling = setTimeout(poll, 1000);
}

async function resume() {
  $("resume").disabled = true;
  const r = await api("/api/v1/resume", {}).catch(() => null);
  $("resume").disabled = false;
  if (r && r.ok) poll();
}

async function main() {
  const [session, info, progress, line] = await Promise.all([
    api("/api/v1/session"), api("/api/v1/app"), api("/api/v1/progress"), api("/api/v1/capacity"),
  ]);
  if (line.ok) lineView = line.data;
  if (!session.ok || !info.ok) {
    $("connection").hidden = false;
    $("connection").textContent = "This page has no session with the installer: open the address it printed.";
    return;
  }
  csrf = session.data.csrfToken;
  app = info.data;
  fillApp();
  $("deployment").addEventListener("input", checkName);
  document.querySelectorAll("input[name=provider]").forEach((i) => i.addEventListener("change", providerChanged));
  $("aws-check").addEventListener("click", checkAws);
  $("azure-check").addEventListener("click", checkAzure);
  for (const f of AZURE_FIELDS) $(f).addEventListener("input", () => { azureChecked = null; });
  document.addEventListener("change", (ev) => { if (ev.target.name === "flavor") fillTypes(); });
  $("vpc").addEventListener("change", fillSubnets);
  for (const f of AWS_FIELDS) $(f).addEventListener("input", () => { awsChecked = null; $("aws-network").hidden = true; });
  $("location-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (locationValid()) { show("capacity"); fillTypes(); $("main").focus(); }
  });
  $("back-to-location").addEventListener("click", () => { show("location"); fillLine(); });
  $("without-nodes").addEventListener("change", () => { if (lineView && !$("line").hidden) renderLine(); });
  $("capacity-form").addEventListener("submit", startInstall);
  $("resume").addEventListener("click", resume);
  $("finish").addEventListener("click", async () => {
    $("finish").disabled = true;
    await api("/api/v1/finish", {}).catch(() => null);
    $("finish").disabled = false;
    poll();
  });
  const stage = progress.ok ? progress.data.stage : "choosing";
  if (stage === "choosing") {
    show("location");
    $("deployment").focus();
  } else {
    const c = progress.data.choices;
    if (c) $("deployment").value = c.deployment;
    enterInstallation();
  }
}

document.addEventListener("DOMContentLoaded", main);
