// The Audit page's only script: local times, clickable rows, live export status,
// copy buttons, and in-browser verification of an event against the signed checkpoint.
"use strict";

function localTimes(root) {
  for (const t of (root || document).querySelectorAll("time.ts[datetime]")) {
    const iso = t.getAttribute("datetime");
    const d = new Date(iso);
    if (isNaN(d)) continue;
    t.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
    t.title = iso.replace("T", " ").replace(/Z$/, "") + " UTC";
  }
}

function clickable(tr) {
  tr.addEventListener("click", (e) => {
    if (e.target.closest("a, button, input")) return;
    window.location.assign(tr.dataset.href);
  });
}

function clickableRows() {
  for (const tr of document.querySelectorAll("tr[data-href]")) clickable(tr);
}

// Live mode: new events matching the filters arrive at the top of the table as the
// server streams them (Server-Sent Events; the browser reconnects with the last seq).
const LIVE_ROWS = 500;

function liveMode() {
  const btn = document.getElementById("live");
  if (!btn) return;
  const status = document.getElementById("live-status");
  let source = null;
  const stop = () => {
    source.close();
    source = null;
    btn.setAttribute("aria-pressed", "false");
    btn.textContent = "Live";
    status.textContent = "";
  };
  btn.addEventListener("click", () => {
    if (source) return stop();
    source = new EventSource(btn.dataset.src);
    btn.setAttribute("aria-pressed", "true");
    btn.textContent = "Stop live";
    status.textContent = "Connecting…";
    source.onopen = () => { status.textContent = "Live: new events appear at the top."; };
    source.onerror = () => { if (source) status.textContent = "Reconnecting…"; };
    source.addEventListener("cutoff", () => { status.textContent = "Catching up…"; });
    source.onmessage = (m) => addLiveRow(m.data, m.lastEventId);
  });
}

function addLiveRow(html, seq) {
  let body = document.querySelector("#events tbody");
  if (!body) {
    const empty = document.getElementById("empty");
    if (empty) empty.remove();
    const t = document.getElementById("live-table");
    t.replaceWith(t.content.cloneNode(true));
    body = document.querySelector("#events tbody");
  }
  if (body.querySelector(`tr[data-seq="${CSS.escape(seq)}"]`)) return;
  body.insertAdjacentHTML("afterbegin", html);
  const tr = body.firstElementChild;
  tr.classList.add("live-new");
  localTimes(tr);
  clickable(tr);
  while (body.rows.length > LIVE_ROWS) body.deleteRow(-1);
}

function pendingExports() {
  return document.querySelector('#export-rows tr[data-status="queued"], #export-rows tr[data-status="running"]');
}

function liveExports() {
  const body = document.getElementById("export-rows");
  if (!body || !pendingExports()) return;
  const timer = setInterval(async () => {
    try {
      const r = await fetch("/ui/exports/rows", { credentials: "same-origin" });
      if (!r.ok) return;
      body.innerHTML = await r.text();
      localTimes(body);
      if (!pendingExports()) {
        clearInterval(timer);
        document.getElementById("exports").dataset.pending = "false";
      }
    } catch (_) { /* keep polling */ }
  }, 1000);
}

function copyButtons() {
  for (const b of document.querySelectorAll("button.copy[data-copy]")) {
    b.addEventListener("click", async () => {
      const src = document.getElementById(b.dataset.copy);
      try {
        await navigator.clipboard.writeText(src.textContent);
        b.textContent = "Copied";
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(src);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        b.textContent = "Selected: press Ctrl+C";
      }
    });
  }
}

// ---- verification (RFC 6962 / RFC 9162 hashing, C2SP signed notes) ----

const enc = new TextEncoder();
const b64d = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const eq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

async function sha256(...parts) {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const buf = new Uint8Array(len);
  let at = 0;
  for (const p of parts) { buf.set(p, at); at += p.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
}

async function rootFromInclusion(index, size, leaf, proof) {
  if (index >= size) throw new Error("leaf index beyond the tree");
  let fn = index, sn = size - 1, r = leaf;
  for (const p of proof) {
    if (sn === 0) throw new Error("proof too long");
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(new Uint8Array([1]), p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      }
    } else {
      r = await sha256(new Uint8Array([1]), r, p);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error("proof too short");
  return r;
}

async function checkSignature(note, vkey) {
  const cut = note.indexOf("\n\n");
  const text = note.slice(0, cut + 1);
  // name+hash+base64 key; the base64 may itself contain "+".
  const v = vkey.trim();
  const a = v.indexOf("+"), b = v.indexOf("+", a + 1);
  const name = v.slice(0, a), hash = v.slice(a + 1, b), keyB64 = v.slice(b + 1);
  const key = b64d(keyB64);
  if (key[0] !== 1 || key.length !== 33) throw new Error("not an Ed25519 verifier key");
  const pub = await crypto.subtle.importKey("raw", key.slice(1), { name: "Ed25519" }, false, ["verify"]);
  for (const line of note.slice(cut + 2).split("\n")) {
    const m = line.match(/^\u2014 (\S+) (\S+)$/);
    if (!m || m[1] !== name) continue;
    const blob = b64d(m[2]);
    const id = Array.from(blob.slice(0, 4), (b) => b.toString(16).padStart(2, "0")).join("");
    if (id !== hash) continue;
    return crypto.subtle.verify({ name: "Ed25519" }, pub, blob.slice(4), enc.encode(text));
  }
  return false;
}

function show(out, checks, where) {
  const ok = checks.every((c) => c[1]);
  out.className = "verify-result " + (ok ? "ok" : "bad");
  out.dataset.verified = ok ? "true" : "false";
  out.innerHTML = "";
  const h = document.createElement("p");
  h.className = "verdict";
  h.textContent = ok ? "Verified " + where + "." : "Verification FAILED " + where + ".";
  out.appendChild(h);
  const ul = document.createElement("ul");
  for (const [label, pass] of checks) {
    const li = document.createElement("li");
    li.textContent = (pass ? "✓ " : "✗ ") + label;
    li.className = pass ? "ok" : "bad";
    ul.appendChild(li);
  }
  out.appendChild(ul);
}

async function verify(btn) {
  const out = document.getElementById("verify-result");
  out.className = "verify-result";
  out.textContent = "Checking…";
  btn.disabled = true;
  try {
    const r = await fetch("/ui/events/" + btn.dataset.seq + "/proof", { credentials: "same-origin" });
    if (!r.ok) throw new Error("the server answered " + r.status);
    const p = await r.json();
    if (!(window.crypto && crypto.subtle)) {
      show(out, [
        ["event hash matches its content", p.server.leaf],
        ["included in the tree of " + p.tree_size + " events", p.server.inclusion],
        ["checkpoint signed by " + p.public_key.split("+")[0], p.server.signature],
      ], "by the server (this page is not served over HTTPS, so your browser cannot check it itself)");
      return;
    }
    const leaf = await sha256(new Uint8Array([0]), enc.encode(p.body));
    const leafOk = eq(leaf, b64d(p.leaf_hash));
    const cpLines = p.checkpoint.split("\n");
    const cpSize = Number(cpLines[1]);
    const cpRoot = b64d(cpLines[2]);
    let inclusionOk = false;
    try {
      const root = await rootFromInclusion(p.leaf_index, p.tree_size, leaf, p.hashes.map(b64d));
      inclusionOk = cpSize === p.tree_size && eq(root, cpRoot);
    } catch (_) { inclusionOk = false; }
    let sigOk, sigNote = "";
    try { sigOk = await checkSignature(p.checkpoint, p.public_key); } catch (e) { sigOk = false; sigNote = ": " + e.message; }
    show(out, [
      ["event hash matches its content (SHA-256 of the stored text)", leafOk],
      ["included in the tree of " + p.tree_size + " events (" + p.hashes.length + " proof hashes)", inclusionOk],
      ["checkpoint signed by " + p.public_key.split("+")[0] + " (Ed25519)" + sigNote, sigOk],
    ], "in your browser");
  } catch (e) {
    out.className = "verify-result bad";
    out.dataset.verified = "error";
    out.textContent = "Could not verify: " + e.message + ". Reload the page and try again.";
  } finally {
    btn.disabled = false;
  }
}

// On a phone the filters fold away unless some are in use.
function foldFilters() {
  const box = document.querySelector("details.filters-box");
  if (box && !box.dataset.filtered && window.matchMedia("(max-width: 720px)").matches) {
    box.open = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  foldFilters();
  localTimes();
  clickableRows();
  liveMode();
  liveExports();
  copyButtons();
  const v = document.getElementById("verify");
  if (v) v.addEventListener("click", () => verify(v));
});
