// The hall's screen: plays the programme from the hall daemon by WHEP, full screen on the projector PC.
// It never shows a frozen frame without saying so: when no new frame has been decoded for a second the
// picture is covered by "reconnecting", and the page reconnects by itself (with back-off) when the
// connection fails. The media token comes in the URL fragment (never sent to any server in a URL).

const STALL_MS = 1000;
const $ = (s) => document.querySelector(s);
const params = new URLSearchParams(location.hash.slice(1));
const token = params.get("token") || "";
const stream = params.get("stream") || "programme";
const TEXT = {
  connecting: ["Đang kết nối…", "Connecting…"],
  reconnecting: ["Mất tín hiệu — đang kết nối lại…", "Signal lost — reconnecting…"],
  no_token: ["Thiếu mã truy cập trong địa chỉ trang", "The page address has no access token"],
  refused: ["Máy chủ từ chối", "Refused by the server"],
};

// WHIP and WHEP without trickle ICE: the offer carries every candidate, then one POST
async function postOffer(peer, url, bearer) {
  await peer.setLocalDescription(await peer.createOffer());
  await new Promise((resolve) => {
    if (peer.iceGatheringState === "complete") return resolve();
    peer.onicegatheringstatechange = () => peer.iceGatheringState === "complete" && resolve();
    setTimeout(resolve, 2000);
  });
  return fetch(url, { method: "POST", body: peer.localDescription.sdp,
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${bearer}` } });
}

let pc = null;
let resource = null;
let lastFrames = 0;
let lastProgress = 0;
let backoff = 500;
let state = "";

function show(which, detail = "") {
  state = which;
  const box = $("#status");
  box.dataset.state = which;
  box.hidden = which === "playing";
  if (which !== "playing") {
    $("#status-text").textContent = TEXT[which][0];
    $("#status-detail").textContent = TEXT[which][1] + (detail ? ` (${detail})` : "");
  }
}

function claims() {
  try { return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))); } catch { return {}; }
}

async function connect() {
  if (pc) { pc.close(); pc = null; }
  pc = new RTCPeerConnection({ iceServers: [] });
  window.dcPlayer = pc;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const media = new MediaStream();
  $("#programme").srcObject = media;
  pc.ontrack = (ev) => media.addTrack(ev.track);
  pc.onconnectionstatechange = () => {
    if (pc && (pc.connectionState === "failed" || pc.connectionState === "closed")) retry("connection " + pc.connectionState);
  };
  const resp = await postOffer(pc, `/whep/${encodeURIComponent(stream)}`, token);
  if (resp.status === 401 || resp.status === 403) {
    show("refused", `${resp.status}: ${(await resp.text()).slice(0, 120)}`);
    return false;
  }
  if (resp.status !== 201) throw new Error(`WHEP ${resp.status}`);
  resource = new URL(resp.headers.get("Location"), location.href).href;
  await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
  lastProgress = performance.now();
  return true;
}

let retrying = false;
async function retry(why) {
  if (retrying) return;
  retrying = true;
  show("reconnecting", why);
  if (resource) { fetch(resource, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } }).catch(() => {}); resource = null; }
  for (;;) {
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(backoff * 2, 5000);
    try { if (await connect()) break; else { retrying = false; return; } } catch (e) { show("reconnecting", String(e.message || e)); }
  }
  retrying = false;
}

async function watch() {
  if (!pc || retrying) return;
  let frames = 0;
  (await pc.getStats()).forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") frames = s.framesDecoded || 0; });
  const now = performance.now();
  if (frames > lastFrames) {
    lastFrames = frames;
    lastProgress = now;
    backoff = 500;
    if (state !== "playing") show("playing");
  } else if (now - lastProgress > STALL_MS && state === "playing") {
    show("reconnecting", "no picture for " + Math.round((now - lastProgress) / 1000) + " s");
  }
  if (now - lastProgress > 8000 && pc.connectionState !== "connecting") retry("no picture for 8 s");
}

$("#sound").addEventListener("click", () => { const v = $("#programme"); v.muted = false; v.play(); $("#sound").hidden = true; });
const c = claims();
$("#title").textContent = [c.aud && c.aud !== "*" ? c.aud : "", stream].filter(Boolean).join(" · ");

// the floor: another hall speaking, in a corner of the screen, while it holds the floor
const floorToken = params.get("floor") || "";
let floorPc = null;
let floorSpeaker = "";

async function showFloor(speaker) {
  if (speaker === floorSpeaker || !floorToken) return;
  floorSpeaker = speaker;
  $("#floor").hidden = !speaker;
  $("#floor-name").textContent = speaker ? `🎤 ${speaker}` : "";
  // the subscription outlives a speaker: the next one arrives on it (the hall daemon re-anchors
  // its picture at the new speaker's keyframe), so a handover costs no new connection
  if (!speaker || (floorPc && floorPc.connectionState === "connected")) return;
  if (floorPc) { floorPc.close(); floorPc = null; window.dcFloor = null; }
  const pc = floorPc = window.dcFloor = new RTCPeerConnection({ iceServers: [] });
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const media = new MediaStream();
  $("#floor").srcObject = media;
  pc.ontrack = (ev) => media.addTrack(ev.track);
  const resp = await postOffer(pc, "/whep/floor", floorToken);
  if (resp.status !== 201 || pc !== floorPc) { if (pc === floorPc) floorSpeaker = ""; return; }  // retried on the next poll
  await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
}

// the hall holds the floor and its camera is this PC's (the daemon's camera "browser"): capture it
// and publish it to the daemon, which sends it up to its relay
const cameraToken = params.get("camera") || "";
let camPc = null;
let camResource = null;
let speakingOn = "";

async function speak(stream) {
  if (stream === speakingOn || !cameraToken) return;
  speakingOn = stream;
  if (camPc) {
    camPc.getSenders().forEach((s) => s.track && s.track.stop());
    camPc.close(); camPc = null; window.dcCamera = null;
    if (camResource) fetch(camResource, { method: "DELETE", headers: { Authorization: `Bearer ${cameraToken}` } }).catch(() => {});
    camResource = null;
  }
  $("#title").classList.toggle("speaking", !!stream);
  if (!stream) return;
  try {
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    const pc = camPc = window.dcCamera = new RTCPeerConnection({ iceServers: [] });
    media.getTracks().forEach((tr) => pc.addTransceiver(tr, { direction: "sendonly" }));
    const resp = await postOffer(pc, "/whip/camera", cameraToken);
    if (resp.status !== 201) throw new Error(`WHIP ${resp.status}`);
    camResource = new URL(resp.headers.get("Location"), location.href).href;
    await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
  } catch (e) {
    speakingOn = "";  // tried again on the next poll
    $("#status-detail").textContent = `camera: ${e.message || e}`;
  }
}

// "raise hand": the hall asks the operators for the floor (the queue in their console)
function showHand(up) {
  const b = $("#hand");
  b.dataset.up = String(!!up);
  b.textContent = up ? "✋ Đang xin phát biểu — bấm để rút / Hand raised — click to lower" : "✋ Xin phát biểu / Raise hand";
}
$("#hand").addEventListener("click", async () => {
  const up = $("#hand").dataset.up !== "true";
  try {
    const r = await fetch(`/hand?stream=${encodeURIComponent(stream)}`, {
      method: "POST", headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" }, body: JSON.stringify({ up }),
    });
    if (r.ok) showHand(up);
    else $("#status-detail").textContent = `hand: ${r.status}`;
  } catch (e) { $("#status-detail").textContent = `hand: ${e.message || e}`; }
});

async function info() {  // the hall and the session it follows now (sessions change without a reload)
  try {
    const r = await fetch(`/player-info?stream=${encodeURIComponent(stream)}`, { headers: { Authorization: `Bearer ${token}` } });
    if (!r.ok) return;
    const i = await r.json();
    const text = [i.hall, i.session && i.title ? `${i.session} — ${i.title}` : ""].filter(Boolean).join(" · ");
    if (text) $("#title").textContent = text;
    $("#title").dataset.session = i.session || "";
    showFloor(i.floor || "");
    speak(i.speaking || "");
    showHand(i.hand);
  } catch { /* the hall daemon is restarting: keep the last title */ }
}
if (!token) show("no_token");
else {
  show("connecting");
  connect().catch((e) => retry(String(e.message || e)));
  setInterval(watch, 250);
  info();
  setInterval(info, 250);  // the hall daemon next door: a new speaker shows within a quarter of a second
}
window.addEventListener("hashchange", () => location.reload());  // a new token or stream: start again
