// The approvals page: sign in with an operator token (the server answers with an HttpOnly,
// SameSite=Strict session cookie and a CSRF token kept here in memory), list pending approvals,
// decide with one tap, update live from the event stream.
"use strict";
let csrf = null;
const $ = (id) => document.getElementById(id);

async function session() {
  const r = await fetch("/approvals/session", { credentials: "same-origin" });
  if (!r.ok) return false;
  const s = await r.json();
  if (!s.signedIn) return false;
  csrf = s.csrf;
  signedInAs(s.operator);
  return true;
}

function signedInAs(operator) {
  $("operator").textContent = operator || "";
  $("who").hidden = !operator;
}

// The arguments arrive as one line of JSON: shown indented, one member per line.
function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (_) { return text; }
}

async function rpc(method, params) {
  const r = await fetch("/control", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params: params || {} }),
  });
  if (r.status === 401) { showLogin(); throw new Error("signed out"); }
  const v = await r.json();
  if (v.error) throw new Error(v.error.message);
  return v.result;
}

let timers = [];

function showLogin() {
  $("login").hidden = false;
  $("pending").hidden = true;
  $("signins").hidden = true;
  signedInAs(null);
  timers.forEach((t) => t.close ? t.close() : clearInterval(t));
  timers = [];
}

function render(items) {
  const list = $("list");
  list.replaceChildren();
  $("empty").hidden = items.length > 0;
  const now = Date.now() / 1000;
  for (const a of items) {
    const li = $("item").content.firstElementChild.cloneNode(true);
    li.dataset.id = a.id;
    li.querySelector(".agent").textContent = a.agent;
    li.querySelector(".tool").textContent = a.upstream + "/" + a.tool;
    li.querySelector(".summary").textContent = a.summary;
    li.querySelector(".args").textContent = pretty(a.arguments);
    li.querySelector(".kind").textContent = a.kind === "policy" ? "held by operator rule" : "asked by the server";
    li.querySelector(".left").textContent = Math.max(0, Math.round(a.expires_at - now)) + " s";
    li.querySelectorAll("button").forEach((b) =>
      b.addEventListener("click", async () => {
        li.querySelectorAll("button").forEach((x) => (x.disabled = true));
        try { await rpc("approvals.decide", { id: a.id, decision: b.dataset.decision }); }
        catch (e) { $("status").textContent = e.message; }
        refresh();
      })
    );
    list.appendChild(li);
  }
}

async function refresh() {
  try { render(await rpc("approvals.list")); $("status").textContent = "live"; }
  catch (e) { $("status").textContent = e.message; }
}

// OAuth upstreams that mcp-warden signs in to with an operator's account: a button starts the
// sign-in, which comes back to this front (`/oauth/callback`) in this browser.
async function signins() {
  const r = await fetch("/approvals/signins", { credentials: "same-origin" });
  if (!r.ok) return;
  const { signins } = await r.json();
  const list = $("signin-list");
  list.replaceChildren();
  $("signins").hidden = signins.length === 0;
  for (const s of signins) {
    const li = document.createElement("li");
    li.textContent = s.line + " ";
    if (s.signIn) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = s.signedIn ? "Sign in again" : "Sign in";
      b.addEventListener("click", async () => {
        b.disabled = true;
        const r = await fetch("/approvals/signins", {
          method: "POST",
          credentials: "same-origin",
          headers: { "content-type": "application/json", "x-csrf-token": csrf },
          body: JSON.stringify({ upstream: s.upstream, agent: s.agent }),
        });
        if (!r.ok) { $("status").textContent = await r.text(); b.disabled = false; return; }
        location.assign((await r.json()).authorize);
      });
      li.appendChild(b);
    }
    list.appendChild(li);
  }
}

async function start() {
  $("login").hidden = true;
  $("pending").hidden = false;
  signins();
  await refresh();
  const es = new EventSource("/control/events", { withCredentials: true });
  es.onmessage = () => refresh();
  es.onerror = () => { $("status").textContent = "reconnecting…"; };
  timers.push(es, setInterval(refresh, 5000));
}

$("logout").addEventListener("click", async () => {
  await fetch("/approvals/logout", {
    method: "POST",
    credentials: "same-origin",
    headers: { "x-csrf-token": csrf || "" },
  }).catch(() => {});
  csrf = null;
  $("list").replaceChildren();
  $("status").textContent = "signed out";
  showLogin();
});

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await fetch("/approvals/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token: $("token").value }),
  });
  $("token").value = "";
  if (!r.ok) { $("login-error").textContent = "That token is not an operator's."; return; }
  const s = await r.json();
  csrf = s.csrf;
  signedInAs(s.operator);
  start();
});

session().then((ok) => (ok ? start() : showLogin()));
